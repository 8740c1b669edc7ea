/*
 * The download cache, one for downloads (fetch.c) and registry blobs (registry.c):
 * CACHE/downloads/ALG/HEX holds a file whose ALG digest is HEX, verified before it is used
 * and read-only (0444); downloads in progress live under CACHE/downloads/partial/.
 */
#ifndef IMGF_DLCACHE_H
#define IMGF_DLCACHE_H

#include <stdint.h>

#include "digest.h"

struct imgf_error;

/* CACHE/downloads/ALG/HEX, newly allocated. */
char *imgf_dlcache_entry(const char *cache_dir, enum imgf_digest_alg alg, const char *hex);
/* CACHE/downloads/partial, newly allocated. */
char *imgf_dlcache_partial_dir(const char *cache_dir);

/* Feed a whole file (read from fd, named path in errors) to d_alg and, when alg is not
 * sha256, to d_sha256 too: one pass for both. Stops on SIGINT/SIGTERM. */
int imgf_dlcache_hash_fd(const char *path, int fd, enum imgf_digest_alg alg,
			 struct imgf_digest *d_alg, struct imgf_digest *d_sha256, uint64_t *size,
			 struct imgf_error **err);

/*
 * Verify an entry: 1 when `path` holds a file whose alg digest is hex (and whose size is
 * want_size, unless that is UINT64_MAX), with its sha256 into sha256[65] and its size into
 * *size (both may be NULL); 0 when it is missing, or wrong: then it is removed, with a
 * warning that starts with `what`; -1 on errors.
 */
int imgf_dlcache_check(const char *path, enum imgf_digest_alg alg, const char *hex,
		       uint64_t want_size, const char *what, char *sha256, uint64_t *size,
		       struct imgf_error **err);

/* Make the verified file at tmp (open as fd) the entry `path`: flushed, read-only, renamed
 * into place (its directory made). The caller removes tmp on failure. */
int imgf_dlcache_commit(int fd, const char *tmp, const char *path, struct imgf_error **err);

#endif
