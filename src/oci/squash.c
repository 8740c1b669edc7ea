/*
 * Squashed, reproducible layers and the docker-archive that loads them (see squash.h).
 *
 * The export is read twice: first the headers alone (names, hard links, where each header
 * starts; data is skipped by seeking), then, in name order, each member's header and data.
 * A Docker Engine exports in walk order with sorted directories, which is name order here,
 * so the second pass is one sequential read; a member out of order is reached by reopening
 * the input at its header.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "bolt.h"
#include "digest.h"
#include "error.h"
#include "log.h"
#include "squash.h"
#include "strbuf.h"
#include "util.h"

#define COPY_BUF (64u << 10)
#define LINK_DEPTH_MAX 16

/* ---- names ------------------------------------------------------------------------------ */

/*
 * "./usr//bin/" -> "usr/bin"; NULL for the root itself and for names with ".." (a
 * container export has neither, so neither is kept).
 */
static char *member_name(const char *raw)
{
	struct strbuf sb = STRBUF_INIT;
	const char *p = raw;
	while (*p) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			strbuf_release(&sb);
			return NULL;
		}
		if (n && !(n == 1 && p[0] == '.')) {
			if (sb.len)
				strbuf_addch(&sb, '/');
			strbuf_add(&sb, p, n);
		}
		p = e;
	}
	if (!sb.len) {
		strbuf_release(&sb);
		return NULL;
	}
	return strbuf_detach(&sb, NULL);
}

/* Name order: component by component ('/' before every other byte), as `tar --sort=name`
 * walks a tree: a directory, then everything under it, then its next sibling. */
static int name_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
		if (ca == cb) {
			if (!ca)
				return 0;
			continue;
		}
		if (!ca)
			return -1;
		if (!cb)
			return 1;
		if (ca == '/')
			return -1;
		if (cb == '/')
			return 1;
		return ca < cb ? -1 : 1;
	}
}

static bool is_whiteout(const char *name)
{
	return str_has_prefix(path_basename(name), ".wh.");
}

static bool in_list(const char *name, const char *const *list)
{
	for (size_t i = 0; list && list[i]; i++)
		if (!strcmp(name, list[i]))
			return true;
	return false;
}

/* ---- the index (first pass) ------------------------------------------------------------- */

struct member {
	char *name;
	char *link;	/* hard link target as named in the input, or NULL */
	int64_t offset; /* where its header starts in the input */
	size_t seq;	/* its header's ordinal in the input */
	size_t root;	/* index of the member whose data it shares (itself for non-links) */
	size_t leader;	/* for a root: the index written with the data, the first by name */
};

struct index {
	struct member *m;
	size_t n, alloc;
};

static void index_release(struct index *ix)
{
	for (size_t i = 0; i < ix->n; i++) {
		free(ix->m[i].name);
		free(ix->m[i].link);
	}
	free(ix->m);
}

static int member_cmp(const void *a, const void *b)
{
	return name_cmp(((const struct member *)a)->name, ((const struct member *)b)->name);
}

static struct member *index_find(struct index *ix, const char *name)
{
	struct member key = {.name = (char *)name};
	return bsearch(&key, ix->m, ix->n, sizeof(*ix->m), member_cmp);
}

static struct archive *reader_new(void)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	return a;
}

/* The kinds of member a layer holds; sockets (which tar cannot restore) are left out. */
static bool kept_type(mode_t type)
{
	return type == AE_IFREG || type == AE_IFDIR || type == AE_IFLNK || type == AE_IFCHR ||
	       type == AE_IFBLK || type == AE_IFIFO;
}

static int index_read(const char *in_path, const struct imgf_squash_opts *o, struct index *ix,
		      size_t *dropped, struct imgf_error **err)
{
	struct archive *a = reader_new();
	int ret = -1;
	if (archive_read_open_filename(a, in_path, COPY_BUF) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': %s", in_path,
			       archive_error_string(a));
		goto out;
	}
	for (size_t seq = 0;; seq++) {
		if (imgf_interrupted) {
			imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
			goto out;
		}
		struct archive_entry *e;
		int r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': member %zu: %s", in_path,
				       seq + 1, archive_error_string(a));
			goto out;
		}
		const char *raw = archive_entry_pathname(e);
		char *name = raw ? member_name(raw) : NULL;
		if (!name) {
			if (raw && strstr(raw, "..")) {
				imgf_error_set(err, IMGF_EXIT_FAIL,
					       "read '%s': member '%s': name leaves the tree",
					       in_path, raw);
				goto out;
			}
			continue; /* the root directory itself */
		}
		const char *hl = archive_entry_hardlink(e);
		if (is_whiteout(name) || in_list(name, o->drop) ||
		    (!hl && !kept_type(archive_entry_filetype(e)))) {
			(*dropped)++;
			free(name);
			continue;
		}
		char *link = NULL;
		if (hl && !(link = member_name(hl))) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "read '%s': member '%s': hard link to '%s' leaves the tree",
				       in_path, name, hl);
			free(name);
			goto out;
		}
		ALLOC_GROW(ix->m, ix->n + 1, ix->alloc);
		ix->m[ix->n++] = (struct member){
			.name = name,
			.link = link,
			.offset = archive_read_header_position(a),
			.seq = seq,
		};
	}
	ret = 0;
out:
	archive_read_free(a);
	return ret;
}

/* Sort, refuse duplicates, and tie every hard link to the member holding its data. */
static int index_resolve(struct index *ix, const char *in_path, struct imgf_error **err)
{
	qsort(ix->m, ix->n, sizeof(*ix->m), member_cmp);
	for (size_t i = 0; i < ix->n; i++) {
		if (i && !name_cmp(ix->m[i - 1].name, ix->m[i].name))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "read '%s': member '%s' appears twice", in_path,
					      ix->m[i].name);
		ix->m[i].root = i;
		ix->m[i].leader = SIZE_MAX;
	}
	for (size_t i = 0; i < ix->n; i++) {
		struct member *t = &ix->m[i];
		for (int depth = 0; t->link; depth++) {
			struct member *next = index_find(ix, t->link);
			if (!next || depth == LINK_DEPTH_MAX)
				return imgf_error_set(
					err, IMGF_EXIT_FAIL,
					"read '%s': member '%s': hard link to '%s', which is %s",
					in_path, ix->m[i].name, t->link,
					next ? "a chain of links too long" : "not in the archive");
			t = next;
		}
		ix->m[i].root = (size_t)(t - ix->m);
	}
	for (size_t i = 0; i < ix->n; i++) {
		struct member *root = &ix->m[ix->m[i].root];
		if (root->leader == SIZE_MAX)
			root->leader = i;
	}
	return 0;
}

/* ---- the layer (second pass) ------------------------------------------------------------ */

struct layer_sink {
	int fd;
	const char *path;
	struct imgf_digest d;
	uint64_t size;
};

static la_ssize_t sink_write(struct archive *a, void *opaque, const void *buf, size_t len)
{
	struct layer_sink *s = opaque;
	const char *p = buf;
	size_t left = len;
	while (left) {
		ssize_t w = write(s->fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			archive_set_error(a, errno, "write '%s': %s", s->path, strerror(errno));
			return -1;
		}
		p += w;
		left -= (size_t)w;
	}
	imgf_digest_update(&s->d, buf, len);
	s->size += len;
	return (la_ssize_t)len;
}

/* Reads the input in name order, reopening it only when the next member is elsewhere. */
struct cursor {
	int fd;
	const char *path;
	struct archive *a;
	size_t next_seq; /* the ordinal the open reader returns next */
};

static int cursor_seek(struct cursor *c, const struct member *m, struct archive_entry **e,
		       struct imgf_error **err)
{
	if (!c->a || c->next_seq != m->seq) {
		archive_read_free(c->a);
		c->a = NULL;
		if (lseek(c->fd, (off_t)m->offset, SEEK_SET) < 0)
			return imgf_error_errno(err, errno, "seek in '%s'", c->path);
		c->a = reader_new();
		if (archive_read_open_fd(c->a, c->fd, COPY_BUF) != ARCHIVE_OK)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': %s", c->path,
					      archive_error_string(c->a));
	}
	int r = archive_read_next_header(c->a, e);
	c->next_seq = m->seq + 1;
	if (r < ARCHIVE_WARN || r == ARCHIVE_EOF)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': member '%s': %s", c->path,
				      m->name,
				      r == ARCHIVE_EOF ? "gone" : archive_error_string(c->a));
	_cleanup_free_ char *name = member_name(archive_entry_pathname(*e) ?: "");
	if (!name || strcmp(name, m->name) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "read '%s': member '%s' changed while it was read", c->path,
				      m->name);
	return 0;
}

struct xattr {
	const char *name;
	const void *value;
	size_t size;
};

static int xattr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct xattr *)a)->name, ((const struct xattr *)b)->name);
}

/* Extended attributes (file capabilities matter) in name order; SELinux labels are the
 * build host's, not the image's. */
static void copy_xattrs(struct archive_entry *from, struct archive_entry *to)
{
	struct xattr *x = NULL;
	size_t n = 0, alloc = 0;
	const char *name;
	const void *value;
	size_t size;
	archive_entry_xattr_reset(from);
	while (archive_entry_xattr_next(from, &name, &value, &size) == ARCHIVE_OK) {
		if (!strcmp(name, "security.selinux"))
			continue;
		ALLOC_GROW(x, n + 1, alloc);
		x[n++] = (struct xattr){name, value, size};
	}
	if (n)
		qsort(x, n, sizeof(*x), xattr_cmp);
	for (size_t i = 0; i < n; i++) /* libarchive's own pax headers repeat each one */
		if (!i || strcmp(x[i - 1].name, x[i].name) != 0)
			archive_entry_xattr_add_entry(to, x[i].name, x[i].value, x[i].size);
	free(x);
}

/* The output header: only what the files are, nothing of when or by whom they were made. */
static struct archive_entry *layer_entry(const struct member *m, struct archive_entry *in,
					 const char *link_to, int64_t epoch)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, m->name);
	archive_entry_set_perm(e, archive_entry_perm(in));
	archive_entry_set_uid(e, archive_entry_uid(in));
	archive_entry_set_gid(e, archive_entry_gid(in));
	int64_t mt = archive_entry_mtime(in);
	archive_entry_set_mtime(e, (time_t)(mt > epoch ? epoch : mt), 0);
	if (link_to) {
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_hardlink(e, link_to);
		archive_entry_set_size(e, 0);
	} else {
		mode_t type = archive_entry_filetype(in);
		archive_entry_set_filetype(e, type);
		if (type == AE_IFREG)
			archive_entry_set_size(e, archive_entry_size(in));
		else if (type == AE_IFLNK)
			archive_entry_set_symlink(e, archive_entry_symlink(in));
		else if (type == AE_IFCHR || type == AE_IFBLK)
			archive_entry_set_rdev(e, archive_entry_rdev(in));
	}
	copy_xattrs(in, e);
	return e;
}

static int copy_data(struct cursor *c, struct archive *w, const struct member *m, int64_t size,
		     char *buf, struct imgf_error **err)
{
	int64_t done = 0;
	for (;;) {
		la_ssize_t n = archive_read_data(c->a, buf, COPY_BUF);
		if (n < 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': member '%s': %s",
					      c->path, m->name, archive_error_string(c->a));
		if (n == 0)
			break;
		if (archive_write_data(w, buf, (size_t)n) != n)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "member '%s': %s", m->name,
					      archive_error_string(w));
		done += n;
	}
	if (done != size)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "read '%s': member '%s': %" PRId64
				      " bytes, header says %" PRId64,
				      c->path, m->name, done, size);
	return 0;
}

/*
 * The member's data, rewritten when it is a bolt database in canonical form (*rewritten set)
 * or, when it cannot be rewritten, as it is.
 */
static int bolt_member(struct cursor *c, const struct member *m, int64_t size, int64_t epoch,
		       struct strbuf *data, bool *rewritten, struct imgf_error **err)
{
	*rewritten = false;
	if (size > IMGF_BOLT_MAX) {
		log_warn("'%s': %lld bytes, too big to rewrite: the image will not be reproducible",
			 m->name, (long long)size);
		return 1;
	}
	struct strbuf raw = STRBUF_INIT;
	strbuf_grow(&raw, (size_t)size);
	for (;;) {
		la_ssize_t n = archive_read_data(c->a, raw.buf + raw.len, raw.alloc - raw.len - 1);
		if (n < 0) {
			strbuf_release(&raw);
			return imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': member '%s': %s",
					      c->path, m->name, archive_error_string(c->a));
		}
		if (n == 0)
			break;
		raw.len += (size_t)n;
		if (raw.len + 1 == raw.alloc)
			strbuf_grow(&raw, COPY_BUF);
	}
	struct imgf_error *e = NULL;
	if ((int64_t)raw.len != size) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "read '%s': member '%s': %zu bytes, header says %lld", c->path,
			       m->name, raw.len, (long long)size);
		strbuf_release(&raw);
		return -1;
	}
	if (imgf_bolt_normalize((const unsigned char *)raw.buf, raw.len, epoch, data, &e) == 0) {
		*rewritten = true;
	} else {
		log_warn("'%s' kept as it is (the image will not be reproducible): %s", m->name,
			 e->msg);
		imgf_error_free(e);
		strbuf_reset(data);
		strbuf_add(data, raw.buf, raw.len);
	}
	strbuf_release(&raw);
	return 0;
}

static int layer_write(struct index *ix, struct cursor *c, struct archive *w,
		       const struct imgf_squash_opts *o, size_t *rewritten, struct imgf_error **err)
{
	_cleanup_free_ char *buf = xmalloc(COPY_BUF);
	for (size_t i = 0; i < ix->n; i++) {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		struct member *m = &ix->m[i];
		struct member *root = &ix->m[m->root];
		/* The first of a set of hard links by name carries the data (read from wherever
		 * the input had it); the others link to it. */
		bool leader = root->leader == i;
		const char *link_to = leader ? NULL : ix->m[root->leader].name;
		struct archive_entry *in;
		if (cursor_seek(c, leader ? root : m, &in, err) < 0)
			return -1;
		bool regular = !link_to && archive_entry_filetype(in) == AE_IFREG;
		struct strbuf whole = STRBUF_INIT; /* a bolt database, read (and rewritten) whole */
		bool have_whole = false, bolt_done = false;
		if (regular && in_list(m->name, o->bolt)) {
			int br = bolt_member(c, m, archive_entry_size(in), o->epoch, &whole,
					     &bolt_done, err);
			if (br < 0)
				return -1;
			have_whole = br == 0;
			*rewritten += bolt_done;
		}
		struct archive_entry *out = layer_entry(m, in, link_to, o->epoch);
		if (have_whole)
			archive_entry_set_size(out, (la_int64_t)whole.len);
		int r = archive_write_header(w, out);
		archive_entry_free(out);
		if (r == ARCHIVE_OK && have_whole &&
		    archive_write_data(w, whole.buf, whole.len) != (la_ssize_t)whole.len)
			r = ARCHIVE_FATAL;
		strbuf_release(&whole);
		if (r != ARCHIVE_OK)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "member '%s': %s", m->name,
					      archive_error_string(w));
		if (regular && !have_whole &&
		    copy_data(c, w, m, archive_entry_size(in), buf, err) < 0)
			return -1;
		if (archive_write_finish_entry(w) != ARCHIVE_OK)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "member '%s': %s", m->name,
					      archive_error_string(w));
	}
	return 0;
}

int imgf_squash_layer(const char *in_path, const char *out_path, const struct imgf_squash_opts *o,
		      struct imgf_layer *out, struct imgf_error **err)
{
	struct index ix = {0};
	struct cursor c = {.fd = -1, .path = in_path};
	struct layer_sink s = {.fd = -1, .path = out_path};
	struct archive *w = NULL;
	int ret = -1;
	memset(out, 0, sizeof(*out));
	imgf_digest_init(&s.d, IMGF_SHA256);
	/* Member names are UTF-8 in pax headers whatever the caller's locale: read and write
	 * them under a UTF-8 one (this thread only), so none is refused or mangled. */
	locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	locale_t saved = utf8 ? uselocale(utf8) : (locale_t)0;

	if (index_read(in_path, o, &ix, &out->dropped, err) < 0 ||
	    index_resolve(&ix, in_path, err) < 0)
		goto out;
	c.fd = open(in_path, O_RDONLY | O_CLOEXEC);
	if (c.fd < 0) {
		imgf_error_errno(err, errno, "open '%s'", in_path);
		goto out;
	}
	s.fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s.fd < 0) {
		imgf_error_errno(err, errno, "create '%s'", out_path);
		goto out;
	}
	w = archive_write_new();
	archive_write_set_format_pax_restricted(w);
	archive_write_set_bytes_per_block(w, 0); /* no padding past the end-of-archive blocks */
	/* xattrs as SCHILY.xattr records only, the form Docker reads */
	archive_write_set_format_option(w, "pax", "xattrheader", "SCHILY");
	if (archive_write_open(w, &s, NULL, sink_write, NULL) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': %s", out_path,
			       archive_error_string(w));
		goto out;
	}
	if (layer_write(&ix, &c, w, o, &out->rewritten, err) < 0)
		goto out;
	if (archive_write_close(w) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': %s", out_path,
			       archive_error_string(w));
		goto out;
	}
	if (fsync(s.fd) < 0 && errno != EINVAL) {
		imgf_error_errno(err, errno, "write '%s'", out_path);
		goto out;
	}
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_final_hex(&s.d, hex);
	snprintf(out->diff_id, sizeof(out->diff_id), "sha256:%s", hex);
	out->size = s.size;
	out->entries = ix.n;
	ret = 0;
out:
	if (w) {
		if (ret < 0)
			archive_write_fail(w);
		archive_write_free(w);
	}
	archive_read_free(c.a);
	if (c.fd >= 0)
		close(c.fd);
	if (s.fd >= 0 && close(s.fd) < 0 && ret == 0)
		ret = imgf_error_errno(err, errno, "write '%s'", out_path);
	if (ret < 0 && s.fd >= 0)
		unlink(out_path);
	imgf_digest_release(&s.d);
	index_release(&ix);
	if (utf8) {
		uselocale(saved);
		freelocale(utf8);
	}
	return ret;
}

/* ---- the image config ------------------------------------------------------------------- */

static void rfc3339(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *imgf_image_config(json_t *container_config, const char *arch, const char *variant,
			const char *os, int64_t created, const char *created_by,
			const char *diff_id, char id[IMGF_DIGEST_ID_MAX])
{
	char when[32];
	rfc3339(created, when);
	json_t *c = json_pack("{s:O,s:s,s:s,s:s,s:s,s:[{s:s,s:s}],s:{s:s,s:[s]}}", "config",
			      container_config, "architecture", arch, "os", os, "author",
			      created_by, "created", when, "history", "created", when, "created_by",
			      created_by, "rootfs", "type", "layers", "diff_ids", diff_id);
	if (variant && *variant)
		json_object_set_new(c, "variant", json_string(variant));
	char *text = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(c);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, text, strlen(text), hex);
	snprintf(id, IMGF_DIGEST_ID_MAX, "sha256:%s", hex);
	return text;
}

/* ---- the docker-archive ----------------------------------------------------------------- */

enum archive_state {
	IA_HEAD,
	IA_LAYER,
	IA_CLOSE,
	IA_DONE
};

struct imgf_image_archive {
	struct archive *a;
	enum archive_state state;
	char *manifest;
	char *config;
	char *config_name; /* HEX.json */
	char *layer_path;
	int layer_fd;
	uint64_t layer_size, layer_done;
	char *chunk;
	struct strbuf out; /* archive bytes produced and not yet read */
	size_t out_off;
};

static la_ssize_t ia_sink(struct archive *a, void *opaque, const void *buf, size_t len)
{
	(void)a;
	struct imgf_image_archive *ia = opaque;
	strbuf_add(&ia->out, buf, len);
	return (la_ssize_t)len;
}

static int ia_add_data(struct imgf_image_archive *ia, const char *name, const char *data,
		       struct imgf_error **err)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)strlen(data));
	int r = archive_write_header(ia->a, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK ||
	    archive_write_data(ia->a, data, strlen(data)) != (la_ssize_t)strlen(data) ||
	    archive_write_finish_entry(ia->a) != ARCHIVE_OK)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "image archive: '%s': %s", name,
				      archive_error_string(ia->a));
	return 0;
}

static int ia_step(struct imgf_image_archive *ia, struct imgf_error **err)
{
	switch (ia->state) {
	case IA_HEAD: {
		if (ia_add_data(ia, "manifest.json", ia->manifest, err) < 0 ||
		    ia_add_data(ia, ia->config_name, ia->config, err) < 0)
			return -1;
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, "layer.tar");
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(e, (la_int64_t)ia->layer_size);
		int r = archive_write_header(ia->a, e);
		archive_entry_free(e);
		if (r != ARCHIVE_OK)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "image archive: %s",
					      archive_error_string(ia->a));
		ia->state = IA_LAYER;
		return 0;
	}
	case IA_LAYER: {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		if (ia->layer_done < ia->layer_size) {
			ssize_t n = read(ia->layer_fd, ia->chunk, COPY_BUF);
			if (n < 0 && errno == EINTR)
				return 0;
			if (n < 0)
				return imgf_error_errno(err, errno, "read '%s'", ia->layer_path);
			if (n == 0 || ia->layer_done + (uint64_t)n > ia->layer_size)
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "'%s' changed size while it was read",
						      ia->layer_path);
			if (archive_write_data(ia->a, ia->chunk, (size_t)n) != n)
				return imgf_error_set(err, IMGF_EXIT_FAIL, "image archive: %s",
						      archive_error_string(ia->a));
			ia->layer_done += (uint64_t)n;
			return 0;
		}
		if (archive_write_finish_entry(ia->a) != ARCHIVE_OK)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "image archive: %s",
					      archive_error_string(ia->a));
		ia->state = IA_CLOSE;
		return 0;
	}
	case IA_CLOSE:
		if (archive_write_close(ia->a) != ARCHIVE_OK)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "image archive: %s",
					      archive_error_string(ia->a));
		ia->state = IA_DONE;
		return 0;
	case IA_DONE:
		return 0;
	}
	return 0;
}

struct imgf_image_archive *imgf_image_archive_open(const char *config_json, const char *layer_path,
						   const char *repo_tag, struct imgf_error **err)
{
	struct imgf_image_archive *ia = xcalloc(1, sizeof(*ia));
	ia->out = (struct strbuf)STRBUF_INIT;
	ia->layer_path = xstrdup(layer_path);
	ia->layer_fd = open(layer_path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (ia->layer_fd < 0 || fstat(ia->layer_fd, &st) < 0) {
		imgf_error_errno(err, errno, "open '%s'", layer_path);
		imgf_image_archive_free(ia);
		return NULL;
	}
	ia->layer_size = (uint64_t)st.st_size;
	ia->config = xstrdup(config_json);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, config_json, strlen(config_json), hex);
	ia->config_name = xasprintf("%s.json", hex);
	json_t *m = json_pack("[{s:s,s:[],s:[s]}]", "Config", ia->config_name, "RepoTags", "Layers",
			      "layer.tar");
	if (repo_tag)
		json_array_append_new(json_object_get(json_array_get(m, 0), "RepoTags"),
				      json_string(repo_tag));
	ia->manifest = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(m);
	ia->chunk = xmalloc(COPY_BUF);
	ia->a = archive_write_new();
	archive_write_set_format_pax_restricted(ia->a);
	archive_write_set_bytes_per_block(ia->a, 0);
	if (archive_write_open(ia->a, ia, NULL, ia_sink, NULL) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "image archive: %s",
			       archive_error_string(ia->a));
		imgf_image_archive_free(ia);
		return NULL;
	}
	return ia;
}

ssize_t imgf_image_archive_read(struct imgf_image_archive *ia, char *buf, size_t len,
				struct imgf_error **err)
{
	while (ia->out_off == ia->out.len) {
		strbuf_reset(&ia->out);
		ia->out_off = 0;
		if (ia->state == IA_DONE)
			return 0;
		if (ia_step(ia, err) < 0)
			return -1;
	}
	size_t n = ia->out.len - ia->out_off;
	if (n > len)
		n = len;
	memcpy(buf, ia->out.buf + ia->out_off, n);
	ia->out_off += n;
	return (ssize_t)n;
}

void imgf_image_archive_free(struct imgf_image_archive *ia)
{
	if (!ia)
		return;
	if (ia->a) {
		if (ia->state != IA_DONE)
			archive_write_fail(ia->a);
		archive_write_free(ia->a);
	}
	if (ia->layer_fd >= 0)
		close(ia->layer_fd);
	free(ia->manifest);
	free(ia->config);
	free(ia->config_name);
	free(ia->layer_path);
	free(ia->chunk);
	strbuf_release(&ia->out);
	free(ia);
}
