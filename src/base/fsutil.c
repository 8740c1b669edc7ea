/* File helpers: directories, whole-file reads, atomic writes, copies and moves. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "util.h"

int mkdir_p(const char *path, mode_t mode, struct imgf_error **err)
{
	_cleanup_free_ char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return imgf_error_errno(err, errno, "mkdir '%s'", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return imgf_error_errno(err, errno, "mkdir '%s'", p);
	return 0;
}

static int rm_one(const char *fpath, const struct stat *sb, int typeflag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (typeflag == FTW_DP)
		return rmdir(fpath) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(fpath) < 0 && errno != ENOENT ? -1 : 0;
}

int rm_rf(const char *path, struct imgf_error **err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : imgf_error_errno(err, errno, "stat '%s'", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return imgf_error_errno(err, errno, "remove '%s'", path);
		return 0;
	}
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return imgf_error_errno(err, errno, "remove '%s'", path);
	return 0;
}

int read_file(const char *path, size_t max, char **out, size_t *len, struct imgf_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	size_t alloc = 4096, n = 0;
	_cleanup_free_ char *buf = xmalloc(alloc);
	for (;;) {
		if (n + 1 >= alloc)
			buf = xrealloc(buf, alloc *= 2);
		ssize_t r = read(fd, buf + n, alloc - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return imgf_error_errno(err, errno, "read '%s'", path);
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (max && n > max)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "read '%s': larger than %zu bytes", path, max);
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	*out = STEAL_POINTER(&buf);
	return 0;
}

int make_temp_file(const char *dir, const char *prefix, char **out, struct imgf_error **err)
{
	char *tmpl = xasprintf("%s/.%s.XXXXXX", dir, prefix);
	int fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0) {
		imgf_error_errno(err, errno, "create temp file in '%s'", dir);
		free(tmpl);
		return -1;
	}
	*out = tmpl;
	return fd;
}

int make_temp_dir(const char *prefix, char **out, struct imgf_error **err)
{
	const char *tmp = getenv("TMPDIR");
	char *tmpl = xasprintf("%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
	if (!mkdtemp(tmpl)) {
		imgf_error_errno(err, errno, "create temp directory '%s'", tmpl);
		free(tmpl);
		return -1;
	}
	*out = tmpl;
	return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
		      struct imgf_error **err)
{
	_cleanup_free_ char *dir = path_dirname(path);
	_cleanup_free_ char *tmp = NULL;
	int fd = make_temp_file(dir, path_basename(path), &tmp, err);
	if (fd < 0)
		return -1;
	const char *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			unlink(tmp);
			return imgf_error_errno(err, e, "write '%s'", path);
		}
		p += w;
		left -= (size_t)w;
	}
	if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || close(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return imgf_error_errno(err, e, "write '%s'", path);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return imgf_error_errno(err, e, "rename to '%s'", path);
	}
	return 0;
}

/* Copy an open file's bytes to another, from the start. */
static int copy_fd(int in, int out)
{
	char buf[1 << 16];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			off += w;
		}
	}
}

int copy_file_atomic(const char *from, const char *to, struct imgf_error **err)
{
	_cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return imgf_error_errno(err, errno, "open '%s'", from);
	struct stat st;
	if (fstat(in, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", from);
	_cleanup_free_ char *dir = path_dirname(to);
	_cleanup_free_ char *tmp = NULL;
	int out = make_temp_file(dir, path_basename(to), &tmp, err);
	if (out < 0)
		return -1;
	if (copy_fd(in, out) < 0 || fchmod(out, st.st_mode & 07777) < 0 || fsync(out) < 0) {
		int e = errno;
		close(out);
		unlink(tmp);
		return imgf_error_errno(err, e, "copy '%s' to '%s'", from, to);
	}
	if (close(out) < 0 || rename(tmp, to) < 0) {
		int e = errno;
		unlink(tmp);
		return imgf_error_errno(err, e, "copy '%s' to '%s'", from, to);
	}
	return 0;
}

int move_file(const char *from, const char *to, struct imgf_error **err)
{
	if (rename(from, to) == 0)
		return 0;
	if (errno != EXDEV)
		return imgf_error_errno(err, errno, "move '%s' to '%s'", from, to);
	/* Another filesystem: a copy beside `to`, renamed into place once it is complete. */
	if (copy_file_atomic(from, to, err) < 0)
		return -1;
	if (unlink(from) < 0)
		return imgf_error_errno(err, errno, "remove '%s' after copying it", from);
	return 0;
}
