/*
 * Reading archives through libarchive: opening one, its members one by one with the caps on
 * what it may expand to, and extracting it to a directory. Every member goes through
 * imgf_archive_check_member() (archive-check.c) before anything is written; archive-write.c
 * reads with the same pieces to copy members into a tar.
 */
/* <archive.h> is libarchive's: src/ is on the quote path only (-iquote src). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "archive-internal.h"
#include "archive.h"
#include "error.h"
#include "util.h"

/*
 * ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS is deliberately absent: libarchive resolves member
 * paths against the working directory, and chdir() would move it under every other thread,
 * so members are written as realpath(dest) + "/" + name. Absolute member names are refused
 * by imgf_archive_check_member() before that prefix is added; SECURE_SYMLINKS and
 * SECURE_NODOTDOT still apply to the full path. OWNER only with IMGF_EXTRACT_OWNERS; no
 * XATTR/ACL/FFLAGS.
 */
#define EXTRACT_FLAGS                                                                    \
	(ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS | \
	 ARCHIVE_EXTRACT_SECURE_NODOTDOT)

/* ---- Reading ---- */

static struct imgf_archive_limits limits = {IMGF_EXTRACT_MAX_SIZE_DEFAULT,
					    IMGF_EXTRACT_MAX_ENTRIES_DEFAULT};

void imgf_archive_set_limits(const struct imgf_archive_limits *l)
{
	limits.max_size = l->max_size ? l->max_size : IMGF_EXTRACT_MAX_SIZE_DEFAULT;
	limits.max_entries = l->max_entries ? l->max_entries : IMGF_EXTRACT_MAX_ENTRIES_DEFAULT;
}

void imgf_archive_expansion_init(struct expansion *x)
{
	*x = (struct expansion){.max_size = limits.max_size, .max_entries = limits.max_entries};
}

static int expansion_add(struct expansion *x, const char *archive_path, uint64_t bytes,
			 uint64_t entries, struct imgf_error **err)
{
	x->entries += entries;
	if (x->entries > x->max_entries)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "archive '%s': more than %llu members; raise the cap with "
				      "variable 'extract_max_entries'",
				      archive_path, (unsigned long long)x->max_entries);
	if (bytes > x->max_size - x->bytes)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "archive '%s': expands to more than %llu bytes; raise the "
				      "cap with variable 'extract_max_size'",
				      archive_path, (unsigned long long)x->max_size);
	x->bytes += bytes;
	return 0;
}

/* A member counts once, with its declared size (a sparse member's holes too), before any
 * of its data is written. */
int imgf_archive_expansion_member(struct expansion *x, const char *archive_path,
				  struct archive_entry *e, struct imgf_error **err)
{
	int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	return expansion_add(x, archive_path, size > 0 ? (uint64_t)size : 0, 1, err);
}

struct archive *imgf_archive_open_read(const char *path, struct imgf_error **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	if (archive_read_open_filename(a, path, COPY_BUF_SIZE) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "archive '%s': %s", path,
			       archive_error_string(a));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

/* 1 with *e set, 0 at the end, <0 on error. */
int imgf_archive_next_member(struct archive *a, const char *path, struct archive_entry **e,
			     struct imgf_error **err)
{
	if (imgf_interrupted)
		return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "archive '%s': interrupted",
				      path);
	int r = archive_read_next_header(a, e);
	if (r == ARCHIVE_EOF)
		return 0;
	if (r < ARCHIVE_WARN)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "archive '%s': %s", path,
				      archive_error_string(a));
	/* An mtree "archive" is a list of files on this host that libarchive would read. */
	if ((archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_MTREE)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "archive '%s': mtree is not supported",
				      path);
	return 1;
}

/* A fresh entry for a checked member: name, type, permissions, size and link, nothing else. */
struct archive_entry *imgf_archive_member_entry(const struct member *m, struct archive_entry *in,
						const char *name, const char *hardlink, mode_t perm)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, m->type);
	archive_entry_set_perm(e, perm & 07777);
	if (hardlink)
		archive_entry_set_hardlink(e, hardlink);
	if (m->type == AE_IFLNK)
		archive_entry_set_symlink(e, m->symlink);
	if (m->type != AE_IFREG)
		archive_entry_set_size(e, 0);
	else if (archive_entry_size_is_set(in))
		archive_entry_set_size(e, archive_entry_size(in));
	return e;
}

/* The member's data to disk. Holes (sparse members) become seeks, not zeros written. */
static int extract_data(struct archive *in, struct archive *disk, const char *archive_path,
			const struct member *m, int64_t size, struct expansion *x,
			struct imgf_error **err)
{
	int64_t end = 0;
	for (;;) {
		const void *buf = NULL;
		size_t len = 0;
		la_int64_t off = 0;
		int r = archive_read_data_block(in, &buf, &len, &off);
		if (r == ARCHIVE_EOF) {
			end = off > end ? off : end; /* a sparse member may end in a hole */
			break;
		}
		if (r < ARCHIVE_WARN)
			return imgf_archive_refuse(err, archive_path, m->raw, "%s",
						   archive_error_string(in));
		if (off < 0 ||
		    (size >= 0 && (off > size || (uint64_t)len > (uint64_t)(size - off))))
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "data does not match its size");
		/* without a declared size (counted already) the data counts as it comes */
		if (size < 0 && expansion_add(x, archive_path, len, 0, err) < 0)
			return -1;
		if (archive_write_data_block(disk, buf, len, off) < ARCHIVE_WARN)
			return imgf_archive_refuse(err, archive_path, m->raw, "%s",
						   archive_error_string(disk));
		end = off + (int64_t)len > end ? off + (int64_t)len : end;
	}
	if (size >= 0 && end != size)
		return imgf_archive_refuse(err, archive_path, m->raw,
					   "data does not match its size");
	return 0;
}

static int extract_member(struct archive *in, struct archive *disk, const char *archive_path,
			  const char *dest, struct archive_entry *in_e, const struct member *m,
			  unsigned flags, struct expansion *x, struct imgf_error **err)
{
	_cleanup_free_ char *path = path_join(dest, m->name);
	_cleanup_free_ char *link = m->hardlink ? path_join(dest, m->hardlink) : NULL;
	mode_t perm = archive_entry_perm(in_e);
	if (!(flags & IMGF_EXTRACT_OWNERS))
		perm &= ~(mode_t)(S_ISUID | S_ISGID);
	struct archive_entry *e = imgf_archive_member_entry(m, in_e, path, link, perm);
	if (flags & IMGF_EXTRACT_OWNERS) {
		archive_entry_set_uid(e, archive_entry_uid(in_e));
		archive_entry_set_gid(e, archive_entry_gid(in_e));
	}
	if (archive_entry_mtime_is_set(in_e))
		archive_entry_set_mtime(e, archive_entry_mtime(in_e),
					archive_entry_mtime_nsec(in_e));
	int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
	/*
	 * The disk writer extends a file to its declared size when the entry ends, which only
	 * a sparse member (ending in a hole) needs; anything else gets exactly the bytes it
	 * has, and extract_data() checks those against the size.
	 */
	if (archive_entry_sparse_count(in_e) == 0)
		archive_entry_unset_size(e);
	int ret = 0;
	if (archive_write_header(disk, e) < ARCHIVE_WARN)
		ret = imgf_archive_refuse(err, archive_path, m->raw, "%s",
					  archive_error_string(disk));
	if (ret == 0 && m->type == AE_IFREG)
		ret = extract_data(in, disk, archive_path, m, size, x, err);
	if (ret == 0 && archive_write_finish_entry(disk) < ARCHIVE_WARN)
		ret = imgf_archive_refuse(err, archive_path, m->raw, "%s",
					  archive_error_string(disk));
	archive_entry_free(e);
	return ret;
}

int imgf_archive_extract(const char *archive_path, const char *dest_dir, struct imgf_error **err)
{
	return imgf_archive_extract_flags(archive_path, dest_dir, 0, err);
}

int imgf_archive_extract_flags(const char *archive_path, const char *dest_dir, unsigned flags,
			       struct imgf_error **err)
{
	_cleanup_free_ char *dest = realpath(dest_dir, NULL);
	if (!dest)
		return imgf_error_errno(err, errno, "archive '%s': destination '%s'", archive_path,
					dest_dir);
	_cleanup_close_ int dirfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return imgf_error_errno(err, errno, "archive '%s': destination '%s'", archive_path,
					dest_dir);
	struct archive *in = imgf_archive_open_read(archive_path, err);
	if (!in)
		return -1;
	struct archive *disk = archive_write_disk_new();
	archive_write_disk_set_options(
		disk, EXTRACT_FLAGS | (flags & IMGF_EXTRACT_OWNERS ? ARCHIVE_EXTRACT_OWNER : 0));
	struct tree tree;
	imgf_archive_tree_init(&tree, dirfd, strlen(dest));
	tree.absolute_ok = flags & IMGF_EXTRACT_ABSOLUTE_SYMLINKS;
	struct expansion x;
	imgf_archive_expansion_init(&x);
	int ret = -1;
	for (;;) {
		struct archive_entry *e;
		int r = imgf_archive_next_member(in, archive_path, &e, err);
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		struct member m = {0};
		r = imgf_archive_expansion_member(&x, archive_path, e, err);
		if (r == 0)
			r = imgf_archive_check_member(&tree, archive_path, e, 0, &m, err);
		if (r == 0)
			r = extract_member(in, disk, archive_path, dest, e, &m, flags, &x, err);
		imgf_archive_member_release(&m);
		if (r < 0)
			goto out;
	}
	if (imgf_archive_tree_recheck_symlinks(&tree, archive_path, err) < 0)
		goto out;
	if (archive_write_close(disk) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "archive '%s': %s", archive_path,
			       archive_error_string(disk));
		goto out;
	}
	ret = 0;
out:
	if (ret < 0) {
		/* Members before the failing one are on disk: remove any link that now escapes. */
		struct imgf_error *ignored = NULL;
		imgf_archive_tree_recheck_symlinks(&tree, archive_path, &ignored);
		imgf_error_free(ignored);
	}
	archive_write_free(disk);
	archive_read_free(in);
	imgf_archive_tree_release(&tree);
	return ret;
}
