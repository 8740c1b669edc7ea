/*
 * External tools through posix_spawnp rather than fork+exec: it is safe in a threaded program
 * (no allocation between fork and exec) and reports a failed exec as its own return value.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "run.h"
#include "strbuf.h"
#include "util.h"

extern char **environ;

/* The stderr kept for the message and the debug log: the tail of a chatty tool is enough. */
#define RUN_STDERR_KEEP (64 * 1024)
#define RUN_ERROR_LINES 4
#define RUN_POLL_MS 250

/* An argv as a shell user would type it, for the log. */
static char *argv_text(char *const *argv)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; argv[i]; i++) {
		const char *a = argv[i];
		if (i)
			strbuf_addch(&sb, ' ');
		if (*a && !a[strcspn(a, " \t\n'\"\\$`!*?[]{}()<>|&;#~")]) {
			strbuf_addstr(&sb, a);
			continue;
		}
		strbuf_add_shell_quoted(&sb, a);
	}
	return strbuf_detach(&sb, NULL);
}

/* Append, keeping only the last RUN_STDERR_KEEP bytes once twice that has piled up. */
static void keep_tail(struct strbuf *sb, const char *data, size_t len)
{
	strbuf_add(sb, data, len);
	if (sb->len > 2 * RUN_STDERR_KEEP) {
		size_t drop = sb->len - RUN_STDERR_KEEP;
		memmove(sb->buf, sb->buf + drop, sb->len - drop + 1);
		sb->len -= drop;
	}
}

/* The last RUN_ERROR_LINES non-empty lines of text, joined with "; ". */
static char *last_lines(const struct strbuf *text)
{
	const char *start[RUN_ERROR_LINES];
	size_t len[RUN_ERROR_LINES];
	size_t count = 0;
	const char *end = text->buf + text->len;
	for (const char *p = text->buf; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		while (n && (p[n - 1] == '\r' || p[n - 1] == ' '))
			n--;
		if (n) {
			start[count % RUN_ERROR_LINES] = p;
			len[count % RUN_ERROR_LINES] = n;
			count++;
		}
		p = nl ? nl + 1 : end;
	}
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = count > RUN_ERROR_LINES ? count - RUN_ERROR_LINES : 0; i < count; i++) {
		if (sb.len)
			strbuf_addstr(&sb, "; ");
		strbuf_add(&sb, start[i % RUN_ERROR_LINES], len[i % RUN_ERROR_LINES]);
	}
	return strbuf_detach(&sb, NULL);
}

/* Read what is there on fd; returns 0 at EOF, 1 when more may come, -1 on error. */
static int drain(int fd, struct strbuf *to, bool tail_only)
{
	char buf[8192];
	ssize_t r = read(fd, buf, sizeof(buf));
	if (r < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -1;
	if (r == 0)
		return 0;
	if (tail_only)
		keep_tail(to, buf, (size_t)r);
	else
		strbuf_add(to, buf, (size_t)r);
	return 1;
}

static int spawn(char *const *argv, int out_fd, int err_fd, pid_t *pid, struct imgf_error **err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	/* imgforge ignores SIGPIPE, and an ignored signal stays ignored across exec. */
	sigaddset(&dfl, SIGPIPE);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int r = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r != 0)
		return imgf_error_errno(err, r, "run '%s'", argv[0]);
	return 0;
}

int imgf_run(char *const *argv, struct strbuf *out, struct imgf_error **err)
{
	_cleanup_free_ char *cmd = argv_text(argv);
	log_info("run: %s", cmd);

	int errp[2], outp[2] = {-1, -1};
	if (pipe2(errp, O_CLOEXEC) < 0)
		return imgf_error_errno(err, errno, "run '%s': pipe", argv[0]);
	if (out && pipe2(outp, O_CLOEXEC) < 0) {
		int e = errno;
		close(errp[0]);
		close(errp[1]);
		return imgf_error_errno(err, e, "run '%s': pipe", argv[0]);
	}
	pid_t pid;
	int r = spawn(argv, out ? outp[1] : errp[1], errp[1], &pid, err);
	close(errp[1]);
	if (out)
		close(outp[1]);
	if (r < 0) {
		close(errp[0]);
		if (out)
			close(outp[0]);
		return -1;
	}

	struct strbuf errtext = STRBUF_INIT;
	struct pollfd pfd[2] = {{.fd = errp[0], .events = POLLIN},
				{.fd = outp[0], .events = POLLIN}};
	bool killed = false;
	int read_errno = 0;
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		if (imgf_interrupted && !killed) {
			kill(pid, SIGTERM);
			killed = true;
		}
		if (poll(pfd, 2, RUN_POLL_MS) < 0) {
			if (errno == EINTR)
				continue;
			read_errno = errno;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			int d = drain(pfd[i].fd, i == 0 ? &errtext : out, i == 0);
			if (d < 0 && !read_errno)
				read_errno = errno;
			if (d <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
			}
		}
	}
	for (int i = 0; i < 2; i++) {
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	}
	if (read_errno && !killed)
		kill(pid, SIGTERM);

	int status = 0;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			r = imgf_error_errno(err, errno, "wait for '%s'", argv[0]);
			goto out;
		}
	}

	if (errtext.len)
		log_debug("%s: %.*s", argv[0], (int)errtext.len, errtext.buf);
	if (killed) {
		r = imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "'%s' interrupted", argv[0]);
	} else if (read_errno) {
		r = imgf_error_errno(err, read_errno, "read the output of '%s'", argv[0]);
	} else if (WIFSIGNALED(status)) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' killed by signal %d (%s)", argv[0],
				   WTERMSIG(status), strsignal(WTERMSIG(status)));
	} else if (WEXITSTATUS(status) != 0) {
		_cleanup_free_ char *tail = last_lines(&errtext);
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' exited with status %d%s%s", argv[0],
				   WEXITSTATUS(status), *tail ? ": " : "", tail);
	} else if (out && out->overflow) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': output larger than %zu bytes",
				   argv[0], out->max);
	} else {
		r = 0;
	}
out:
	strbuf_release(&errtext);
	return r;
}
