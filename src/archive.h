/*
 * Tar through libarchive. Every member read is checked before it is used: no absolute
 * names, no "..", no symlink or hardlink that points outside the tree, no device nodes,
 * FIFOs or sockets.
 */
#ifndef IMGF_ARCHIVE_H
#define IMGF_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct imgf_error;

/* Extract any archive libarchive reads (tar, tar.gz, ...) into an existing directory. */
int imgf_archive_extract(const char *archive_path, const char *dest_dir, struct imgf_error **err);

/* A tar writer (pax restricted, uncompressed) to a file, for target puts and image layouts. */
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
/* A host directory tree under `prefix` (modes and symlinks kept, owner root). */
int imgf_tar_add_tree(struct imgf_tar *t, const char *host_dir, const char *prefix,
		      struct imgf_error **err);
/*
 * Copy the members of another archive (any compression), checked as for extraction,
 * dropping `strip` leading path components, then prefixing `prefix`. When `only` is
 * non-NULL (NULL-terminated), only members whose name after stripping is listed are kept
 * and each listed name must be present. Owners become root.
 */
int imgf_tar_add_archive(struct imgf_tar *t, const char *archive_path, int strip,
			 const char *prefix, const char *const *only, struct imgf_error **err);
int imgf_tar_close(struct imgf_tar *t, struct imgf_error **err);
void imgf_tar_free(struct imgf_tar *t); /* closes if still open, without reporting */

#endif
