/*
 * Downloads against tests/lib/httpd.py on loopback: verification, the cache, checksum lists,
 * retries, resume, errors and parallel transfers. Every test uses its own files and cache.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "strbuf.h"
#include "util.h"

#include "httpd.h"
#include "test.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define OTHER_SHA256 "1111111111111111111111111111111111111111111111111111111111111111"

static struct {
	struct test_httpd httpd;
	int port;
	char *root;	  /* temp dir holding everything below */
	char *www;	  /* what the server serves */
	char *log;	  /* its request log */
	const char *base; /* http://127.0.0.1:PORT */
	char *cache;	  /* the current test's cache */
	int ncache;
} srv;

static void server_stop(void)
{
	test_httpd_stop(&srv.httpd);
	if (srv.root)
		rm_rf(srv.root, NULL);
	free(srv.root);
	free(srv.www);
	free(srv.log);
	free(srv.cache);
	memset(&srv, 0, sizeof(srv));
}

static int server_start(void)
{
	if (srv.port)
		return 0;
	struct imgf_error *err = NULL;
	if (make_temp_dir("test-fetch", &srv.root, &err) < 0) {
		fprintf(stderr, "  %s\n", err->msg);
		imgf_error_free(err);
		return -1;
	}
	srv.www = path_join(srv.root, "www");
	srv.log = path_join(srv.root, "httpd.log");
	if (mkdir(srv.www, 0755) < 0)
		return -1;
	setenv("IMGFORGE_RETRY_BASE_MS", "50", 1);

	atexit(server_stop);
	if (test_httpd_start(&srv.httpd, srv.www, srv.log, NULL) < 0)
		return -1;
	srv.port = srv.httpd.port;
	srv.base = srv.httpd.base;
	return 0;
}

/* A fresh cache for this test, through IMGFORGE_CACHE_DIR as the real tool finds it. */
static void new_cache(struct imgf_fetch_opts *o)
{
	free(srv.cache);
	srv.cache = xasprintf("%s/cache-%d", srv.root, ++srv.ncache);
	setenv("IMGFORGE_CACHE_DIR", srv.cache, 1);
	imgf_fetch_opts_default(o, NULL);
}

#define SETUP(o)                               \
	struct imgf_fetch_opts o;              \
	if (server_start() < 0) {              \
		CHECK(!"test server started"); \
		return;                        \
	}                                      \
	new_cache(&o)

/* Deterministic bytes, different per seed. */
static char *make_data(size_t n, unsigned seed)
{
	char *p = xmalloc(n);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (char)(x >> 24);
	}
	return p;
}

static void put_file(const char *name, const void *data, size_t len)
{
	_cleanup_free_ char *path = path_join(srv.www, name);
	struct imgf_error *err = NULL;
	if (write_file_atomic(path, data, len, 0644, &err) < 0) {
		fprintf(stderr, "  %s\n", err->msg);
		abort();
	}
}

static char *url_of(const char *path_and_query)
{
	return xasprintf("%s/%s", srv.base, path_and_query);
}

static void input_init(struct imgf_input *in, const char *name, const char *url,
		       const char *checksum)
{
	memset(in, 0, sizeof(*in));
	in->name = xstrdup(name);
	in->url = xstrdup(url);
	in->checksum = xstrdup(checksum);
}

static char *sha256_spec(const void *data, size_t len)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, data, len, hex);
	return xasprintf("sha256:%s", hex);
}

static int count_lines(const char *needle)
{
	_cleanup_free_ char *text = NULL;
	if (read_file(srv.log, 0, &text, NULL, NULL) < 0)
		return 0;
	int n = 0;
	for (char *line = text; *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strstr(line, needle))
			n++;
		if (!nl)
			break;
		line = nl + 1;
	}
	return n;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Log lines containing `needle`. The server logs after replying, so wait (up to 3 s) for at
 * least `want`, then a little longer for any stragglers.
 */
static int log_count(const char *needle, int want)
{
	for (int i = 0; i < 300 && count_lines(needle) < want; i++)
		sleep_ms(10);
	sleep_ms(50);
	return count_lines(needle);
}

static size_t dir_entries(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static bool file_equals(const char *path, const void *data, size_t len)
{
	_cleanup_free_ char *text = NULL;
	size_t n = 0;
	if (!path || read_file(path, 0, &text, &n, NULL) < 0)
		return false;
	return n == len && memcmp(text, data, len) == 0;
}

static char *partial_path_for(const char *url)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, url, strlen(url), hex);
	return xasprintf("%s/downloads/partial/%s.part", srv.cache, hex);
}

static void write_partial(const char *url, const void *data, size_t len)
{
	_cleanup_free_ char *dir = xasprintf("%s/downloads/partial", srv.cache);
	_cleanup_free_ char *path = partial_path_for(url);
	CHECK(mkdir_p(dir, 0755, NULL) == 0);
	CHECK(write_file_atomic(path, data, len, 0644, NULL) == 0);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fetch one input and expect success with `data`. */
static void expect_fetch_ok(const char *name, const char *url, const char *checksum,
			    const struct imgf_fetch_opts *o, const void *data, size_t len)
{
	struct imgf_input in;
	struct imgf_error *err = NULL;
	input_init(&in, name, url, checksum);
	int r = imgf_fetch_all(&in, 1, o, &err);
	if (r < 0)
		fprintf(stderr, "  fetch '%s': %s\n", name, err->msg);
	CHECK(r == 0);
	CHECK(file_equals(in.path, data, len));
	CHECK(in.size == len);
	imgf_error_free(err);
	imgf_input_release(&in);
}

/* Fetch one input and return the error (caller frees). */
static struct imgf_error *fetch_err(const char *name, const char *url, const char *checksum,
				    const char *origin, const struct imgf_fetch_opts *o)
{
	struct imgf_input in;
	struct imgf_error *err = NULL;
	input_init(&in, name, url, checksum);
	if (origin)
		in.origin = xstrdup(origin);
	CHECK(imgf_fetch_all(&in, 1, o, &err) < 0);
	CHECK(err != NULL);
	imgf_input_release(&in);
	return err;
}

TEST(download_verifies_and_is_cached)
{
	SETUP(o);
	size_t len = 300000;
	_cleanup_free_ char *data = make_data(len, 1);
	put_file("a.bin", data, len);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, data, len, hex);
	_cleanup_free_ char *url = url_of("a.bin");
	_cleanup_free_ char *spec = xasprintf("sha256:%s", hex);
	_cleanup_free_ char *want_path = xasprintf("%s/downloads/sha256/%s", srv.cache, hex);

	struct imgf_input in;
	struct imgf_error *err = NULL;
	input_init(&in, "a", url, spec);
	CHECK(imgf_fetch_all(&in, 1, &o, &err) == 0);
	CHECK(err == NULL);
	CHECK_STR(in.path, want_path);
	CHECK_STR(in.sha256, hex);
	CHECK_STR(in.hex, hex);
	CHECK(in.alg == IMGF_SHA256);
	CHECK(in.size == len);
	CHECK(file_equals(in.path, data, len));
	struct stat st;
	CHECK(stat(want_path, &st) == 0 && (st.st_mode & 07777) == 0444);
	_cleanup_free_ char *partial = xasprintf("%s/downloads/partial", srv.cache);
	CHECK(dir_entries(partial) == 0);
	CHECK(log_count("GET /a.bin -- 200 300000", 1) == 1);
	imgf_input_release(&in);

	/* Second time: from the cache, re-verified, no request at all. */
	input_init(&in, "a", url, spec);
	CHECK(imgf_fetch_all(&in, 1, &o, &err) == 0);
	CHECK_STR(in.path, want_path);
	CHECK_STR(in.sha256, hex);
	CHECK(in.size == len);
	CHECK(log_count("GET /a.bin ", 1) == 1);
	imgf_input_release(&in);
	imgf_error_free(err);
}

TEST(sha512_checksum)
{
	SETUP(o);
	size_t len = 70000;
	_cleanup_free_ char *data = make_data(len, 2);
	put_file("b.bin", data, len);
	char hex512[IMGF_DIGEST_HEX_MAX], hex256[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA512, data, len, hex512);
	imgf_digest_buffer(IMGF_SHA256, data, len, hex256);
	_cleanup_free_ char *url = url_of("b.bin");
	_cleanup_free_ char *spec = xasprintf("sha512:%s", hex512);
	_cleanup_free_ char *want_path = xasprintf("%s/downloads/sha512/%s", srv.cache, hex512);

	struct imgf_input in;
	struct imgf_error *err = NULL;
	input_init(&in, "b", url, spec);
	CHECK(imgf_fetch_all(&in, 1, &o, &err) == 0);
	CHECK(in.alg == IMGF_SHA512);
	CHECK_STR(in.hex, hex512);
	CHECK_STR(in.sha256, hex256); /* the manifest always gets sha256 */
	CHECK_STR(in.path, want_path);
	CHECK(file_equals(in.path, data, len));
	imgf_input_release(&in);

	/* Cached: still both digests. */
	input_init(&in, "b", url, spec);
	CHECK(imgf_fetch_all(&in, 1, &o, &err) == 0);
	CHECK_STR(in.sha256, hex256);
	CHECK(log_count("GET /b.bin ", 1) == 1);
	imgf_input_release(&in);
	imgf_error_free(err);
}

TEST(checksum_lists_and_checksum_urls)
{
	SETUP(o);
	size_t len = 5000;
	_cleanup_free_ char *c = make_data(len, 3), *c2 = make_data(len, 4), *d = make_data(len, 5),
			    *e = make_data(len, 6);
	put_file("c.bin", c, len);
	put_file("c2.bin", c2, len);
	put_file("d.bin", d, len);
	put_file("e.bin", e, len);
	char hc[IMGF_DIGEST_HEX_MAX], hc2[IMGF_DIGEST_HEX_MAX], hd[IMGF_DIGEST_HEX_MAX],
		he[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, c, len, hc);
	imgf_digest_buffer(IMGF_SHA256, c2, len, hc2);
	imgf_digest_buffer(IMGF_SHA256, d, len, hd);
	imgf_digest_buffer(IMGF_SHA512, e, len, he);
	_cleanup_free_ char *sums =
		xasprintf("%s  other.bin\n%s  ./c.bin\n%s *c2.bin\n", hd, hc, hc2);
	put_file("SHA256SUMS", sums, strlen(sums));
	_cleanup_free_ char *dsum = xasprintf("%s\n", hd); /* dl.k8s.io style: bare hex */
	put_file("d.bin.sha256", dsum, strlen(dsum));
	_cleanup_free_ char *esum = xasprintf("%s  e.bin\n", he);
	put_file("e.bin.sha512", esum, strlen(esum));

	_cleanup_free_ char *list = xasprintf("file:%s/SHA256SUMS", srv.base);
	_cleanup_free_ char *curl = url_of("c.bin?token=abc"); /* the query is not the name */
	_cleanup_free_ char *c2url = url_of("c2.bin");
	_cleanup_free_ char *durl = url_of("d.bin");
	_cleanup_free_ char *dsumurl = url_of("d.bin.sha256");
	_cleanup_free_ char *eurl = url_of("e.bin");
	_cleanup_free_ char *esumurl = url_of("e.bin.sha512");

	struct imgf_input in[4];
	struct imgf_error *err = NULL;
	input_init(&in[0], "c", curl, list);
	input_init(&in[1], "c2", c2url, list);
	input_init(&in[2], "d", durl, dsumurl);
	input_init(&in[3], "e", eurl, esumurl);
	int r = imgf_fetch_all(in, 4, &o, &err);
	if (r < 0)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK(r == 0);
	CHECK_STR(in[0].hex, hc);
	CHECK(file_equals(in[0].path, c, len));
	CHECK_STR(in[1].hex, hc2);
	CHECK(file_equals(in[1].path, c2, len));
	CHECK_STR(in[2].hex, hd);
	CHECK(in[2].alg == IMGF_SHA256);
	CHECK(file_equals(in[2].path, d, len));
	CHECK_STR(in[3].hex, he);
	CHECK(in[3].alg == IMGF_SHA512);
	CHECK(file_equals(in[3].path, e, len));
	CHECK(log_count("GET /SHA256SUMS ", 1) == 1); /* one list, read once for both */
	for (size_t i = 0; i < ARRAY_SIZE(in); i++)
		imgf_input_release(&in[i]);
	imgf_error_free(err);
}

TEST(checksum_list_errors)
{
	SETUP(o);
	_cleanup_free_ char *sums = xasprintf("%064d  listed.bin\n", 7);
	put_file("LIST1", sums, strlen(sums));
	put_file("unlisted.bin", "x", 1);
	_cleanup_free_ char *list = xasprintf("file:%s/LIST1", srv.base);
	_cleanup_free_ char *url = url_of("unlisted.bin");
	struct imgf_error *err = fetch_err("u", url, list, NULL, &o);
	_cleanup_free_ char *want =
		xasprintf("'u': 'unlisted.bin' not found in checksum list '%s/LIST1'", srv.base);
	CHECK_ERR(err, want);
	CHECK(log_count("GET /LIST1 ", 1) == 1);
	CHECK(count_lines("GET /unlisted.bin") == 0); /* nothing downloaded unverifiable */
	imgf_error_free(err);

	_cleanup_free_ char *missing = url_of("nope.bin.sha256");
	err = fetch_err("u", url, missing, NULL, &o);
	CHECK_ERR(err, "'u': checksum list: fetch '");
	CHECK_ERR(err, "nope.bin.sha256': http 404");
	imgf_error_free(err);

	err = fetch_err("u", url, "md5:abc", NULL, &o);
	CHECK_ERR(err, "fetch 'u': checksum 'md5:abc': unsupported algorithm 'md5'");
	imgf_error_free(err);

	/* A list bigger than 1 MiB is refused. */
	size_t big = (1 << 20) + 10;
	_cleanup_free_ char *huge = make_data(big, 8);
	put_file("HUGE.sha256", huge, big);
	_cleanup_free_ char *hugeurl = url_of("HUGE.sha256");
	err = fetch_err("u", url, hugeurl, NULL, &o);
	CHECK_ERR(err, "larger than 1048576 bytes");
	imgf_error_free(err);
}

TEST(mismatch_names_both_digests_and_leaves_nothing)
{
	SETUP(o);
	size_t len = 40000;
	_cleanup_free_ char *data = make_data(len, 9), *other = make_data(len, 10);
	put_file("m.bin", data, len);
	char got[IMGF_DIGEST_HEX_MAX], want[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, data, len, got);
	imgf_digest_buffer(IMGF_SHA256, other, len, want);
	_cleanup_free_ char *url = url_of("m.bin");
	_cleanup_free_ char *spec = xasprintf("sha256:%s", want);
	struct imgf_error *err = fetch_err("m", url, spec, "variable 'm_url'", &o);
	_cleanup_free_ char *msg =
		xasprintf("'m': sha256 mismatch for '%s': want %s, got %s", url, want, got);
	CHECK_ERR(err, msg);
	CHECK(err && err->status == IMGF_EXIT_FAIL);
	imgf_error_free(err);
	_cleanup_free_ char *sha = xasprintf("%s/downloads/sha256", srv.cache);
	_cleanup_free_ char *partial = xasprintf("%s/downloads/partial", srv.cache);
	CHECK(dir_entries(sha) == 0);
	CHECK(dir_entries(partial) == 0);
}

TEST(retries_503_then_succeeds)
{
	SETUP(o);
	size_t len = 20000;
	_cleanup_free_ char *data = make_data(len, 11);
	put_file("f.bin", data, len);
	_cleanup_free_ char *url = url_of("f.bin?fail=503&times=2");
	_cleanup_free_ char *spec = sha256_spec(data, len);
	expect_fetch_ok("f", url, spec, &o, data, len);
	CHECK(log_count("GET /f.bin?fail=503&times=2 -- 503 ", 2) == 2);
	CHECK(log_count("GET /f.bin?fail=503&times=2 -- 200 20000", 1) == 1);

	new_cache(&o);
	put_file("j.bin", data, len);
	_cleanup_free_ char *url429 = url_of("j.bin?fail=429&times=1");
	expect_fetch_ok("j", url429, spec, &o, data, len);
	CHECK(log_count("GET /j.bin?fail=429&times=1 ", 2) == 2);

	new_cache(&o);
	put_file("j2.bin", data, len);
	_cleanup_free_ char *url408 = url_of("j2.bin?fail=408&times=1");
	expect_fetch_ok("j2", url408, spec, &o, data, len);
	CHECK(log_count("GET /j2.bin?fail=408&times=1 ", 2) == 2);
}

TEST(retry_after_is_honoured)
{
	SETUP(o);
	size_t len = 1000;
	_cleanup_free_ char *data = make_data(len, 12);
	put_file("h.bin", data, len);
	_cleanup_free_ char *url = url_of("h.bin?fail=503&times=1&retry_after=1");
	_cleanup_free_ char *spec = sha256_spec(data, len);
	int64_t t0 = mono_ms();
	expect_fetch_ok("h", url, spec, &o, data, len);
	int64_t took = mono_ms() - t0;
	CHECK(took >= 950); /* Retry-After: 1, not the 50 ms backoff */
	CHECK(took < 5000);
	CHECK(log_count("GET /h.bin?fail=503&times=1&retry_after=1 ", 2) == 2);
}

TEST(gives_up_after_max_attempts)
{
	SETUP(o);
	o.max_attempts = 3;
	_cleanup_free_ char *data = make_data(100, 13);
	put_file("i.bin", data, 100);
	_cleanup_free_ char *url = url_of("i.bin?fail=500&times=10");
	_cleanup_free_ char *spec = sha256_spec(data, 100);
	struct imgf_error *err = fetch_err("i", url, spec, NULL, &o);
	_cleanup_free_ char *want = xasprintf(
		"fetch 'i' from '%s': http 500 internal server error (gave up after 3 attempts)",
		url);
	CHECK_ERR(err, want);
	CHECK(log_count("GET /i.bin?fail=500&times=10 ", 3) == 3);
	imgf_error_free(err);
}

TEST(truncated_transfer_resumes_with_range)
{
	SETUP(o);
	size_t len = 200000;
	_cleanup_free_ char *data = make_data(len, 14);
	put_file("g.bin", data, len);
	_cleanup_free_ char *url = url_of("g.bin?truncate=1000");
	_cleanup_free_ char *spec = sha256_spec(data, len);
	expect_fetch_ok("g", url, spec, &o, data, len);
	CHECK(log_count("GET /g.bin?truncate=1000 -- 200 1000", 1) == 1);
	CHECK(log_count("GET /g.bin?truncate=1000 bytes=1000- 206 199000", 1) == 1);
}

TEST(partial_from_an_earlier_run_is_resumed)
{
	SETUP(o);
	size_t len = 100000;
	_cleanup_free_ char *data = make_data(len, 15);
	put_file("p.bin", data, len);
	_cleanup_free_ char *url = url_of("p.bin");
	_cleanup_free_ char *spec = sha256_spec(data, len);
	write_partial(url, data, 5000);
	expect_fetch_ok("p", url, spec, &o, data, len);
	CHECK(log_count("GET /p.bin bytes=5000- 206 95000", 1) == 1);
	CHECK(count_lines("GET /p.bin --") == 0);
	_cleanup_free_ char *partial = partial_path_for(url);
	CHECK(access(partial, F_OK) < 0);

	/* A complete partial (crash before the rename): 416, verified, used. */
	new_cache(&o);
	put_file("p2.bin", data, len);
	_cleanup_free_ char *url2 = url_of("p2.bin");
	write_partial(url2, data, len);
	expect_fetch_ok("p2", url2, spec, &o, data, len);
	CHECK(log_count("GET /p2.bin bytes=100000- 416", 1) == 1);
	CHECK(count_lines("GET /p2.bin --") == 0);
}

TEST(stale_partial_is_discarded)
{
	SETUP(o);
	size_t len = 100000;
	_cleanup_free_ char *data = make_data(len, 16), *junk = make_data(5000, 17);
	_cleanup_free_ char *spec = sha256_spec(data, len);

	/* The server ignores Range and answers 200: start over with that body. */
	put_file("k.bin", data, len);
	_cleanup_free_ char *url = url_of("k.bin?ignore_range=1");
	write_partial(url, junk, 5000);
	expect_fetch_ok("k", url, spec, &o, data, len);
	CHECK(log_count("GET /k.bin?ignore_range=1 bytes=5000- 200 ", 1) == 1);
	CHECK(log_count("GET /k.bin?ignore_range=1 -- 200 100000", 1) == 1);

	/* Resumed bytes that do not belong to the file: a mismatch, then one fresh download. */
	new_cache(&o);
	put_file("l.bin", data, len);
	_cleanup_free_ char *url2 = url_of("l.bin");
	write_partial(url2, junk, 5000);
	expect_fetch_ok("l", url2, spec, &o, data, len);
	CHECK(log_count("GET /l.bin bytes=5000- 206 95000", 1) == 1);
	CHECK(log_count("GET /l.bin -- 200 100000", 1) == 1);
}

TEST(corrupt_cache_entry_is_replaced)
{
	SETUP(o);
	size_t len = 30000;
	_cleanup_free_ char *data = make_data(len, 18);
	put_file("q.bin", data, len);
	_cleanup_free_ char *url = url_of("q.bin");
	_cleanup_free_ char *spec = sha256_spec(data, len);
	expect_fetch_ok("q", url, spec, &o, data, len);
	_cleanup_free_ char *entry = xasprintf("%s/downloads/sha256/%s", srv.cache, spec + 7);
	CHECK(unlink(entry) == 0);
	CHECK(write_file_atomic(entry, "corrupt", 7, 0444, NULL) == 0);
	expect_fetch_ok("q", url, spec, &o, data, len);
	CHECK(log_count("GET /q.bin -- 200 30000", 2) == 2);
	CHECK(file_equals(entry, data, len));
}

TEST(http_404_is_not_retried)
{
	SETUP(o);
	_cleanup_free_ char *url = url_of("missing.bin");
	struct imgf_error *err = fetch_err("missing", url, "sha256:" EMPTY_SHA256, NULL, &o);
	_cleanup_free_ char *want = xasprintf("fetch 'missing' from '%s': http 404 not found", url);
	CHECK_ERR(err, want);
	CHECK(err && !strstr(err->msg, "attempts"));
	CHECK(err && !strstr(err->msg, "URL from"));
	CHECK(log_count("GET /missing.bin ", 1) == 1);
	imgf_error_free(err);
}

TEST(errors_carry_the_origin)
{
	SETUP(o);
	_cleanup_free_ char *url = url_of("missing2.bin");
	struct imgf_error *err = fetch_err("containerd", url, "sha256:" EMPTY_SHA256,
					   "variable 'containerd_url'", &o);
	_cleanup_free_ char *want =
		xasprintf("fetch 'containerd' from '%s': http 404 not found (URL "
			  "from variable 'containerd_url'; point it at a mirror "
			  "with --var)",
			  url);
	CHECK_ERR(err, want);
	imgf_error_free(err);

	/* Connection refused is retried (a restarting server), then reported with the origin. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(getsockname(s, (struct sockaddr *)&sa, &sl) == 0);
	close(s); /* nobody listens there now */
	_cleanup_free_ char *dead = xasprintf("http://127.0.0.1:%d/x.bin", ntohs(sa.sin_port));
	o.max_attempts = 2;
	err = fetch_err("runc", dead, "sha256:" EMPTY_SHA256, "variable 'runc_url'", &o);
	_cleanup_free_ char *want2 = xasprintf("fetch 'runc' from '%s': ", dead);
	CHECK_ERR(err, want2);
	CHECK_ERR(err, "(gave up after 2 attempts) (URL from variable 'runc_url'; point it at a "
		       "mirror with --var)");
	imgf_error_free(err);
}

TEST(parallel_fetch)
{
	SETUP(o);
	o.parallel = 3;
	enum {
		N = 7
	};
	size_t len = 400000;
	struct imgf_input in[N + 1];
	char *data[N];
	for (int i = 0; i < N; i++) {
		data[i] = make_data(len + (size_t)i, 100 + (unsigned)i);
		_cleanup_free_ char *name = xasprintf("par%d.bin", i);
		put_file(name, data[i], len + (size_t)i);
		_cleanup_free_ char *url = url_of(name);
		_cleanup_free_ char *spec = sha256_spec(data[i], len + (size_t)i);
		input_init(&in[i], name, url, spec);
	}
	/* The same file twice is downloaded once. */
	input_init(&in[N], "again", in[0].url, in[0].checksum);
	struct imgf_error *err = NULL;
	int r = imgf_fetch_all(in, N + 1, &o, &err);
	if (r < 0)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK(r == 0);
	for (int i = 0; i < N; i++) {
		CHECK(file_equals(in[i].path, data[i], len + (size_t)i));
		CHECK(in[i].size == len + (size_t)i);
	}
	CHECK_STR(in[N].path, in[0].path);
	CHECK_STR(in[N].sha256, in[0].sha256);
	CHECK(in[N].size == in[0].size);
	CHECK(log_count("GET /par0.bin ", 1) == 1);
	for (int i = 0; i < N; i++)
		free(data[i]);
	for (int i = 0; i <= N; i++)
		imgf_input_release(&in[i]);
	imgf_error_free(err);
}

TEST(two_processes_share_one_download)
{
	SETUP(o);
	size_t len = 20 << 20;
	_cleanup_free_ char *data = make_data(len, 21);
	put_file("shared.bin", data, len);
	_cleanup_free_ char *url = url_of("shared.bin");
	_cleanup_free_ char *spec = sha256_spec(data, len);

	pid_t child = fork();
	if (child == 0) {
		struct imgf_input in;
		struct imgf_error *err = NULL;
		input_init(&in, "shared", url, spec);
		int r = imgf_fetch_all(&in, 1, &o, &err);
		bool ok = r == 0 && file_equals(in.path, data, len);
		_exit(ok ? 0 : 1); /* not exit(): the server belongs to the parent */
	}
	CHECK(child > 0);
	expect_fetch_ok("shared", url, spec, &o, data, len);
	int status = 0;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The partial file is locked: the second process waits and then uses the cache. */
	CHECK(log_count("GET /shared.bin ", 1) == 1);
	_cleanup_free_ char *partial = xasprintf("%s/downloads/partial", srv.cache);
	CHECK(dir_entries(partial) == 0);
}

TEST(parallel_failure_reports_the_failing_input)
{
	SETUP(o);
	size_t len = 1000;
	_cleanup_free_ char *data = make_data(len, 19);
	put_file("ok1.bin", data, len);
	_cleanup_free_ char *u1 = url_of("ok1.bin");
	_cleanup_free_ char *u2 = url_of("gone.bin");
	_cleanup_free_ char *spec = sha256_spec(data, len);
	struct imgf_input in[2];
	struct imgf_error *err = NULL;
	input_init(&in[0], "ok1", u1, spec);
	input_init(&in[1], "gone", u2, "sha256:" OTHER_SHA256);
	CHECK(imgf_fetch_all(in, 2, &o, &err) < 0);
	CHECK_ERR(err, "fetch 'gone' from '");
	CHECK_ERR(err, "http 404");
	imgf_input_release(&in[0]);
	imgf_input_release(&in[1]);
	imgf_error_free(err);
}

TEST(same_url_with_two_checksums_is_an_error)
{
	SETUP(o);
	_cleanup_free_ char *url = url_of("twice.bin");
	struct imgf_input in[2];
	struct imgf_error *err = NULL;
	input_init(&in[0], "one", url, "sha256:" EMPTY_SHA256);
	input_init(&in[1], "two", url, "sha256:" OTHER_SHA256);
	CHECK(imgf_fetch_all(in, 2, &o, &err) < 0);
	CHECK_ERR(err, "inputs 'one' and 'two' fetch '");
	CHECK_ERR(err, "with different checksums");
	CHECK(count_lines("twice.bin") == 0);
	imgf_input_release(&in[0]);
	imgf_input_release(&in[1]);
	imgf_error_free(err);
}

TEST(file_urls_and_redirects)
{
	SETUP(o);
	size_t len = 12345;
	_cleanup_free_ char *data = make_data(len, 20);
	put_file("local.bin", data, len);
	_cleanup_free_ char *spec = sha256_spec(data, len);
	_cleanup_free_ char *furl = xasprintf("file://%s/local.bin", srv.www);
	expect_fetch_ok("local", furl, spec, &o, data, len);

	new_cache(&o);
	_cleanup_free_ char *rurl = url_of("moved?redirect=/local.bin");
	expect_fetch_ok("moved", rurl, spec, &o, data, len);
	CHECK(log_count("GET /moved?redirect=/local.bin -- 302", 1) == 1);
	CHECK(log_count("GET /local.bin -- 200 12345", 1) == 1);
}

TEST(fetch_to_buffer)
{
	SETUP(o);
	put_file("small.txt", "hello\n", 6);
	_cleanup_free_ char *url = url_of("small.txt");
	struct strbuf sb = STRBUF_INIT;
	struct imgf_error *err = NULL;
	CHECK(imgf_fetch_to_buffer(url, 100, &o, &sb, &err) == 0);
	CHECK_STR(sb.buf, "hello\n");
	CHECK(sb.len == 6);
	CHECK(sb.max == 0); /* the caller's cap is left as it was */

	CHECK(imgf_fetch_to_buffer(url, 5, &o, &sb, &err) < 0);
	_cleanup_free_ char *want = xasprintf("fetch '%s': larger than 5 bytes", url);
	CHECK_ERR(err, want);
	imgf_error_clear(&err);

	_cleanup_free_ char *flaky = url_of("small.txt?fail=502&times=1");
	CHECK(imgf_fetch_to_buffer(flaky, 100, &o, &sb, &err) == 0);
	CHECK_STR(sb.buf, "hello\n");

	_cleanup_free_ char *missing = url_of("nothing.txt");
	CHECK(imgf_fetch_to_buffer(missing, 100, &o, &sb, &err) < 0);
	_cleanup_free_ char *want404 = xasprintf("fetch '%s': http 404 not found", missing);
	CHECK_ERR(err, want404);
	imgf_error_free(err);
	strbuf_release(&sb);
}

TEST(interrupt_stops_transfers)
{
	SETUP(o);
	put_file("int.bin", "x", 1);
	_cleanup_free_ char *url = url_of("int.bin");
	imgf_interrupted = 1;
	struct imgf_error *err = fetch_err("int", url, "sha256:" EMPTY_SHA256, NULL, &o);
	imgf_interrupted = 0;
	CHECK_ERR(err, "interrupted");
	CHECK(err && err->status == IMGF_EXIT_INTERRUPTED);
	imgf_error_free(err);
}

TEST(cache_dir_default_follows_the_environment)
{
	_cleanup_free_ char *saved =
		getenv("IMGFORGE_CACHE_DIR") ? xstrdup(getenv("IMGFORGE_CACHE_DIR")) : NULL;
	setenv("IMGFORGE_CACHE_DIR", "/x/cache", 1);
	_cleanup_free_ char *a = imgf_cache_dir_default();
	CHECK_STR(a, "/x/cache");
	unsetenv("IMGFORGE_CACHE_DIR");
	setenv("XDG_CACHE_HOME", "/xdg", 1);
	_cleanup_free_ char *b = imgf_cache_dir_default();
	CHECK_STR(b, "/xdg/imgforge");
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/home/u", 1);
	_cleanup_free_ char *c = imgf_cache_dir_default();
	CHECK_STR(c, "/home/u/.cache/imgforge");
	if (saved)
		setenv("IMGFORGE_CACHE_DIR", saved, 1);

	struct imgf_fetch_opts o;
	setenv("IMGFORGE_RETRY_BASE_MS", "7", 1);
	imgf_fetch_opts_default(&o, "/c");
	CHECK(o.retry_base_ms == 7);
	CHECK_STR(o.cache_dir, "/c");
	CHECK(o.max_attempts == 5 && o.parallel == 4);
	setenv("IMGFORGE_RETRY_BASE_MS", "junk", 1);
	imgf_fetch_opts_default(&o, NULL);
	CHECK(o.retry_base_ms == 1000);
	setenv("IMGFORGE_RETRY_BASE_MS", "50", 1);
}

/* The partial directory holds nothing (a failed capped download leaves no bytes behind). */
static bool no_partials(void)
{
	_cleanup_free_ char *dir = xasprintf("%s/downloads/partial", srv.cache);
	return dir_entries(dir) == 0;
}

TEST(content_length_over_the_cap_fails_before_the_body)
{
	SETUP(o);
	size_t len = 300000;
	_cleanup_free_ char *data = make_data(len, 41);
	put_file("big.bin", data, len);
	_cleanup_free_ char *url = url_of("big.bin");
	_cleanup_free_ char *ck = sha256_spec(data, len);
	struct imgf_input in;
	struct imgf_error *err = NULL;
	input_init(&in, "big", url, ck);
	in.max_size = 100000;
	CHECK(imgf_fetch_all(&in, 1, &o, &err) < 0);
	CHECK_ERR(err, "larger than the cap of 100000 bytes (the server announced 300000); raise "
		       "it with the step's 'max_size' or variable 'download_max_size'");
	CHECK(no_partials());
	imgf_error_free(err);
	imgf_input_release(&in);

	/* The fetch's default applies to inputs that set none; a higher one lets it through. */
	o.max_size = 1000;
	err = fetch_err("big", url, ck, NULL, &o);
	CHECK_ERR(err, "larger than the cap of 1000 bytes");
	imgf_error_free(err);
	o.max_size = 0;
	expect_fetch_ok("big", url, ck, &o, data, len);
}

TEST(endless_body_stops_at_the_cap_and_leaves_no_partial)
{
	SETUP(o);
	_cleanup_free_ char *url = url_of("x?endless=1");
	o.max_size = 2 << 20;
	int64_t t0 = mono_ms();
	struct imgf_error *err = fetch_err("endless", url, "sha256:" OTHER_SHA256, NULL, &o);
	CHECK(mono_ms() - t0 < 20000);
	CHECK_ERR(err, "fetch 'endless' from '");
	CHECK_ERR(err, "larger than the cap of 2097152 bytes; raise it");
	CHECK(no_partials());
	imgf_error_free(err);
}

TEST(partial_over_the_cap_is_dropped_not_resumed)
{
	SETUP(o);
	size_t len = 1000;
	_cleanup_free_ char *data = make_data(len, 42);
	put_file("capped.bin", data, len);
	_cleanup_free_ char *url = url_of("capped.bin");
	_cleanup_free_ char *junk = make_data(5000, 43);
	write_partial(url, junk, 5000);
	_cleanup_free_ char *ck = sha256_spec(data, len);
	o.max_size = 2000;
	expect_fetch_ok("capped", url, ck, &o, data, len);
	CHECK(log_count("GET /capped.bin bytes=5000-", 0) == 0);
	CHECK(log_count("GET /capped.bin -- 200", 1) == 1);
}

TEST(overall_deadline_stops_a_slow_endless_download)
{
	SETUP(o);
	/* 4 KiB/s: above the stall floor, so only the deadline can stop it. */
	_cleanup_free_ char *url = url_of("y?endless=1&rate=4096");
	o.timeout_s = 2;
	int64_t t0 = mono_ms();
	struct imgf_error *err = fetch_err("slow", url, "sha256:" OTHER_SHA256, NULL, &o);
	int64_t took = mono_ms() - t0;
	CHECK(took >= 1900 && took < 6000);
	CHECK_ERR(err, "not done within 2 s (variable 'download_timeout')");
	imgf_error_free(err);

	struct strbuf sb = STRBUF_INIT;
	err = NULL;
	CHECK(imgf_fetch_to_buffer(url, 1 << 30, &o, &sb, &err) < 0);
	CHECK_ERR(err, "not done within 2 s");
	imgf_error_free(err);
	strbuf_release(&sb);
}

/* stderr into a file while one fetch runs; returns what was written (caller frees). */
static char *fetch_capturing_stderr(struct imgf_input *in, const struct imgf_fetch_opts *o, int *r)
{
	_cleanup_free_ char *path = path_join(srv.root, "stderr.txt");
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	FILE *f = fopen(path, "w");
	dup2(fileno(f), STDERR_FILENO);
	struct imgf_error *err = NULL;
	*r = imgf_fetch_all(in, 1, o, &err);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	fclose(f);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	char *text = NULL;
	CHECK(read_file(path, 0, &text, NULL, NULL) == 0);
	return text;
}

TEST(a_checksum_list_over_plain_http_is_warned_about)
{
	SETUP(o);
	size_t len = 2000;
	_cleanup_free_ char *data = make_data(len, 44);
	put_file("warn.bin", data, len);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, data, len, hex);
	_cleanup_free_ char *list = xasprintf("%s  warn.bin\n", hex);
	put_file("warn.sha256sum", list, strlen(list));

	/* A mirror that is not loopback, reached through the test server as an HTTP proxy. */
	setenv("http_proxy", srv.base, 1);
	struct imgf_input in;
	input_init(&in, "warned", "http://mirror.invalid/warn.bin",
		   "file:http://mirror.invalid/warn.sha256sum");
	int r;
	_cleanup_free_ char *text = fetch_capturing_stderr(&in, &o, &r);
	unsetenv("http_proxy");
	CHECK(r == 0);
	CHECK(text && strstr(text, "'warned': checksum list 'http://mirror.invalid/warn.sha256sum' "
				   "comes over plain http: the download's integrity rests on an "
				   "unauthenticated connection"));
	imgf_input_release(&in);

	/* Loopback is no network hop: no warning. */
	new_cache(&o);
	_cleanup_free_ char *url = url_of("warn.bin");
	_cleanup_free_ char *ck = xasprintf("file:%s/warn.sha256sum", srv.base);
	input_init(&in, "local", url, ck);
	_cleanup_free_ char *quiet = fetch_capturing_stderr(&in, &o, &r);
	CHECK(r == 0);
	CHECK(quiet && !strstr(quiet, "plain http"));
	imgf_input_release(&in);
}
