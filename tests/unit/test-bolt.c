/*
 * src/oci/bolt.c: two bolt databases written by bbolt itself with the same records in other
 * orders, at other times (tests/fixtures/bolt, made by gen.go there) come out byte for byte
 * the same, with createdat/updatedat clamped; the result is its own rewrite; a damaged
 * database is an error that says what is wrong, never a crash.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bolt.h"
#include "error.h"
#include "fsutil.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

#define FIX "tests/fixtures/bolt/"
#define EPOCH 1700000000
#define GO_UNIX_OFFSET 62135596800LL

static unsigned char *load(const char *name, size_t *len)
{
	char *buf = NULL;
	struct imgf_error *err = NULL;
	CHECK(read_file(name, 0, &buf, len, &err) == 0);
	imgf_error_free(err);
	return (unsigned char *)buf;
}

/* Go's time.MarshalBinary of a UTC time: version 1, seconds since year 1, nanoseconds,
 * offset -1. */
static void go_time(int64_t unix_s, uint32_t nsec, unsigned char out[15])
{
	uint64_t s = (uint64_t)(unix_s + GO_UNIX_OFFSET);
	out[0] = 1;
	for (int i = 8; i >= 1; i--, s >>= 8)
		out[i] = (unsigned char)s;
	for (int i = 12; i >= 9; i--, nsec >>= 8)
		out[i] = (unsigned char)nsec;
	out[13] = out[14] = 0xff;
}

static size_t count(const unsigned char *hay, size_t len, const unsigned char *needle, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i + n <= len; i++)
		c += !memcmp(hay + i, needle, n);
	return c;
}

TEST(same_records_give_the_same_bytes)
{
	size_t la, lb;
	_cleanup_free_ unsigned char *a = load(FIX "a.db", &la);
	_cleanup_free_ unsigned char *b = load(FIX "b.db", &lb);
	CHECK(la != lb || memcmp(a, b, la) != 0); /* the fixtures really differ */
	struct strbuf na = STRBUF_INIT, nb = STRBUF_INIT, again = STRBUF_INIT;
	struct imgf_error *err = NULL;
	CHECK(imgf_bolt_normalize(a, la, EPOCH, &na, &err) == 0);
	CHECK(imgf_bolt_normalize(b, lb, EPOCH, &nb, &err) == 0);
	CHECK(err == NULL);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK(na.len == nb.len && na.len > 0 && memcmp(na.buf, nb.buf, na.len) == 0);
	CHECK(na.len % 4096 == 0);
	/* A fixed point: rewriting the rewrite changes nothing. */
	CHECK(imgf_bolt_normalize((unsigned char *)na.buf, na.len, EPOCH, &again, &err) == 0);
	CHECK(again.len == na.len && memcmp(again.buf, na.buf, na.len) == 0);

	/* Every late time became EPOCH; the early ones stay. */
	unsigned char t[15];
	const unsigned char *o = (const unsigned char *)na.buf;
	go_time(1800000000, 1, t);
	CHECK(count(a, la, t, sizeof(t)) > 0 && count(o, na.len, t, sizeof(t)) == 0);
	go_time(1900000000, 2, t);
	CHECK(count(b, lb, t, sizeof(t)) > 0 && count(o, na.len, t, sizeof(t)) == 0);
	go_time(EPOCH, 0, t);
	CHECK(count(o, na.len, t, sizeof(t)) == 40); /* one createdat per blob */
	go_time(1600000000, 5, t);
	CHECK(count(o, na.len, t, sizeof(t)) == 40); /* updatedat, earlier: kept */
	strbuf_release(&na);
	strbuf_release(&nb);
	strbuf_release(&again);
}

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* Set both meta pages' root bucket page and fix their checksums. */
static void set_root(unsigned char *db, uint64_t root)
{
	for (int i = 0; i < 2; i++) {
		unsigned char *m = db + i * 4096 + 16;
		memcpy(m + 16, &root, 8);
		uint64_t c = fnv1a64(m, 56);
		memcpy(m + 56, &c, 8);
	}
}

TEST(damage_is_an_error_not_a_crash)
{
	size_t len;
	_cleanup_free_ unsigned char *a = load(FIX "a.db", &len);
	struct strbuf out = STRBUF_INIT;
	struct imgf_error *err = NULL;

	CHECK(imgf_bolt_normalize(a, 40, EPOCH, &out, &err) < 0);
	CHECK_ERR(err, "bolt database: 40 bytes is too short");
	imgf_error_clear(&err);

	_cleanup_free_ unsigned char *c = xmalloc(len);
	memcpy(c, a, len);
	c[16] ^= 1; /* magic of meta 0 */
	c[4096 + 16] ^= 1;
	CHECK(imgf_bolt_normalize(c, len, EPOCH, &out, &err) < 0);
	CHECK_ERR(err, "no valid meta page");
	imgf_error_clear(&err);

	memcpy(c, a, len);
	set_root(c, 1u << 30);
	CHECK(imgf_bolt_normalize(c, len, EPOCH, &out, &err) < 0);
	CHECK_ERR(err, "a page number outside the file (page 1073741824, bucket '/')");
	imgf_error_clear(&err);

	/* A branch page whose children are itself, twice: refused at once, not walked 2^64
	 * times. Find the first branch page and point its elements at it. */
	memcpy(c, a, len);
	bool branch = false;
	for (size_t pg = 3; pg < len / 4096 && !branch; pg++) {
		unsigned char *p = c + pg * 4096;
		if (p[8] != 0x01)
			continue;
		uint64_t self = pg;
		memcpy(p + 16 + 8, &self, 8);
		memcpy(p + 32 + 8, &self, 8);
		CHECK(imgf_bolt_normalize(c, len, EPOCH, &out, &err) < 0);
		CHECK_ERR(err, "a page that belongs to two nodes");
		imgf_error_clear(&err);
		branch = true;
	}
	CHECK(branch);

	/* The file cut short: pages past the end are refused wherever the tree points. */
	CHECK(imgf_bolt_normalize(a, 5 * 4096, EPOCH, &out, &err) < 0);
	CHECK(err && strstr(err->msg, "bolt database: "));
	imgf_error_clear(&err);

	/* Every byte of every data page flipped in turn: an error or a result, never a crash
	 * (run under ASan/UBSan by `make B=build-asan SANITIZE=address,undefined check-unit`). */
	for (size_t off = 3 * 4096; off < len; off += 61) {
		memcpy(c, a, len);
		c[off] ^= 0xa5;
		if (imgf_bolt_normalize(c, len, EPOCH, &out, &err) < 0)
			CHECK(err && strstr(err->msg, "bolt database: "));
		imgf_error_clear(&err);
	}
	strbuf_release(&out);
}
