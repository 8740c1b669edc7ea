/* File helpers: directories, whole-file reads, atomic writes, copies and moves. */
#ifndef IMGF_FSUTIL_H
#define IMGF_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

struct imgf_error;

int mkdir_p(const char *path, mode_t mode, struct imgf_error **err);
/* Remove a file or a whole tree; missing is not an error. */
int rm_rf(const char *path, struct imgf_error **err);
/* Read a whole file (NUL-terminated; *len excludes the NUL). max 0 = no cap. */
int read_file(const char *path, size_t max, char **out, size_t *len, struct imgf_error **err);
/* Write through a temp file in the same directory and rename, so readers never see half. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
		      struct imgf_error **err);
/* rename(), or on another filesystem a copy beside `to` renamed into place, then `from`
 * removed: `to` is never seen half-written. */
int move_file(const char *from, const char *to, struct imgf_error **err);
/* A copy beside `to` (mode kept, synced), renamed into place once it is complete. */
int copy_file_atomic(const char *from, const char *to, struct imgf_error **err);
/* mkstemp in dir with a prefix; returns fd, path in *out. */
int make_temp_file(const char *dir, const char *prefix, char **out, struct imgf_error **err);
/* A fresh temp directory under $TMPDIR (or /tmp). */
int make_temp_dir(const char *prefix, char **out, struct imgf_error **err);

#endif
