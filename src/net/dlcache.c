#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dlcache.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "util.h"

char *imgf_dlcache_entry(const char *cache_dir, enum imgf_digest_alg alg, const char *hex)
{
	return xasprintf("%s/downloads/%s/%s", cache_dir, imgf_digest_alg_name(alg), hex);
}

char *imgf_dlcache_partial_dir(const char *cache_dir)
{
	return xasprintf("%s/downloads/partial", cache_dir);
}

int imgf_dlcache_hash_fd(const char *path, int fd, enum imgf_digest_alg alg,
			 struct imgf_digest *d_alg, struct imgf_digest *d_sha256, uint64_t *size,
			 struct imgf_error **err)
{
	enum {
		BUFSZ = 1 << 17
	};
	_cleanup_free_ char *buf = xmalloc(BUFSZ);
	uint64_t total = 0;
	for (;;) {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		ssize_t r = pread(fd, buf, BUFSZ, (off_t)total);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return imgf_error_errno(err, errno, "read '%s'", path);
		}
		if (r == 0)
			break;
		imgf_digest_update(d_alg, buf, (size_t)r);
		if (alg != IMGF_SHA256)
			imgf_digest_update(d_sha256, buf, (size_t)r);
		total += (uint64_t)r;
	}
	*size = total;
	return 0;
}

static int drop_entry(const char *path, struct imgf_error **err)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return imgf_error_errno(err, errno, "remove corrupt cache entry '%s'", path);
	return 0;
}

int imgf_dlcache_check(const char *path, enum imgf_digest_alg alg, const char *hex,
		       uint64_t want_size, const char *what, char *sha256, uint64_t *size,
		       struct imgf_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return imgf_error_errno(err, errno, "open '%s'", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "cache entry '%s' is not a regular file; remove it", path);
	if (want_size != UINT64_MAX && (uint64_t)st.st_size != want_size) {
		log_warn("%s: cache entry '%s' has the wrong size, downloading again", what, path);
		return drop_entry(path, err);
	}
	struct imgf_digest d_alg = {0}, d_sha256 = {0};
	char got[IMGF_DIGEST_HEX_MAX], got256[IMGF_DIGEST_HEX_MAX];
	uint64_t n = 0;
	imgf_digest_init(&d_alg, alg);
	if (alg != IMGF_SHA256)
		imgf_digest_init(&d_sha256, IMGF_SHA256);
	if (imgf_dlcache_hash_fd(path, fd, alg, &d_alg, &d_sha256, &n, err) < 0) {
		imgf_digest_release(&d_alg);
		imgf_digest_release(&d_sha256);
		return -1;
	}
	imgf_digest_final_hex(&d_alg, got);
	if (alg != IMGF_SHA256)
		imgf_digest_final_hex(&d_sha256, got256);
	else
		memcpy(got256, got, sizeof(got256));
	if (strcmp(got, hex) != 0) {
		log_warn("%s: cache entry '%s' is corrupt (%s %s), downloading again", what, path,
			 imgf_digest_alg_name(alg), got);
		return drop_entry(path, err);
	}
	if (sha256)
		memcpy(sha256, got256, 65);
	if (size)
		*size = n;
	return 1;
}

int imgf_dlcache_commit(int fd, const char *tmp, const char *path, struct imgf_error **err)
{
	if (fsync(fd) < 0 || fchmod(fd, 0444) < 0)
		return imgf_error_errno(err, errno, "write '%s'", tmp);
	_cleanup_free_ char *dir = path_dirname(path);
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	if (rename(tmp, path) < 0)
		return imgf_error_errno(err, errno, "rename '%s' to '%s'", tmp, path);
	return 0;
}
