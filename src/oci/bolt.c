/*
 * Bolt databases rewritten in a canonical layout (see bolt.h). The on-disk format, as
 * go.etcd.io/bbolt writes it (little-endian):
 *
 *   page     id u64, flags u16 (branch 1, leaf 2, meta 4, freelist 0x10), count u16,
 *            overflow u32 (pages after this one that belong to it), then the elements
 *   leaf     flags u32 (bucket 1), pos u32 (from the element to its key), ksize, vsize u32
 *   branch   pos u32, ksize u32, pgid u64
 *   meta     magic 0xED0CDAED, version 2, page size, flags u32; root bucket; freelist,
 *            high-water pgid, txid u64; checksum u64 (FNV-1a of what precedes it)
 *   bucket   a value of root pgid u64 and sequence u64; root 0 = an inline leaf page follows
 *
 * The rewrite puts pages 0 and 1 (meta), 2 (an empty freelist), then each bucket depth first
 * in key order: its sub-buckets, its leaves, its branches. Buckets without sub-buckets that
 * fit in a quarter page are inline, as bbolt itself stores them.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bolt.h"
#include "error.h"
#include "strbuf.h"
#include "util.h"

#define PAGE_HDR 16
#define ELEM 16
#define F_BRANCH 0x01
#define F_LEAF 0x02
#define F_META 0x04
#define F_FREELIST 0x10
#define BUCKET_LEAF 0x01
#define MAGIC 0xED0CDAEDu
#define DEPTH_MAX 64
#define GO_UNIX_OFFSET 62135596800LL /* seconds from 0001-01-01 to 1970-01-01 */

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* ---- the content, read --------------------------------------------------------------- */

struct bucket;

struct item {
	const unsigned char *k, *v;
	uint32_t ks, vs;
	unsigned char *own_v; /* a clamped time, replacing v */
	struct bucket *child; /* a sub-bucket, or NULL for a value */
};

struct bucket {
	uint64_t seq;
	struct item *items;
	size_t n, alloc;
};

static void bucket_free(struct bucket *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		free(b->items[i].own_v);
		bucket_free(b->items[i].child);
	}
	free(b->items);
	free(b);
}

struct reader {
	const unsigned char *db;
	size_t len;
	uint32_t psz;
	int64_t epoch;
	struct strbuf path;  /* the bucket path, for messages */
	unsigned char *seen; /* a byte per page: each belongs to one node, so is read once */
	struct imgf_error **err;
};

static int bad(struct reader *r, const char *what, uint64_t pgid)
{
	return imgf_error_set(r->err, IMGF_EXIT_FAIL, "bolt database: %s (page %llu, bucket '%s')",
			      what, (unsigned long long)pgid, r->path.len ? r->path.buf : "/");
}

/* containerd's times are Go's time.MarshalBinary: version 1|2, seconds since year 1 (s64
 * BE), nanoseconds (s32 BE), zone offset (s16, and seconds with version 2). */
static void clamp_time(struct reader *r, struct item *it)
{
	static const char *const keys[] = {"createdat", "updatedat"};
	bool is_time = false;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		is_time |= it->ks == strlen(keys[i]) && !memcmp(it->k, keys[i], it->ks);
	if (!is_time || (it->vs != 15 && it->vs != 16) || (it->v[0] != 1 && it->v[0] != 2))
		return;
	int64_t sec = 0;
	for (int i = 1; i <= 8; i++)
		sec = (int64_t)((uint64_t)sec << 8 | it->v[i]);
	uint32_t nsec = (uint32_t)it->v[9] << 24 | (uint32_t)it->v[10] << 16 |
			(uint32_t)it->v[11] << 8 | it->v[12];
	int64_t unix_s = sec - GO_UNIX_OFFSET;
	if (unix_s < r->epoch || (unix_s == r->epoch && nsec == 0))
		return;
	it->own_v = xmalloc(it->vs);
	memcpy(it->own_v, it->v, it->vs);
	uint64_t s = (uint64_t)(r->epoch + GO_UNIX_OFFSET);
	for (int i = 8; i >= 1; i--, s >>= 8)
		it->own_v[i] = (unsigned char)s;
	memset(it->own_v + 9, 0, 4);
	it->v = it->own_v;
}

static int read_node(struct reader *r, const unsigned char *page, size_t avail, uint64_t pgid,
		     int depth, struct bucket *b);

static int read_page(struct reader *r, uint64_t pgid, int depth, struct bucket *b)
{
	if (pgid < 2 || pgid >= r->len / r->psz)
		return bad(r, "a page number outside the file", pgid);
	const unsigned char *p = r->db + pgid * r->psz;
	uint64_t pages = (uint64_t)get32(p + 12) + 1;
	if (pages > (r->len / r->psz) - pgid)
		return bad(r, "a page that runs past the end of the file", pgid);
	for (uint64_t i = pgid; i < pgid + pages; i++) {
		if (r->seen[i])
			return bad(r, "a page that belongs to two nodes", i);
		r->seen[i] = 1;
	}
	return read_node(r, p, (size_t)(pages * r->psz), pgid, depth, b);
}

static int read_bucket_value(struct reader *r, struct item *it, uint64_t pgid, int depth)
{
	if (it->vs < 16)
		return bad(r, "a bucket value shorter than its header", pgid);
	it->child = xcalloc(1, sizeof(*it->child));
	it->child->seq = get64(it->v + 8);
	uint64_t root = get64(it->v);
	size_t mark = r->path.len;
	strbuf_addch(&r->path, '/');
	strbuf_add(&r->path, it->k, it->ks);
	int ret = root == 0 ? read_node(r, it->v + 16, it->vs - 16, pgid, depth + 1, it->child)
			    : read_page(r, root, depth + 1, it->child);
	r->path.len = mark;
	r->path.buf[mark] = '\0';
	return ret;
}

static int read_node(struct reader *r, const unsigned char *page, size_t avail, uint64_t pgid,
		     int depth, struct bucket *b)
{
	if (depth > DEPTH_MAX)
		return bad(r, "buckets or branches nested too deep", pgid);
	if (avail < PAGE_HDR)
		return bad(r, "a page shorter than its header", pgid);
	uint16_t flags = get16(page + 8);
	size_t count = get16(page + 10);
	if (PAGE_HDR + count * ELEM > avail)
		return bad(r, "more elements than the page holds", pgid);
	for (size_t i = 0; i < count; i++) {
		const unsigned char *e = page + PAGE_HDR + i * ELEM;
		size_t at = PAGE_HDR + i * ELEM;
		if (flags & F_BRANCH) {
			if (read_page(r, get64(e + 8), depth + 1, b) < 0)
				return -1;
			continue;
		}
		if (!(flags & F_LEAF))
			return bad(r, "a page that is neither branch nor leaf in the tree", pgid);
		uint64_t pos = get32(e + 4), ks = get32(e + 8), vs = get32(e + 12);
		if (at + pos + ks + vs > avail)
			return bad(r, "an element that runs past its page", pgid);
		ALLOC_GROW(b->items, b->n + 1, b->alloc);
		struct item *it = &b->items[b->n++];
		*it = (struct item){
			.k = e + pos, .ks = (uint32_t)ks, .v = e + pos + ks, .vs = (uint32_t)vs};
		if (b->n > 1) {
			const struct item *prev = &b->items[b->n - 2];
			size_t m = prev->ks < it->ks ? prev->ks : it->ks;
			int c = memcmp(prev->k, it->k, m);
			if (c > 0 || (c == 0 && prev->ks >= it->ks))
				return bad(r, "keys out of order", pgid);
		}
		if (get32(e) & BUCKET_LEAF) {
			if (read_bucket_value(r, it, pgid, depth) < 0)
				return -1;
		} else {
			clamp_time(r, it);
		}
	}
	return 0;
}

/* ---- the content, written -------------------------------------------------------------- */

struct writer {
	struct strbuf *out;
	uint32_t psz;
	uint64_t next; /* the next page number */
};

/* Pages of `size` bytes in all, zeroed, at the end of the file; returns the first one's id. */
static uint64_t alloc_pages(struct writer *w, size_t size, unsigned char **at)
{
	size_t pages = (size + w->psz - 1) / w->psz;
	uint64_t id = w->next;
	w->next += pages;
	size_t off = w->out->len;
	strbuf_grow(w->out, pages * w->psz);
	memset(w->out->buf + off, 0, pages * w->psz);
	w->out->len += pages * w->psz;
	w->out->buf[w->out->len] = '\0';
	*at = (unsigned char *)w->out->buf + off;
	put64(*at, id);
	put32(*at + 12, (uint32_t)(pages - 1));
	return id;
}

struct entry { /* what one page element holds, for laying pages out */
	const unsigned char *k, *v;
	uint32_t ks, vs;
	uint32_t flags;
	uint64_t pgid;
};

/* A page's elements and data at p: leaf elements (flags, pos, ksize, vsize) or branch ones. */
static void fill_page(unsigned char *p, uint16_t flags, const struct entry *e, size_t n)
{
	put16(p + 8, flags);
	put16(p + 10, (uint16_t)n);
	size_t data = PAGE_HDR + n * ELEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char *el = p + PAGE_HDR + i * ELEM;
		uint32_t pos = (uint32_t)(data - (PAGE_HDR + i * ELEM));
		if (flags & F_LEAF) {
			put32(el, e[i].flags);
			put32(el + 4, pos);
			put32(el + 8, e[i].ks);
			put32(el + 12, e[i].vs);
		} else {
			put32(el, pos);
			put32(el + 4, e[i].ks);
			put64(el + 8, e[i].pgid);
		}
		memcpy(p + data, e[i].k, e[i].ks);
		data += e[i].ks;
		if (flags & F_LEAF) {
			memcpy(p + data, e[i].v, e[i].vs);
			data += e[i].vs;
		}
	}
}

static size_t entry_size(const struct entry *e, bool leaf)
{
	return ELEM + e->ks + (leaf ? e->vs : 0);
}

/* Lay entries out in pages of one level, filled in order; the first key and page id of
 * each page go to *up for the level above. Returns the number of pages. */
static size_t write_level(struct writer *w, const struct entry *e, size_t n, bool leaf,
			  struct entry **up)
{
	size_t pages = 0;
	for (size_t i = 0; i < n || (n == 0 && pages == 0);) {
		size_t j = i, size = PAGE_HDR;
		while (j < n && (j == i || size + entry_size(&e[j], leaf) <= w->psz) &&
		       j - i < UINT16_MAX)
			size += entry_size(&e[j++], leaf);
		unsigned char *p;
		uint64_t id = alloc_pages(w, size, &p);
		fill_page(p, leaf ? F_LEAF : F_BRANCH, e + i, j - i);
		*up = xrealloc(*up, (pages + 1) * sizeof(**up));
		(*up)[pages++] =
			(struct entry){.k = n ? e[i].k : NULL, .ks = n ? e[i].ks : 0, .pgid = id};
		i = j;
		if (n == 0)
			break;
	}
	return pages;
}

/* Write a bucket's pages; *val gets its bucket value (header, and an inline page). */
static void write_bucket(struct writer *w, struct bucket *b, bool may_inline, struct strbuf *val)
{
	struct strbuf *child_vals = xcalloc(b->n ? b->n : 1, sizeof(*child_vals));
	struct entry *e = xcalloc(b->n ? b->n : 1, sizeof(*e));
	bool has_child = false;
	size_t inline_size = PAGE_HDR;
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->items[i];
		child_vals[i] = (struct strbuf)STRBUF_INIT;
		e[i] = (struct entry){.k = it->k, .ks = it->ks, .v = it->v, .vs = it->vs};
		if (it->child) {
			has_child = true;
			write_bucket(w, it->child, true, &child_vals[i]);
			e[i].v = (const unsigned char *)child_vals[i].buf;
			e[i].vs = (uint32_t)child_vals[i].len;
			e[i].flags = BUCKET_LEAF;
		}
		inline_size += entry_size(&e[i], true);
	}
	unsigned char hdr[16];
	put64(hdr + 8, b->seq);
	if (may_inline && !has_child && inline_size <= w->psz / 4) {
		put64(hdr, 0);
		strbuf_add(val, hdr, sizeof(hdr));
		size_t off = val->len;
		strbuf_grow(val, inline_size);
		memset(val->buf + off, 0, inline_size);
		fill_page((unsigned char *)val->buf + off, F_LEAF, e, b->n);
		val->len += inline_size;
		val->buf[val->len] = '\0';
	} else {
		struct entry *level = NULL;
		size_t n = write_level(w, e, b->n, true, &level);
		while (n > 1) {
			struct entry *above = NULL;
			n = write_level(w, level, n, false, &above);
			free(level);
			level = above;
		}
		put64(hdr, level[0].pgid);
		strbuf_add(val, hdr, sizeof(hdr));
		free(level);
	}
	for (size_t i = 0; i < b->n; i++)
		strbuf_release(&child_vals[i]);
	free(child_vals);
	free(e);
}

static void write_meta(struct writer *w, uint64_t id, uint64_t root, uint64_t seq)
{
	unsigned char *p = (unsigned char *)w->out->buf + id * w->psz;
	put64(p, id);
	put16(p + 8, F_META);
	unsigned char *m = p + PAGE_HDR;
	put32(m, MAGIC);
	put32(m + 4, 2);
	put32(m + 8, w->psz);
	put32(m + 12, 0);
	put64(m + 16, root);
	put64(m + 24, seq);
	put64(m + 32, 2);	/* the freelist page */
	put64(m + 40, w->next); /* high-water mark */
	put64(m + 48, id);	/* txid: 0 and 1, as a new database has */
	put64(m + 56, fnv1a64(m, 56));
}

/* The newer of the two meta pages whose checksum holds. */
static int pick_meta(const unsigned char *in, size_t len, const unsigned char **meta,
		     struct imgf_error **err)
{
	*meta = NULL;
	if (len < PAGE_HDR + 64)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "bolt database: %zu bytes is too short",
				      len);
	uint32_t psz = get32(in + PAGE_HDR + 8);
	for (int i = 0; i < 2; i++) {
		if (psz < 1024 || psz > (1u << 20) || (size_t)psz * (i + 1) > len)
			break;
		const unsigned char *m = in + (size_t)i * psz + PAGE_HDR;
		if (get32(m) != MAGIC || get32(m + 4) != 2 || get32(m + 8) != psz ||
		    get64(m + 56) != fnv1a64(m, 56))
			continue;
		if (!*meta || get64(m + 48) > get64(*meta + 48))
			*meta = m;
	}
	if (!*meta)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "bolt database: no valid meta page (not a bolt v2 file)");
	return 0;
}

int imgf_bolt_normalize(const unsigned char *in, size_t len, int64_t epoch, struct strbuf *out,
			struct imgf_error **err)
{
	strbuf_reset(out);
	if (len > IMGF_BOLT_MAX)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "bolt database: %zu bytes, more than %u are not rewritten",
				      len, IMGF_BOLT_MAX);
	const unsigned char *meta;
	if (pick_meta(in, len, &meta, err) < 0)
		return -1;
	struct reader r = {.db = in,
			   .len = len,
			   .psz = get32(meta + 8),
			   .epoch = epoch,
			   .path = STRBUF_INIT,
			   .err = err};
	r.seen = xcalloc(len / r.psz + 1, 1);
	struct bucket *root = xcalloc(1, sizeof(*root));
	root->seq = get64(meta + 24);
	int ret = read_page(&r, get64(meta + 16), 0, root);
	strbuf_release(&r.path);
	free(r.seen);
	if (ret == 0) {
		struct writer w = {.out = out, .psz = r.psz, .next = 0};
		unsigned char *p;
		alloc_pages(&w, 2 * (size_t)w.psz, &p); /* the two meta pages */
		alloc_pages(&w, w.psz, &p);		/* the freelist: empty */
		put16(p + 8, F_FREELIST);
		put32((unsigned char *)out->buf + 12, 0); /* page 0 is one page */
		put64((unsigned char *)out->buf + w.psz, 1);
		struct strbuf val = STRBUF_INIT;
		write_bucket(&w, root, false, &val);
		write_meta(&w, 0, get64((unsigned char *)val.buf), root->seq);
		write_meta(&w, 1, get64((unsigned char *)val.buf), root->seq);
		strbuf_release(&val);
	}
	bucket_free(root);
	return ret;
}
