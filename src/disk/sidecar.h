/*
 * ARTIFACT.sha256, the sidecar a build writes beside each artifact (bare hex and a newline),
 * and a stamp that lets a later command (image-upload) reuse it instead of reading the
 * artifact again.
 *
 * The stamp is an extended attribute on the sidecar, user.imgforge.sha256-stamp:
 *
 *   imgforge-sha256-stamp 1 sha256=HEX size=N mtime=S.NSEC ctime=S.NSEC ino=N dev=N
 *
 * the artifact as it was when its bytes were hashed. The sidecar is trusted only when its text
 * is exactly the stamp's HEX and the artifact still has that size, mtime, ctime, inode and
 * device. mtime alone can be put back (touch -r, cp -p, tar -x); ctime cannot, and every
 * write, truncate, rename or replacement of the artifact moves it or changes the inode. A
 * sidecar edited in place keeps its stamp but no longer says the stamp's HEX. Anything else
 * (no stamp, a filesystem without user xattrs, a directory copied elsewhere) means: hash the
 * artifact again. Nothing here is a security boundary (whoever can write the artifact can
 * write the stamp); it keeps a stale sidecar from being believed, and image-upload still
 * compares the sha256 of the bytes it sends with the one it was given.
 */
#ifndef IMGF_SIDECAR_H
#define IMGF_SIDECAR_H

#include <stdbool.h>
#include <sys/stat.h>

#include "digest.h"

struct imgf_error;

#define IMGF_SIDECAR_XATTR "user.imgforge.sha256-stamp"

/* Hash artifact, write ARTIFACT.sha256 atomically and stamp it; hex gets the sha256. Fails
 * when the artifact changes while it is read. */
int imgf_sidecar_write(const char *artifact, char hex[IMGF_DIGEST_HEX_MAX],
		       struct imgf_error **err);

/*
 * Write ARTIFACT.sha256 for a sha256 the caller computed over the artifact's bytes; `hashed`
 * is the artifact's stat when it was hashed (after its last write). The stamp records the
 * artifact as it is now, and only when its size, mtime, inode and device are still those of
 * `hashed` (ctime may have moved: the artifact was renamed into place); otherwise the sidecar
 * is written without one.
 */
int imgf_sidecar_write_hex(const char *artifact, const char *hex, const struct stat *hashed,
			   struct imgf_error **err);

/* The artifact's sha256 from its sidecar into hex, when the stamp says it is current (see
 * above); false otherwise, with why in *why (static text) for a debug line. */
bool imgf_sidecar_reuse(const char *artifact, char hex[65], const char **why);

#endif
