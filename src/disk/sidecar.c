/* ARTIFACT.sha256 and its stamp: see sidecar.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "sidecar.h"
#include "util.h"

#define HASH_BUF (1u << 20)
#define SHA256_HEX 64
#define STAMP_MAX 512

/* The stamp for sha256 `hex` of an artifact whose stat is st. Comparing the stored stamp with
 * this text for the artifact as it is now is the whole check: nothing is parsed. */
static void stamp_text(const char *hex, const struct stat *st, char out[STAMP_MAX])
{
	snprintf(out, STAMP_MAX,
		 "imgforge-sha256-stamp 1 sha256=%s size=%" PRIuMAX " mtime=%" PRIdMAX ".%09ld "
		 "ctime=%" PRIdMAX ".%09ld ino=%" PRIuMAX " dev=%" PRIuMAX,
		 hex, (uintmax_t)st->st_size, (intmax_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		 (intmax_t)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, (uintmax_t)st->st_ino,
		 (uintmax_t)st->st_dev);
}

static bool same_content_stat(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ino == b->st_ino &&
	       a->st_dev == b->st_dev;
}

int imgf_sidecar_write_hex(const char *artifact, const char *hex, const struct stat *hashed,
			   struct imgf_error **err)
{
	if (strlen(hex) != SHA256_HEX || !str_is_hex(hex, SHA256_HEX))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': '%s' is not a sha256", artifact,
				      hex);
	_cleanup_free_ char *side = xasprintf("%s.sha256", artifact);
	_cleanup_free_ char *line = xasprintf("%s\n", hex);
	if (write_file_atomic(side, line, strlen(line), 0644, err) < 0)
		return -1;
	struct stat now;
	if (stat(artifact, &now) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", artifact);
	if (!same_content_stat(hashed, &now)) {
		log_warn("'%s' changed after it was hashed; '%s' is written without a stamp",
			 artifact, side);
		return 0;
	}
	char stamp[STAMP_MAX];
	stamp_text(hex, &now, stamp);
	/* No stamp only costs a second read at upload time. */
	if (setxattr(side, IMGF_SIDECAR_XATTR, stamp, strlen(stamp), 0) < 0)
		log_debug("'%s': cannot record its stamp (%s); image-upload will hash '%s' again",
			  side, strerror(errno), artifact);
	return 0;
}

int imgf_sidecar_write(const char *artifact, char hex[IMGF_DIGEST_HEX_MAX], struct imgf_error **err)
{
	_cleanup_close_ int fd = open(artifact, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", artifact);
	struct stat before, after;
	if (fstat(fd, &before) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", artifact);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	_cleanup_free_ char *buf = xmalloc(HASH_BUF);
	struct imgf_digest d;
	imgf_digest_init(&d, IMGF_SHA256);
	for (;;) {
		ssize_t n = read(fd, buf, HASH_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			imgf_digest_release(&d);
			return imgf_error_errno(err, e, "read '%s'", artifact);
		}
		if (n == 0)
			break;
		imgf_digest_update(&d, buf, (size_t)n);
	}
	imgf_digest_final_hex(&d, hex);
	if (fstat(fd, &after) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", artifact);
	if (!same_content_stat(&before, &after) || before.st_ctim.tv_sec != after.st_ctim.tv_sec ||
	    before.st_ctim.tv_nsec != after.st_ctim.tv_nsec)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' changed while it was hashed",
				      artifact);
	return imgf_sidecar_write_hex(artifact, hex, &before, err);
}

bool imgf_sidecar_reuse(const char *artifact, char hex[65], const char **why)
{
	_cleanup_free_ char *side = xasprintf("%s.sha256", artifact);
	char text[SHA256_HEX + 2];
	_cleanup_close_ int fd = open(side, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof(text));
	if (n != SHA256_HEX + 1 || text[SHA256_HEX] != '\n' || !str_is_hex(text, SHA256_HEX)) {
		*why = fd < 0 ? "no sidecar" : "the sidecar is not one line of sha256 hex";
		return false;
	}
	for (size_t i = 0; i < SHA256_HEX; i++)
		if (text[i] >= 'A' && text[i] <= 'F') {
			*why = "the sidecar is not lowercase hex";
			return false;
		}
	text[SHA256_HEX] = '\0';
	char stored[STAMP_MAX];
	ssize_t len = fgetxattr(fd, IMGF_SIDECAR_XATTR, stored, sizeof(stored) - 1);
	if (len < 0) {
		*why = "the sidecar has no stamp";
		return false;
	}
	stored[len] = '\0';
	struct stat st;
	if (stat(artifact, &st) < 0 || !S_ISREG(st.st_mode)) {
		*why = "the artifact cannot be examined";
		return false;
	}
	char want[STAMP_MAX];
	stamp_text(text, &st, want);
	if (strcmp(stored, want) != 0) {
		*why = "the artifact or the sidecar changed since the stamp was recorded";
		return false;
	}
	memcpy(hex, text, SHA256_HEX + 1);
	*why = NULL;
	return true;
}
