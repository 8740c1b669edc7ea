/*
 * The tar writer: pax-restricted tars with root owners and SOURCE_DATE_EPOCH mtimes, from
 * host files, data, directory trees, and the members of another archive, which are read
 * (archive.c) and checked (archive-check.c) as for extraction before they are copied.
 */
/* <archive.h> is libarchive's: src/ is on the quote path only (-iquote src). */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive-internal.h"
#include "archive.h"
#include "contract.h"
#include "error.h"
#include "util.h"

/* ---- Writing ---- */

struct imgf_tar {
	struct archive *a;
	char *path;
	bool open;
	bool broken;	/* a failed add left it incomplete; see tar_settle() */
	size_t entries; /* headers written */
	bool have_epoch;
	time_t epoch; /* SOURCE_DATE_EPOCH, every entry's mtime when set */
};

static int source_date_epoch(struct imgf_tar *t, struct imgf_error **err)
{
	struct imgf_epoch e;
	if (imgf_epoch_now(&e, err) < 0)
		return imgf_error_prefix(err, "tar '%s'", t->path);
	t->epoch = (time_t)e.value;
	t->have_epoch = e.set;
	return 0;
}

struct imgf_tar *imgf_tar_open(const char *out_path, struct imgf_error **err)
{
	struct imgf_tar *t = xcalloc(1, sizeof(*t));
	t->path = xstrdup(out_path);
	t->a = archive_write_new();
	if (source_date_epoch(t, err) < 0)
		goto fail;
	if (archive_write_set_format_pax_restricted(t->a) != ARCHIVE_OK ||
	    archive_write_open_filename(t->a, out_path) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': %s", out_path,
			       archive_error_string(t->a));
		goto fail;
	}
	t->open = true;
	return t;
fail:
	imgf_tar_free(t);
	return NULL;
}

int imgf_tar_close(struct imgf_tar *t, struct imgf_error **err)
{
	if (t->broken)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "tar '%s': incomplete after an earlier error", t->path);
	if (!t->open)
		return 0;
	t->open = false;
	if (archive_write_close(t->a) != ARCHIVE_OK)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': %s", t->path,
				      archive_error_string(t->a));
	return 0;
}

void imgf_tar_free(struct imgf_tar *t)
{
	if (!t)
		return;
	archive_write_free(t->a);
	free(t->path);
	free(t);
}

static int tar_check_open(const struct imgf_tar *t, struct imgf_error **err)
{
	if (t->broken)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "tar '%s': incomplete after an earlier error", t->path);
	if (!t->open)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s' is closed", t->path);
	if (imgf_interrupted)
		return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "tar '%s': interrupted", t->path);
	return 0;
}

/*
 * A failed add that had written anything left the tar half an entry or half an archive
 * long. Mark it failed in libarchive so that closing does not pad the entry out to its
 * declared size, and refuse every later add and the close: the caller discards the file.
 */
static int tar_settle(struct imgf_tar *t, size_t entries_before, int r)
{
	if (r < 0 && t->entries != entries_before && !t->broken) {
		archive_write_fail(t->a);
		archive_write_close(t->a); /* a failed archive closes its file without padding */
		t->broken = true;
		t->open = false;
	}
	return r;
}

/* Names written are relative and normalised ("./usr//bin/" -> "usr/bin"). */
static int tar_name(const struct imgf_tar *t, const char *name, char **out, struct imgf_error **err)
{
	enum path_problem p = imgf_archive_normalize_path(name, out);
	if (p != PATH_OK)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': name '%s': path %s", t->path,
				      name, imgf_archive_path_problem_text(p));
	return 0;
}

static char *join_name(const char *prefix, const char *name)
{
	return prefix ? path_join(prefix, name) : xstrdup(name);
}

static time_t tar_mtime(const struct imgf_tar *t, time_t own)
{
	return t->have_epoch ? t->epoch : own;
}

static struct archive_entry *tar_entry(const char *name, mode_t type, mode_t perm, uid_t uid,
				       gid_t gid, time_t mtime)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm & 07777);
	archive_entry_set_uid(e, uid);
	archive_entry_set_gid(e, gid);
	if (uid == 0)
		archive_entry_set_uname(e, "root");
	if (gid == 0)
		archive_entry_set_gname(e, "root");
	archive_entry_set_mtime(e, mtime, 0);
	archive_entry_set_size(e, 0);
	return e;
}

/* Writes the header and frees e. */
static int tar_write_header(struct imgf_tar *t, struct archive_entry *e, struct imgf_error **err)
{
	int r = archive_write_header(t->a, e);
	if (r >= ARCHIVE_WARN)
		t->entries++;
	if (r < ARCHIVE_WARN)
		imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': add '%s': %s", t->path,
			       archive_entry_pathname(e), archive_error_string(t->a));
	archive_entry_free(e);
	return r < ARCHIVE_WARN ? -1 : 0;
}

static int tar_write_data(struct imgf_tar *t, const void *data, size_t len, const char *name,
			  struct imgf_error **err)
{
	la_ssize_t w = archive_write_data(t->a, data, len);
	if (w < 0 || (size_t)w != len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': add '%s': %s", t->path, name,
				      w < 0 ? archive_error_string(t->a) : "short write");
	return 0;
}

static int tar_finish_entry(struct imgf_tar *t, const char *name, struct imgf_error **err)
{
	if (archive_write_finish_entry(t->a) < ARCHIVE_WARN)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': add '%s': %s", t->path, name,
				      archive_error_string(t->a));
	return 0;
}

/* Exactly `size` bytes of fd into the current entry. */
static int tar_copy_fd(struct imgf_tar *t, int fd, int64_t size, const char *host_path,
		       const char *name, struct imgf_error **err)
{
	_cleanup_free_ char *buf = xmalloc(COPY_BUF_SIZE);
	while (size > 0) {
		size_t want = size < COPY_BUF_SIZE ? (size_t)size : COPY_BUF_SIZE;
		ssize_t n = read(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return imgf_error_errno(err, errno, "tar '%s': read '%s'", t->path,
						host_path);
		if (n == 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "tar '%s': read '%s': file shrank while reading",
					      t->path, host_path);
		if (tar_write_data(t, buf, (size_t)n, name, err) < 0)
			return -1;
		size -= n;
	}
	return 0;
}

/* A regular file from an open fd, with its size from fstat. */
static int tar_add_fd(struct imgf_tar *t, int fd, const char *host_path, const char *name,
		      mode_t mode, uid_t uid, gid_t gid, struct imgf_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return imgf_error_errno(err, errno, "tar '%s': stat '%s'", t->path, host_path);
	if (!S_ISREG(st.st_mode))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': add '%s': not a regular file",
				      t->path, host_path);
	struct archive_entry *e = tar_entry(name, AE_IFREG, mode ? mode : st.st_mode, uid, gid,
					    tar_mtime(t, st.st_mtime));
	archive_entry_set_size(e, st.st_size);
	if (tar_write_header(t, e, err) < 0 ||
	    tar_copy_fd(t, fd, st.st_size, host_path, name, err) < 0)
		return -1;
	return tar_finish_entry(t, name, err);
}

static int add_file(struct imgf_tar *t, const char *host_path, const char *name, mode_t mode,
		    uid_t uid, gid_t gid, struct imgf_error **err)
{
	_cleanup_free_ char *n = NULL;
	if (tar_check_open(t, err) < 0 || tar_name(t, name, &n, err) < 0)
		return -1;
	_cleanup_close_ int fd = open(host_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "tar '%s': open '%s'", t->path, host_path);
	return tar_add_fd(t, fd, host_path, n, mode, uid, gid, err);
}

static int add_data(struct imgf_tar *t, const void *data, size_t len, const char *name, mode_t mode,
		    uid_t uid, gid_t gid, struct imgf_error **err)
{
	_cleanup_free_ char *n = NULL;
	if (tar_check_open(t, err) < 0 || tar_name(t, name, &n, err) < 0)
		return -1;
	struct archive_entry *e = tar_entry(n, AE_IFREG, mode, uid, gid, tar_mtime(t, time(NULL)));
	archive_entry_set_size(e, (la_int64_t)len);
	if (tar_write_header(t, e, err) < 0 || (len && tar_write_data(t, data, len, n, err) < 0))
		return -1;
	return tar_finish_entry(t, n, err);
}

static int add_dir(struct imgf_tar *t, const char *name, mode_t mode, uid_t uid, gid_t gid,
		   struct imgf_error **err)
{
	_cleanup_free_ char *n = NULL;
	if (tar_check_open(t, err) < 0 || tar_name(t, name, &n, err) < 0)
		return -1;
	if (tar_write_header(t, tar_entry(n, AE_IFDIR, mode, uid, gid, tar_mtime(t, time(NULL))),
			     err) < 0)
		return -1;
	return tar_finish_entry(t, n, err);
}

static int tar_symlink(struct imgf_tar *t, const char *name, const char *target, time_t mtime,
		       struct imgf_error **err)
{
	struct archive_entry *e = tar_entry(name, AE_IFLNK, 0777, 0, 0, tar_mtime(t, mtime));
	archive_entry_set_symlink(e, target);
	if (tar_write_header(t, e, err) < 0)
		return -1;
	return tar_finish_entry(t, name, err);
}

static int add_symlink(struct imgf_tar *t, const char *name, const char *target,
		       struct imgf_error **err)
{
	_cleanup_free_ char *n = NULL;
	if (tar_check_open(t, err) < 0 || tar_name(t, name, &n, err) < 0)
		return -1;
	if (!*target)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': symlink '%s': empty target",
				      t->path, n);
	return tar_symlink(t, n, target, time(NULL), err);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of a directory, sorted byte-wise so the tar is the same on every machine. */
static int list_dir_sorted(const struct imgf_tar *t, const char *dir, char ***out,
			   struct imgf_error **err)
{
	DIR *d = opendir(dir);
	if (!d)
		return imgf_error_errno(err, errno, "tar '%s': open '%s'", t->path, dir);
	char **names = xcalloc(1, sizeof(*names));
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			names = strv_push(names, xstrdup(de->d_name));
		errno = 0;
	}
	int e = errno;
	closedir(d);
	if (e) {
		strv_free(names);
		return imgf_error_errno(err, e, "tar '%s': read '%s'", t->path, dir);
	}
	qsort(names, strv_len(names), sizeof(*names), cmp_names);
	*out = names;
	return 0;
}

static int tar_add_children(struct imgf_tar *t, const char *host_dir, const char *name,
			    struct imgf_error **err);

static int tar_add_path(struct imgf_tar *t, const char *host_path, const char *name,
			struct imgf_error **err)
{
	if (tar_check_open(t, err) < 0)
		return -1;
	struct stat st;
	if (lstat(host_path, &st) < 0)
		return imgf_error_errno(err, errno, "tar '%s': stat '%s'", t->path, host_path);
	if (S_ISDIR(st.st_mode)) {
		struct archive_entry *e =
			tar_entry(name, AE_IFDIR, st.st_mode, 0, 0, tar_mtime(t, st.st_mtime));
		if (tar_write_header(t, e, err) < 0 || tar_finish_entry(t, name, err) < 0)
			return -1;
		return tar_add_children(t, host_path, name, err);
	}
	if (S_ISREG(st.st_mode)) {
		_cleanup_close_ int fd = open(host_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return imgf_error_errno(err, errno, "tar '%s': open '%s'", t->path,
						host_path);
		return tar_add_fd(t, fd, host_path, name, st.st_mode & 07777, 0, 0, err);
	}
	if (S_ISLNK(st.st_mode)) {
		size_t size = (size_t)st.st_size + 1;
		_cleanup_free_ char *target = xmalloc(size);
		ssize_t n = readlink(host_path, target, size);
		if (n < 0)
			return imgf_error_errno(err, errno, "tar '%s': readlink '%s'", t->path,
						host_path);
		if ((size_t)n >= size)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "tar '%s': readlink '%s': changed while reading",
					      t->path, host_path);
		target[n] = '\0';
		return tar_symlink(t, name, target, st.st_mtime, err);
	}
	return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': add '%s': unsupported file type",
			      t->path, host_path);
}

static int tar_add_children(struct imgf_tar *t, const char *host_dir, const char *name,
			    struct imgf_error **err)
{
	_cleanup_strv_ char **children = NULL;
	if (list_dir_sorted(t, host_dir, &children, err) < 0)
		return -1;
	for (size_t i = 0; children[i]; i++) {
		_cleanup_free_ char *host = path_join(host_dir, children[i]);
		_cleanup_free_ char *child = join_name(name, children[i]);
		if (tar_add_path(t, host, child, err) < 0)
			return -1;
	}
	return 0;
}

static int add_tree(struct imgf_tar *t, const char *host_dir, const char *prefix,
		    struct imgf_error **err)
{
	_cleanup_free_ char *pfx = NULL;
	if (tar_check_open(t, err) < 0 || (prefix && *prefix && tar_name(t, prefix, &pfx, err) < 0))
		return -1;
	struct stat st;
	if (stat(host_dir, &st) < 0)
		return imgf_error_errno(err, errno, "tar '%s': stat '%s'", t->path, host_dir);
	if (!S_ISDIR(st.st_mode))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar '%s': add '%s': not a directory",
				      t->path, host_dir);
	if (pfx) {
		struct archive_entry *e =
			tar_entry(pfx, AE_IFDIR, st.st_mode, 0, 0, tar_mtime(t, st.st_mtime));
		if (tar_write_header(t, e, err) < 0 || tar_finish_entry(t, pfx, err) < 0)
			return -1;
	}
	return tar_add_children(t, host_dir, pfx, err);
}

/* ---- Copying another archive ---- */

/* The member's data into the current entry: exactly `size` bytes, in order, no holes. */
static int copy_member_data(struct imgf_tar *t, struct archive *in, const char *archive_path,
			    const struct member *m, int64_t size, const char *name,
			    struct imgf_error **err)
{
	int64_t pos = 0;
	for (;;) {
		const void *buf = NULL;
		size_t len = 0;
		la_int64_t off = 0;
		int r = archive_read_data_block(in, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return imgf_archive_refuse(err, archive_path, m->raw, "%s",
						   archive_error_string(in));
		if (off != pos && len > 0)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "sparse data is not supported");
		if ((uint64_t)len > (uint64_t)(size - pos))
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "data does not match its size");
		if (len && tar_write_data(t, buf, len, name, err) < 0)
			return -1;
		pos += (int64_t)len;
	}
	if (pos != size)
		return imgf_archive_refuse(err, archive_path, m->raw,
					   "data does not match its size");
	return 0;
}

struct copy {
	struct imgf_tar *t;
	struct archive *in;
	struct tree tree;
	const char *archive_path;
	const char *prefix;
	const char *const *only;
	bool *found; /* per `only` entry */
};

static bool copy_wanted(struct copy *c, const char *name)
{
	if (!c->only)
		return true;
	bool wanted = false;
	for (size_t i = 0; c->only[i]; i++) {
		if (strcmp(c->only[i], name) == 0) {
			c->found[i] = true;
			wanted = true;
		}
	}
	return wanted;
}

static int copy_member(struct copy *c, struct archive_entry *in_e, const struct member *m,
		       struct imgf_error **err)
{
	if (!copy_wanted(c, m->name))
		return 0;
	if (m->hardlink) {
		struct tree_node *n = imgf_archive_tree_find(&c->tree, m->hardlink);
		if (!n || !n->emitted)
			return imgf_archive_refuse(err, c->archive_path, m->raw,
						   "hardlink target '%s' is not copied",
						   m->hardlink);
	}
	bool has_data = m->type == AE_IFREG && !m->hardlink;
	if (has_data && !archive_entry_size_is_set(in_e))
		return imgf_archive_refuse(err, c->archive_path, m->raw, "size is unknown");
	/* The writer would have to write every hole out as zeros. */
	if (has_data && archive_entry_sparse_count(in_e) > 0)
		return imgf_archive_refuse(err, c->archive_path, m->raw,
					   "sparse members are not supported");
	_cleanup_free_ char *name = join_name(c->prefix, m->name);
	_cleanup_free_ char *link = m->hardlink ? join_name(c->prefix, m->hardlink) : NULL;
	struct archive_entry *e =
		imgf_archive_member_entry(m, in_e, name, link, archive_entry_perm(in_e));
	if (!has_data)
		archive_entry_set_size(e, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_uname(e, "root");
	archive_entry_set_gname(e, "root");
	time_t mtime = archive_entry_mtime_is_set(in_e) ? archive_entry_mtime(in_e) : time(NULL);
	archive_entry_set_mtime(e, tar_mtime(c->t, mtime), 0);
	int64_t size = archive_entry_size(e);
	if (tar_write_header(c->t, e, err) < 0)
		return -1;
	if (size > 0 && copy_member_data(c->t, c->in, c->archive_path, m, size, name, err) < 0)
		return -1;
	if (tar_finish_entry(c->t, name, err) < 0)
		return -1;
	imgf_archive_tree_find(&c->tree, m->name)->emitted = true;
	return 0;
}

static int add_archive(struct imgf_tar *t, const char *archive_path, int strip, const char *prefix,
		       const char *const *only, struct imgf_error **err)
{
	_cleanup_free_ char *pfx = NULL;
	if (tar_check_open(t, err) < 0 || (prefix && *prefix && tar_name(t, prefix, &pfx, err) < 0))
		return -1;
	if (strip < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "archive '%s': invalid strip count %d",
				      archive_path, strip);
	size_t nonly = 0;
	while (only && only[nonly])
		nonly++;
	_cleanup_free_ bool *found = xcalloc(nonly, sizeof(*found));
	struct copy c = {
		.t = t,
		.archive_path = archive_path,
		.prefix = pfx,
		.only = only,
		.found = found,
	};
	c.in = imgf_archive_open_read(archive_path, err);
	if (!c.in)
		return -1;
	imgf_archive_tree_init(&c.tree, -1, 0);
	struct expansion x;
	imgf_archive_expansion_init(&x);
	int ret = -1;
	for (;;) {
		struct archive_entry *e;
		int r = imgf_archive_next_member(c.in, archive_path, &e, err);
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		struct member m = {0};
		r = imgf_archive_expansion_member(&x, archive_path, e, err);
		if (r == 0)
			r = imgf_archive_check_member(&c.tree, archive_path, e, strip, &m, err);
		if (r == 0)
			r = copy_member(&c, e, &m, err);
		imgf_archive_member_release(&m);
		if (r < 0)
			goto out;
	}
	if (imgf_archive_tree_recheck_symlinks(&c.tree, archive_path, err) < 0)
		goto out;
	for (size_t i = 0; i < nonly; i++) {
		if (!found[i]) {
			imgf_archive_refuse(err, archive_path, only[i], "not found");
			goto out;
		}
	}
	ret = 0;
out:
	archive_read_free(c.in);
	imgf_archive_tree_release(&c.tree);
	return ret;
}

int imgf_tar_add_file(struct imgf_tar *t, const char *host_path, const char *name, mode_t mode,
		      uid_t uid, gid_t gid, struct imgf_error **err)
{
	size_t mark = t->entries;
	return tar_settle(t, mark, add_file(t, host_path, name, mode, uid, gid, err));
}

int imgf_tar_add_data(struct imgf_tar *t, const void *data, size_t len, const char *name,
		      mode_t mode, uid_t uid, gid_t gid, struct imgf_error **err)
{
	size_t mark = t->entries;
	return tar_settle(t, mark, add_data(t, data, len, name, mode, uid, gid, err));
}

int imgf_tar_add_dir(struct imgf_tar *t, const char *name, mode_t mode, uid_t uid, gid_t gid,
		     struct imgf_error **err)
{
	size_t mark = t->entries;
	return tar_settle(t, mark, add_dir(t, name, mode, uid, gid, err));
}

int imgf_tar_add_symlink(struct imgf_tar *t, const char *name, const char *target,
			 struct imgf_error **err)
{
	size_t mark = t->entries;
	return tar_settle(t, mark, add_symlink(t, name, target, err));
}

int imgf_tar_add_tree(struct imgf_tar *t, const char *host_dir, const char *prefix,
		      struct imgf_error **err)
{
	size_t mark = t->entries;
	return tar_settle(t, mark, add_tree(t, host_dir, prefix, err));
}

int imgf_tar_add_archive(struct imgf_tar *t, const char *archive_path, int strip,
			 const char *prefix, const char *const *only, struct imgf_error **err)
{
	size_t mark = t->entries;
	return tar_settle(t, mark, add_archive(t, archive_path, strip, prefix, only, err));
}
