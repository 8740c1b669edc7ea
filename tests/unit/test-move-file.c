/*
 * src/base/util.c move_file: the qemu builder moves the finished image and console.log from its
 * work directory into --output-dir, which may be another filesystem (rename(2) says EXDEV).
 * The cross-filesystem case runs in a child with its own mount namespace and a tmpfs mounted
 * there (root); without that, on /dev/shm when it is another filesystem than $TMPDIR.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "test.h"
#include "util.h"

#define CONTENT "a finished image\n"

static char *make_source(const char *dir)
{
	char *src = path_join(dir, "image.qcow2");
	CHECK(write_file_atomic(src, CONTENT, strlen(CONTENT), 0640, NULL) == 0);
	return src;
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Move src into dst_dir; 0 when everything about the result is right, else a failure bit. */
static int move_and_check(const char *src, const char *dst_dir)
{
	_cleanup_free_ char *dst = path_join(dst_dir, "image.qcow2");
	struct imgf_error *err = NULL;
	int bad = 0;
	if (move_file(src, dst, &err) < 0) {
		fprintf(stderr, "  move_file: %s\n", err->msg);
		imgf_error_free(err);
		return 1;
	}
	char *text = NULL;
	struct stat st;
	if (read_file(dst, 0, &text, NULL, NULL) < 0 || strcmp(text, CONTENT))
		bad |= 2;
	free(text);
	if (stat(dst, &st) < 0 || (st.st_mode & 07777) != 0640)
		bad |= 4;
	if (access(src, F_OK) == 0)
		bad |= 8; /* the source must be gone */
	if (count_entries(dst_dir) != 1)
		bad |= 16; /* no temp file left beside it */
	return bad;
}

static bool other_fs(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev != sb.st_dev;
}

TEST(move_file_within_a_filesystem)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-move", &dir, NULL) == 0);
	_cleanup_free_ char *out = path_join(dir, "out");
	CHECK(mkdir(out, 0755) == 0);
	_cleanup_free_ char *src = make_source(dir);
	CHECK(move_and_check(src, out) == 0);
	rm_rf(dir, NULL);
}

TEST(move_file_across_filesystems)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-move", &dir, NULL) == 0);
	_cleanup_free_ char *src = make_source(dir);
	_cleanup_free_ char *mnt = path_join(dir, "tmpfs");
	CHECK(mkdir(mnt, 0755) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* The mount is the child's alone and goes away with it. */
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0)
			_exit(100);
		if (!other_fs(dir, mnt))
			_exit(101);
		_exit(move_and_check(src, mnt));
	}
	int status = 0;
	waitpid(pid, &status, 0);
	int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
	bool skip = false;
	if (rc == 100) {
		/* No mount namespace (not root): /dev/shm, when it is another filesystem. */
		_cleanup_free_ char *shm = NULL;
		const char *saved = getenv("TMPDIR");
		_cleanup_free_ char *keep = saved ? xstrdup(saved) : NULL;
		setenv("TMPDIR", "/dev/shm", 1);
		int made = make_temp_dir("imgf-test-move", &shm, NULL);
		if (keep)
			setenv("TMPDIR", keep, 1);
		else
			unsetenv("TMPDIR");
		if (made == 0 && other_fs(dir, shm)) {
			rc = move_and_check(src, shm);
		} else {
			skip = true;
			rc = 0;
		}
		if (made == 0)
			rm_rf(shm, NULL);
	}
	if (rc)
		fprintf(stderr, "  cross-filesystem move: failure bits %d\n", rc);
	CHECK(rc == 0);
	rm_rf(dir, NULL);
	if (skip)
		SKIP("no second filesystem (not root, /dev/shm is not another filesystem)");
}

TEST(move_file_names_a_missing_source)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-move", &dir, NULL) == 0);
	_cleanup_free_ char *src = path_join(dir, "missing");
	_cleanup_free_ char *dst = path_join(dir, "dst");
	struct imgf_error *err = NULL;
	CHECK(move_file(src, dst, &err) < 0);
	CHECK_ERR(err, src);
	imgf_error_free(err);
	rm_rf(dir, NULL);
}
