/*
 * Tar through libarchive. Every member read is checked before it is used: no absolute
 * names, no "..", no symlink or hardlink that points outside the tree, no device nodes,
 * FIFOs or sockets.
 */
#ifndef IMGF_ARCHIVE_H
#define IMGF_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct imgf_error;

/*
 * What one archive may expand to, for either reader: the sum of its members' sizes and the
 * number of its members. A member past either cap is refused before its data is written; the
 * error names the variable that raises the cap. 0 = the default.
 */
struct imgf_archive_limits {
	uint64_t max_size;    /* variable extract_max_size, default 16 GiB */
	uint64_t max_entries; /* variable extract_max_entries, default 1,000,000 */
};
#define IMGF_EXTRACT_MAX_SIZE_DEFAULT (16ull << 30)
#define IMGF_EXTRACT_MAX_ENTRIES_DEFAULT 1000000ull

/* The caps of every archive read from now on (the engine sets them once from the config's
 * variables, before any build starts: all builds of a run share the config's variables). */
void imgf_archive_set_limits(const struct imgf_archive_limits *l);

/*
 * Extract any archive libarchive reads (tar, tar.gz, ...) into an existing directory.
 * Files belong to the caller (owners are not restored) and lose setuid/setgid; nothing is
 * written through a symlink, whether the archive made it or dest_dir already had it; a
 * leading "./" is dropped and a "./" member is dest_dir itself. mtree input is refused.
 * On error dest_dir may hold part of the archive: remove it.
 */
int imgf_archive_extract(const char *archive_path, const char *dest_dir, struct imgf_error **err);

/* What imgf_archive_extract_flags may do beyond imgf_archive_extract. */
enum {
	/* Restore the members' owners (numeric ids) and keep setuid/setgid; needs root. */
	IMGF_EXTRACT_OWNERS = 1 << 0,
	/*
	 * dest_dir is inside a system root that is only ever entered through chroot (a build
	 * target): absolute symlink targets name paths in that root and are kept. Nothing is
	 * written through them, as through any symlink.
	 */
	IMGF_EXTRACT_ABSOLUTE_SYMLINKS = 1 << 1,
};
int imgf_archive_extract_flags(const char *archive_path, const char *dest_dir, unsigned flags,
			       struct imgf_error **err);

/*
 * A tar writer (pax restricted, uncompressed) to a file, for target puts and image layouts.
 * Names are normalised ("./a//b" -> "a/b"); absolute names and ".." are refused. When
 * SOURCE_DATE_EPOCH is set every entry's mtime is that value (imgf_tar_open fails if it is
 * not a number). After a failed add that had written something the tar is unusable: later
 * adds and imgf_tar_close fail, and the caller removes the file.
 */
struct imgf_tar;
struct imgf_tar *imgf_tar_open(const char *out_path, struct imgf_error **err);
/* mode 0 = the host file's permission bits. Names are relative ("usr/bin/x"). */
int imgf_tar_add_file(struct imgf_tar *t, const char *host_path, const char *name, mode_t mode,
		      uid_t uid, gid_t gid, struct imgf_error **err);
int imgf_tar_add_data(struct imgf_tar *t, const void *data, size_t len, const char *name,
		      mode_t mode, uid_t uid, gid_t gid, struct imgf_error **err);
int imgf_tar_add_dir(struct imgf_tar *t, const char *name, mode_t mode, uid_t uid, gid_t gid,
		     struct imgf_error **err);
int imgf_tar_add_symlink(struct imgf_tar *t, const char *name, const char *target,
			 struct imgf_error **err);
/*
 * A host directory tree under `prefix` (modes and symlinks kept, owner root), sorted by
 * name; `prefix` itself is an entry with the directory's mode when it is not NULL or "".
 */
int imgf_tar_add_tree(struct imgf_tar *t, const char *host_dir, const char *prefix,
		      struct imgf_error **err);
/*
 * Copy the members of another archive (any compression), checked as for extraction,
 * dropping `strip` leading path components, then prefixing `prefix`. When `only` is
 * non-NULL (NULL-terminated), only members whose name after stripping is listed are kept
 * and each listed name must be present. Owners become root; modes, setuid included, are
 * kept. Names are compared after a leading "./" is dropped; members left empty by `strip`
 * are skipped; sparse members are refused.
 */
int imgf_tar_add_archive(struct imgf_tar *t, const char *archive_path, int strip,
			 const char *prefix, const char *const *only, struct imgf_error **err);
int imgf_tar_close(struct imgf_tar *t, struct imgf_error **err);
void imgf_tar_free(struct imgf_tar *t); /* closes if still open, without reporting */

#endif
