/*
 * A tiny system root for the directory target (tests/unit/dirtarget.h): the host's static busybox
 * as /bin/busybox with the applets the provisioners' scripts use linked beside it, /dev,
 * /proc, /sys, /tmp and /etc. Each test makes its own in a fresh temp directory:
 *
 *   struct rootfs r;
 *   ROOTFS_INIT(&r);                  // SKIPs the test when the machine cannot run it
 *   ... r.t is the target; rootfs_path(&r, "/etc/x") its host path ...
 *   rootfs_release(&r);
 */
#ifndef IMGF_TEST_ROOTFS_H
#define IMGF_TEST_ROOTFS_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dirtarget.h"
#include "error.h"
#include "fsutil.h"
#include "target.h"
#include "test.h"
#include "util.h"

#define ROOTFS_BUSYBOX "/bin/busybox"

static const char *const rootfs_applets[] = {
	"sh",	 "ls",	  "mkdir",    "rm",    "cat",	"chmod", "ln",	  "echo",     "printf",
	"test",	 "[",	  "true",     "false", "touch", "find",	 "env",	  "grep",     "sed",
	"head",	 "id",	  "mv",	      "cp",    "stat",	"sleep", "wc",	  "basename", "dirname",
	"mount", "mknod", "readlink", "kill",  "pwd",	"tr",	 "uname", "awk",      "sha256sum",
};

struct rootfs {
	char *tmp;   /* the temp directory: root/ and stage/ */
	char *root;  /* the target's root on the host */
	char *stage; /* the target's stage_dir */
	struct imgf_target *t;
};

/* Why the directory target cannot run here, or NULL. */
static inline const char *rootfs_unavailable(void)
{
	static int probed;
	static const char *why;
	if (probed)
		return why;
	probed = 1;
	if (geteuid() != 0)
		return why = "needs root (chroot, mount and PID namespaces)";
	if (access(ROOTFS_BUSYBOX, X_OK) != 0)
		return why = "needs a static busybox at " ROOTFS_BUSYBOX
			     " (Debian's busybox-static)";
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, NULL, NULL,
				   NULL, NULL);
	if (pid < 0)
		return why = "cannot make mount and PID namespaces here";
	if (pid == 0)
		_exit(mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0 ? 0 : 1);
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return why = "cannot mount in a new mount namespace here";
	return why;
}

/* A plain copy (write_file_atomic would fsync: slow, and a test root need not survive). */
static inline int rootfs_copy(const char *from, const char *to, mode_t mode)
{
	char *data = NULL;
	size_t len = 0;
	struct imgf_error *err = NULL;
	int r = read_file(from, 0, &data, &len, &err);
	if (r < 0) {
		fprintf(stderr, "  rootfs: %s\n", err->msg);
		imgf_error_free(err);
		return -1;
	}
	int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	r = fd >= 0 && write(fd, data, len) == (ssize_t)len ? 0 : -1;
	if (fd >= 0 && (close(fd) < 0 || fchmodat(AT_FDCWD, to, mode, 0) < 0))
		r = -1;
	free(data);
	return r;
}

/* Host path of an absolute path in the root (newly allocated). */
static inline char *rootfs_path(const struct rootfs *r, const char *path)
{
	return path_join(r->root, path + (path[0] == '/'));
}

static inline int rootfs_init(struct rootfs *r)
{
	memset(r, 0, sizeof(*r));
	if (make_temp_dir("imgf-test-root", &r->tmp, NULL) < 0)
		return -1;
	r->root = path_join(r->tmp, "root");
	r->stage = path_join(r->tmp, "stage");
	static const char *const dirs[] = {
		"",    "bin",	  "dev",       "proc",		"sys",	"tmp", "etc",
		"usr", "usr/bin", "usr/local", "usr/local/bin", "root", "sbin"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *d = path_join(r->root, dirs[i]);
		if (mkdir(d, 0755) < 0 && errno != EEXIST)
			return -1;
	}
	if (mkdir(r->stage, 0700) < 0)
		return -1;
	_cleanup_free_ char *tmp = path_join(r->root, "tmp");
	chmod(tmp, 01777);
	_cleanup_free_ char *bb = path_join(r->root, "bin/busybox");
	if (rootfs_copy(ROOTFS_BUSYBOX, bb, 0755) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(rootfs_applets); i++) {
		_cleanup_free_ char *link = xasprintf("%s/bin/%s", r->root, rootfs_applets[i]);
		if (symlink("busybox", link) < 0)
			return -1;
	}
	struct imgf_error *err = NULL;
	r->t = imgf_dir_target_new(r->root, r->stage, &err);
	if (!r->t) {
		fprintf(stderr, "  rootfs: %s\n", err->msg);
		imgf_error_free(err);
		return -1;
	}
	return 0;
}

static inline void rootfs_release(struct rootfs *r)
{
	imgf_dir_target_free(r->t);
	if (r->tmp)
		rm_rf(r->tmp, NULL);
	free(r->tmp);
	free(r->root);
	free(r->stage);
	memset(r, 0, sizeof(*r));
}

/* Make a root for this test, or skip the test when the machine cannot run one. */
#define ROOTFS_INIT(r)                                         \
	do {                                                   \
		const char *why_ = rootfs_unavailable();       \
		if (why_)                                      \
			SKIP(why_);                            \
		if (rootfs_init(r) < 0) {                      \
			CHECK(!"making the test root failed"); \
			rootfs_release(r);                     \
			return;                                \
		}                                              \
	} while (0)

/* The content of a file in the root (newly allocated), or NULL. */
static inline char *rootfs_read(const struct rootfs *r, const char *path)
{
	_cleanup_free_ char *p = rootfs_path(r, path);
	char *data = NULL;
	size_t len;
	struct imgf_error *err = NULL;
	if (read_file(p, 0, &data, &len, &err) < 0) {
		imgf_error_free(err);
		return NULL;
	}
	return data;
}

/* lstat of a path in the root; 0 or -1. */
static inline int rootfs_lstat(const struct rootfs *r, const char *path, struct stat *st)
{
	_cleanup_free_ char *p = rootfs_path(r, path);
	return lstat(p, st);
}

/* The target of a symlink in the root (newly allocated), or NULL. */
static inline char *rootfs_readlink(const struct rootfs *r, const char *path)
{
	_cleanup_free_ char *p = rootfs_path(r, path);
	char buf[4096];
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return xstrdup(buf);
}

/* Write a host file (a stand-in binary or a script) with mode. */
static inline void rootfs_write_host(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	size_t len = strlen(text);
	CHECK(fd >= 0 && write(fd, text, len) == (ssize_t)len);
	if (fd >= 0)
		close(fd);
	CHECK(chmod(path, mode) == 0);
}

#endif
