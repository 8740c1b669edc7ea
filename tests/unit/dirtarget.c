/*
 * The directory target (dirtarget.h), for the unit tests only (imgforge has no such builder). A
 * command runs three processes deep: this one; the namespace's init, cloned into new mount and PID
 * namespaces, which mounts /dev, /proc and /sys under the root, chroots and reaps; and the command.
 * When the command ends its init exits, the kernel kills whatever else runs in the namespace, and
 * the mounts go with it. Everything the children need is prepared before the clone, so they only
 * make system calls (safe in a threaded program) and report a failure as {step, errno} on a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "archive.h"
#include "dirtarget.h"
#include "error.h"
#include "log.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

extern char **environ;

#define DIR_POLL_MS 250

struct dir_target {
	struct imgf_target t;
	char *root; /* canonical host path */
};

/* Device nodes bound from the host into the command's /dev. */
static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
/* Links in /dev that shells and tools expect: name, target. */
static const char *const dev_links[][2] = {
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
};

/* What a child failed at, reported to the parent before it exits. */
enum child_step {
	STEP_PRIVATE,
	STEP_DEV,
	STEP_DEV_NODE,
	STEP_PROC,
	STEP_SYS,
	STEP_CHROOT,
	STEP_FORK,
	STEP_WORKDIR,
	STEP_EXEC,
};

struct child_failure {
	int step;
	int err;
	int index; /* STEP_DEV_NODE: which device */
};

/* Everything the children use, allocated before the clone. */
struct child_plan {
	const char *root;
	char *dev, *shm, *proc, *proc_sys, *sys; /* NULL when the root lacks the directory */
	char *dev_node[ARRAY_SIZE(devices)];
	char *host_dev[ARRAY_SIZE(devices)];
	char *dev_link[ARRAY_SIZE(dev_links)];
	const char *workdir;
	char *const *argv;
	char **envp;
	int null_fd, out_fd, err_fd, report_fd;
};

static char *dir_under(const char *root, const char *name)
{
	char *p = path_join(root, name);
	struct stat st;
	if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
		return p;
	free(p);
	return NULL;
}

static void plan_init(struct child_plan *p, const struct dir_target *dt, const struct imgf_exec *x)
{
	memset(p, 0, sizeof(*p));
	p->root = dt->root;
	p->dev = dir_under(dt->root, "dev");
	p->proc = dir_under(dt->root, "proc");
	p->sys = dir_under(dt->root, "sys");
	if (p->dev) {
		p->shm = path_join(p->dev, "shm");
		for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
			p->dev_node[i] = path_join(p->dev, devices[i]);
			p->host_dev[i] = xasprintf("/dev/%s", devices[i]);
		}
		for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++)
			p->dev_link[i] = path_join(p->dev, dev_links[i][0]);
	}
	if (p->proc)
		p->proc_sys = path_join(p->proc, "sys");
	p->workdir = x->workdir ? x->workdir : "/";
	p->argv = x->argv;
	/* The caller's variables, then the defaults they do not set. */
	static const char *const defaults[] = {
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LANG=C.UTF-8",
		"DEBIAN_FRONTEND=noninteractive",
	};
	char **env = xcalloc(1, sizeof(*env));
	for (size_t i = 0; x->env && x->env[i]; i++)
		env = strv_push(env, xstrdup(x->env[i]));
	for (size_t d = 0; d < ARRAY_SIZE(defaults); d++) {
		size_t n = strchr(defaults[d], '=') - defaults[d] + 1;
		bool set = false;
		for (size_t i = 0; x->env && x->env[i] && !set; i++)
			set = !strncmp(x->env[i], defaults[d], n);
		if (!set)
			env = strv_push(env, xstrdup(defaults[d]));
	}
	p->envp = env;
	p->null_fd = p->out_fd = p->err_fd = p->report_fd = -1;
}

static void plan_release(struct child_plan *p)
{
	free(p->dev);
	free(p->shm);
	free(p->proc);
	free(p->proc_sys);
	free(p->sys);
	for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
		free(p->dev_node[i]);
		free(p->host_dev[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++)
		free(p->dev_link[i]);
	strv_free(p->envp);
}

static _Noreturn void child_fail(const struct child_plan *p, enum child_step step, int index)
{
	struct child_failure f = {.step = step, .err = errno, .index = index};
	ssize_t w = write(p->report_fd, &f, sizeof(f));
	(void)w;
	_exit(127);
}

static void child_mount_dev(const struct child_plan *p)
{
	if (mount("tmpfs", p->dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536") < 0)
		child_fail(p, STEP_DEV, 0);
	for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
		int fd = open(p->dev_node[i], O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
		if (fd < 0)
			child_fail(p, STEP_DEV_NODE, (int)i);
		close(fd);
		if (mount(p->host_dev[i], p->dev_node[i], "none", MS_BIND, NULL) < 0) {
			if (errno !=
			    ENOENT) /* a host without the device: the target lacks it too */
				child_fail(p, STEP_DEV_NODE, (int)i);
			unlink(p->dev_node[i]);
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++)
		if (symlink(dev_links[i][1], p->dev_link[i]) < 0)
			child_fail(p, STEP_DEV, 0);
	if (mkdir(p->shm, 01777) < 0 ||
	    mount("tmpfs", p->shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		child_fail(p, STEP_DEV, 0);
}

/* The namespace's init: mounts, chroot, the command, then reap until the command is gone. */
static _Noreturn void child_init(const struct child_plan *p)
{
	/* Nothing mounted here may reach the host's namespace. */
	if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail(p, STEP_PRIVATE, 0);
	if (p->dev)
		child_mount_dev(p);
	if (p->proc) {
		if (mount("proc", p->proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
		    mount(p->proc_sys, p->proc_sys, "none", MS_BIND, NULL) < 0 ||
		    mount("none", p->proc_sys, "none",
			  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  NULL) < 0)
			child_fail(p, STEP_PROC, 0);
	}
	if (p->sys &&
	    mount("sysfs", p->sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		child_fail(p, STEP_SYS, 0);
	if (chroot(p->root) < 0 || chdir("/") < 0)
		child_fail(p, STEP_CHROOT, 0);
	pid_t cmd = _Fork();
	if (cmd < 0)
		child_fail(p, STEP_FORK, 0);
	if (cmd == 0) {
		if (chdir(p->workdir) < 0)
			child_fail(p, STEP_WORKDIR, 0);
		if (dup2(p->null_fd, 0) < 0 || dup2(p->out_fd, 1) < 0 || dup2(p->err_fd, 2) < 0)
			child_fail(p, STEP_EXEC, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL); /* imgforge ignores it; an ignored signal survives exec */
		environ = p->envp;
		execvp(p->argv[0], p->argv);
		child_fail(p, STEP_EXEC, 0);
	}
	close(p->out_fd);
	close(p->err_fd);
	close(p->null_fd);
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			_exit(127);
		if (w == cmd)
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
}

static char *failure_text(const struct child_plan *p, const struct child_failure *f)
{
	const char *why = strerror(f->err);
	switch (f->step) {
	case STEP_PRIVATE:
		return xasprintf("make a private mount namespace: %s", why);
	case STEP_DEV:
		return xasprintf("set up '/dev': %s", why);
	case STEP_DEV_NODE:
		return xasprintf("bind '/dev/%s': %s",
				 f->index >= 0 && (size_t)f->index < ARRAY_SIZE(devices)
					 ? devices[f->index]
					 : "?",
				 why);
	case STEP_PROC:
		return xasprintf("mount '/proc': %s", why);
	case STEP_SYS:
		return xasprintf("mount '/sys': %s", why);
	case STEP_CHROOT:
		return xasprintf("chroot: %s", why);
	case STEP_FORK:
		return xasprintf("fork: %s", why);
	case STEP_WORKDIR:
		return xasprintf("working directory '%s': %s", p->workdir, why);
	case STEP_EXEC:
		return xasprintf("exec '%s': %s", p->argv[0], why);
	}
	return xasprintf("unknown failure: %s", why);
}

/* Output as it comes: to the caller's callback, or logged line by line under the label. */
struct sink {
	const struct imgf_exec *x;
	struct strbuf line[3];
};

static void sink_emit(struct sink *s, int stream, const char *data, size_t len)
{
	if (s->x->on_output) {
		s->x->on_output(s->x->opaque, stream, data, len);
		return;
	}
	struct strbuf *lb = &s->line[stream];
	strbuf_add(lb, data, len);
	char *nl;
	while ((nl = memchr(lb->buf, '\n', lb->len))) {
		size_t n = (size_t)(nl - lb->buf);
		log_output(s->x->label ? s->x->label : "exec", stream, lb->buf, n);
		memmove(lb->buf, nl + 1, lb->len - n - 1);
		lb->len -= n + 1;
		lb->buf[lb->len] = '\0';
	}
}

/* Read both output pipes to their end; SIGKILL the namespace when interrupted. */
static int pump_output(struct sink *s, int out_fd, int err_fd, pid_t init, bool *killed)
{
	struct pollfd pfd[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN}};
	int read_errno = 0;
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		if ((imgf_interrupted || read_errno) && !*killed) {
			kill(init, SIGKILL); /* the init of a PID namespace: it takes everything */
			*killed = true;
		}
		if (poll(pfd, 2, DIR_POLL_MS) < 0) {
			if (errno == EINTR)
				continue;
			read_errno = errno;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			char buf[8192];
			ssize_t n = read(pfd[i].fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n < 0 && !read_errno)
				read_errno = errno;
			if (n <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				continue;
			}
			sink_emit(s, i + 1, buf, (size_t)n);
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	if (read_errno && !*killed) {
		kill(init, SIGKILL);
		*killed = true;
	}
	return read_errno;
}

static void close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]);
}

static int dir_exec(struct imgf_target *t, const struct imgf_exec *x, int *status,
		    struct imgf_error **err)
{
	struct dir_target *dt = (struct dir_target *)t;
	struct child_plan p;
	plan_init(&p, dt, x);
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
	int r = -1;
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
		imgf_error_errno(err, errno, "pipe");
		goto out;
	}
	p.null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (p.null_fd < 0) {
		imgf_error_errno(err, errno, "open '/dev/null'");
		goto out;
	}
	p.out_fd = outp[1];
	p.err_fd = errp[1];
	p.report_fd = rep[1];
	/* A raw clone: new namespaces for the child alone, and no fork handlers run in it. */
	pid_t init = (pid_t)syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, NULL, NULL,
				    NULL, NULL);
	if (init < 0) {
		imgf_error_errno(err, errno, "clone into new mount and PID namespaces");
		goto out;
	}
	if (init == 0)
		child_init(&p);
	close(outp[1]);
	close(errp[1]);
	close(rep[1]);
	outp[1] = errp[1] = rep[1] = -1;

	struct sink s = {.x = x};
	for (int i = 0; i < 3; i++)
		s.line[i] = (struct strbuf)STRBUF_INIT;
	bool killed = false;
	int read_errno = pump_output(&s, outp[0], errp[0], init, &killed);
	outp[0] = errp[0] = -1; /* closed by pump_output */
	for (int i = 1; i < 3; i++) {
		if (s.line[i].len)
			sink_emit(&s, i, "\n", 1);
		strbuf_release(&s.line[i]);
	}
	strbuf_release(&s.line[0]);

	int st = 0;
	while (waitpid(init, &st, 0) < 0) {
		if (errno != EINTR) {
			imgf_error_errno(err, errno, "wait for '%s'", x->argv[0]);
			goto out;
		}
	}
	struct child_failure f;
	ssize_t n = read(rep[0], &f, sizeof(f));
	if (n == (ssize_t)sizeof(f)) {
		_cleanup_free_ char *why = failure_text(&p, &f);
		imgf_error_set(err, IMGF_EXIT_FAIL, "%s", why);
	} else if (killed && imgf_interrupted) {
		imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "'%s' interrupted", x->argv[0]);
	} else if (read_errno) {
		imgf_error_errno(err, read_errno, "read the output of '%s'", x->argv[0]);
	} else {
		*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		r = 0;
	}
out:
	if (p.null_fd >= 0)
		close(p.null_fd);
	close_pair(outp);
	close_pair(errp);
	close_pair(rep);
	plan_release(&p);
	return r;
}

/* Linux's MAXSYMLINKS: a path that needs more symlinks than this does not resolve. */
#define DIR_MAX_SYMLINKS 40

/*
 * The host path of a directory of the target, resolved inside the root as a chroot would:
 * ".." stops at the root and absolute symlinks start from it. (openat2's RESOLVE_IN_ROOT
 * does the same, but valgrind cannot run it, and the unit tests run under valgrind.)
 */
static int resolve_dir(struct dir_target *dt, const char *path, char **out, struct imgf_error **err)
{
	if (path[0] != '/')
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is not an absolute path", path);
	struct strbuf cur = STRBUF_INIT; /* resolved so far, relative to the root, no symlinks */
	char *rest = xstrdup(path);
	const char *p = rest;
	int hops = 0, e = 0;
	while (*p && !e) {
		p += strspn(p, "/");
		size_t len = strcspn(p, "/");
		const char *next = p + len;
		if (len == 0 || (len == 1 && p[0] == '.')) {
			p = next;
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			char *slash = strrchr(cur.buf, '/');
			cur.len = slash ? (size_t)(slash - cur.buf) : 0;
			cur.buf[cur.len] = '\0';
			p = next;
			continue;
		}
		size_t old = cur.len;
		if (cur.len)
			strbuf_addch(&cur, '/');
		strbuf_add(&cur, p, len);
		_cleanup_free_ char *host = path_join(dt->root, cur.buf);
		struct stat st;
		if (lstat(host, &st) < 0) {
			e = errno;
		} else if (S_ISLNK(st.st_mode)) {
			char link[PATH_MAX];
			ssize_t n = readlink(host, link, sizeof(link) - 1);
			if (++hops > DIR_MAX_SYMLINKS)
				e = ELOOP;
			else if (n < 0)
				e = errno;
			if (e)
				break;
			link[n] = '\0';
			cur.len = link[0] == '/' ? 0 : old;
			cur.buf[cur.len] = '\0';
			char *expanded = xasprintf("%s/%s", link, next);
			free(rest);
			rest = expanded;
			p = rest;
		} else if (!S_ISDIR(st.st_mode)) {
			e = ENOTDIR;
		} else {
			p = next;
		}
	}
	free(rest);
	if (e) {
		strbuf_release(&cur);
		return imgf_error_errno(err, e, "directory '%s'", path);
	}
	*out = cur.len ? path_join(dt->root, cur.buf) : xstrdup(dt->root);
	strbuf_release(&cur);
	return 0;
}

static int dir_put_tar(struct imgf_target *t, const char *tar_path, const char *dest_dir,
		       struct imgf_error **err)
{
	struct dir_target *dt = (struct dir_target *)t;
	_cleanup_free_ char *host = NULL;
	if (resolve_dir(dt, dest_dir, &host, err) < 0)
		return imgf_error_prefix(err, "unpack into %s", t->name);
	return imgf_archive_extract_flags(
		tar_path, host, IMGF_EXTRACT_OWNERS | IMGF_EXTRACT_ABSOLUTE_SYMLINKS, err);
}

static int tar_of(struct dir_target *dt, const char *path, struct imgf_tar *w,
		  struct imgf_error **err)
{
	_cleanup_free_ char *clean = xstrdup(path);
	size_t len = strlen(clean);
	while (len > 1 && clean[len - 1] == '/')
		clean[--len] = '\0';
	if (!strcmp(clean, "/"))
		return imgf_tar_add_tree(w, dt->root, NULL, err);
	_cleanup_free_ char *dir = path_dirname(clean);
	const char *base = path_basename(clean);
	_cleanup_free_ char *host_dir = NULL;
	if (resolve_dir(dt, dir, &host_dir, err) < 0)
		return -1;
	_cleanup_free_ char *host = path_join(host_dir, base);
	struct stat st;
	if (lstat(host, &st) < 0)
		return imgf_error_errno(err, errno, "'%s'", path);
	if (S_ISDIR(st.st_mode))
		return imgf_tar_add_tree(w, host, base, err);
	if (S_ISREG(st.st_mode))
		return imgf_tar_add_file(w, host, base, st.st_mode & 07777, 0, 0, err);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(host, target, sizeof(target) - 1);
		if (n < 0)
			return imgf_error_errno(err, errno, "readlink '%s'", path);
		target[n] = '\0';
		return imgf_tar_add_symlink(w, base, target, err);
	}
	return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is not a file, a directory or a symlink",
			      path);
}

static int dir_get_tar(struct imgf_target *t, const char *path, const char *out_tar,
		       struct imgf_error **err)
{
	struct dir_target *dt = (struct dir_target *)t;
	struct imgf_tar *w = imgf_tar_open(out_tar, err);
	if (!w)
		return -1;
	int r = tar_of(dt, path, w, err);
	if (r == 0)
		r = imgf_tar_close(w, err);
	imgf_tar_free(w);
	if (r < 0) {
		unlink(out_tar);
		return imgf_error_prefix(err, "get '%s' from %s", path, t->name);
	}
	return 0;
}

static const struct imgf_target_ops dir_target_ops = {
	.exec = dir_exec,
	.put_tar = dir_put_tar,
	.get_tar = dir_get_tar,
};

struct imgf_target *imgf_dir_target_new(const char *root, const char *stage_dir,
					struct imgf_error **err)
{
	char *real = realpath(root, NULL);
	struct stat st;
	if (!real || stat(real, &st) < 0) {
		imgf_error_errno(err, errno, "target root '%s'", root);
		free(real);
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "target root '%s' is not a directory", root);
		free(real);
		return NULL;
	}
	struct dir_target *dt = xcalloc(1, sizeof(*dt));
	dt->root = real;
	dt->t.ops = &dir_target_ops;
	dt->t.priv = dt;
	dt->t.name = xasprintf("directory '%s'", real);
	dt->t.stage_dir = xstrdup(stage_dir);
	return &dt->t;
}

void imgf_dir_target_free(struct imgf_target *t)
{
	if (!t)
		return;
	struct dir_target *dt = (struct dir_target *)t;
	free(dt->root);
	free(t->name);
	free(t->stage_dir);
	free(dt);
}
