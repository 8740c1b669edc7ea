#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "parallel.h"
#include "strbuf.h"
#include "util.h"

enum {
	STREAM_OUT,
	STREAM_ERR,
	STREAM_RESULT,
	POLL_MS = 100, /* how soon an exited child or an interrupt is noticed */
};

int imgf_parallel_parse(const char *s, unsigned *out, struct imgf_error **err)
{
	char *end = NULL;
	errno = 0;
	long v = s && *s >= '0' && *s <= '9' ? strtol(s, &end, 10) : -1;
	if (v < 1 || errno || *end || v > INT_MAX)
		return imgf_error_set(
			err, IMGF_EXIT_USAGE,
			"--parallel-builds '%s': expected a positive number of builds", s ? s : "");
	*out = (unsigned)v;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the reader is gone: nothing to tell anyone */
		p += w;
		len -= (size_t)w;
	}
}

/* One whole line of a child's stdout or stderr, written in one write() so lines never mix. */
static void relay_line(struct imgf_job *j, int stream, const char *line, size_t len)
{
	_cleanup_free_ char *raw = xstrndup(line, len);
	_cleanup_free_ char *out =
		stream == STREAM_ERR ? imgf_log_prefix_line(j->name, raw) : xstrdup(raw);
	_cleanup_free_ char *nl = xasprintf("%s\n", out);
	write_all(stream == STREAM_ERR ? STDERR_FILENO : STDOUT_FILENO, nl, strlen(nl));
}

static void relay_lines(struct imgf_job *j, int stream, bool all)
{
	struct strbuf *sb = j->buf[stream];
	size_t start = 0;
	for (;;) {
		char *nl = memchr(sb->buf + start, '\n', sb->len - start);
		if (!nl)
			break;
		relay_line(j, stream, sb->buf + start, (size_t)(nl - (sb->buf + start)));
		start = (size_t)(nl - sb->buf) + 1;
	}
	if (all && start < sb->len) {
		relay_line(j, stream, sb->buf + start, sb->len - start);
		start = sb->len;
	}
	memmove(sb->buf, sb->buf + start, sb->len - start);
	sb->len -= start;
	sb->buf[sb->len] = '\0';
}

/* Read what a child's pipe has; returns false at its end. */
static bool drain(struct imgf_job *j, int stream)
{
	char buf[8192];
	for (;;) {
		ssize_t r = read(j->fd[stream], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
		strbuf_add(j->buf[stream], buf, (size_t)r);
		if (stream != STREAM_RESULT)
			relay_lines(j, stream, false);
	}
}

static void close_streams(struct imgf_job *j)
{
	for (int k = 0; k < 3; k++) {
		if (j->fd[k] < 0)
			continue;
		drain(j, k);
		if (k != STREAM_RESULT)
			relay_lines(j, k, true);
		close(j->fd[k]);
		j->fd[k] = -1;
	}
}

__attribute__((noreturn)) static void child_main(struct imgf_job *j, int out_w, int err_w,
						 int res_w, pid_t parent)
{
	/* A parent that dies (even by SIGKILL) must not leave builds running unobserved. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		imgf_interrupted = 1;
	dup2(out_w, STDOUT_FILENO);
	dup2(err_w, STDERR_FILENO);
	close(out_w);
	close(err_w);
	imgf_log_set_relayed();
	imgf_log_set_image(j->name);

	json_t *result = NULL;
	struct imgf_error *e = NULL;
	int r = j->run(j->arg, &result, &e);
	json_t *msg;
	if (r < 0)
		msg = json_pack("{s:s,s:i}", "error", e ? e->msg : "failed", "status",
				e && e->status ? e->status : IMGF_EXIT_FAIL);
	else
		msg = json_pack("{s:o}", "result", result ? result : json_null());
	imgf_error_free(e);
	char *text = json_dumps(msg, JSON_COMPACT);
	if (text)
		write_all(res_w, text, strlen(text));
	free(text);
	json_decref(msg);
	close(res_w);
	fflush(stdout);
	fflush(stderr);
	/* Not exit(): the parent's atexit handlers and stdio buffers are not this process's. */
	_exit(r < 0 ? 1 : 0);
}

static int start_job(struct imgf_job *j, struct imgf_job *all, size_t n)
{
	int p[3][2];
	int made = 0;
	for (; made < 3; made++)
		if (pipe2(p[made], O_CLOEXEC) < 0)
			break;
	if (made < 3) {
		int e = errno;
		for (int k = 0; k < made; k++) {
			close(p[k][0]);
			close(p[k][1]);
		}
		return imgf_error_errno(&j->err, e, "image '%s': make a pipe", j->name);
	}
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		for (int k = 0; k < 3; k++) {
			close(p[k][0]);
			close(p[k][1]);
		}
		return imgf_error_errno(&j->err, e, "image '%s': start a build process", j->name);
	}
	if (pid == 0) {
		for (size_t i = 0; i < n; i++)
			for (int k = 0; k < 3; k++)
				if (all[i].fd[k] >= 0)
					close(all[i].fd[k]);
		for (int k = 0; k < 3; k++)
			close(p[k][0]);
		child_main(j, p[STREAM_OUT][1], p[STREAM_ERR][1], p[STREAM_RESULT][1], parent);
	}
	for (int k = 0; k < 3; k++) {
		close(p[k][1]);
		j->fd[k] = p[k][0];
		fcntl(j->fd[k], F_SETFL, fcntl(j->fd[k], F_GETFL) | O_NONBLOCK);
	}
	j->pid = pid;
	j->state = IMGF_JOB_RUNNING;
	j->started = now_s();
	return 0;
}

/* The child has exited: its result, or why there is none. */
static void finish_job(struct imgf_job *j, int status)
{
	close_streams(j);
	j->finished = now_s();
	json_t *msg = json_loadb(j->buf[STREAM_RESULT]->buf, j->buf[STREAM_RESULT]->len, 0, NULL);
	json_t *error = json_object_get(msg, "error");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && json_object_get(msg, "result")) {
		json_t *r = json_object_get(msg, "result");
		j->result = json_is_null(r) ? NULL : json_incref(r);
		j->state = IMGF_JOB_DONE;
	} else {
		if (json_is_string(error)) {
			json_t *st = json_object_get(msg, "status");
			imgf_error_set(&j->err,
				       json_is_integer(st) ? (int)json_integer_value(st)
							   : IMGF_EXIT_FAIL,
				       "%s", json_string_value(error));
		} else if (WIFSIGNALED(status)) {
			imgf_error_set(&j->err, IMGF_EXIT_FAIL,
				       "image '%s': the build process was killed by signal %d (%s)",
				       j->name, WTERMSIG(status), strsignal(WTERMSIG(status)));
		} else {
			imgf_error_set(&j->err, IMGF_EXIT_FAIL,
				       "image '%s': the build process exited with status %d and no "
				       "result",
				       j->name, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		}
		j->state = j->sent_term && !imgf_interrupted ? IMGF_JOB_CANCELLED : IMGF_JOB_FAILED;
	}
	json_decref(msg);
}

static void terminate(struct imgf_job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].state != IMGF_JOB_RUNNING || jobs[i].sent_term)
			continue;
		kill(jobs[i].pid, SIGTERM);
		jobs[i].sent_term = true;
	}
}

size_t imgf_jobs_run(struct imgf_job *jobs, size_t n, unsigned max, bool cancel_on_failure)
{
	for (size_t i = 0; i < n; i++) {
		jobs[i].state = IMGF_JOB_NOT_STARTED;
		for (int k = 0; k < 3; k++) {
			jobs[i].fd[k] = -1;
			jobs[i].buf[k] = xmalloc(sizeof(struct strbuf));
			strbuf_init(jobs[i].buf[k], 0);
		}
	}
	size_t next = 0, running = 0;
	bool stop = false; /* start no more jobs */
	struct pollfd *pfd = xcalloc(n * 3 + 1, sizeof(*pfd));
	struct imgf_job **owner = xcalloc(n * 3 + 1, sizeof(*owner));
	int *stream = xcalloc(n * 3 + 1, sizeof(*stream));
	for (;;) {
		if (imgf_interrupted) {
			stop = true;
			terminate(jobs, n); /* a kill of this process alone reaches them too */
		}
		while (!stop && running < max && next < n) {
			struct imgf_job *j = &jobs[next++];
			if (start_job(j, jobs, n) == 0) {
				running++;
				continue;
			}
			j->state = IMGF_JOB_FAILED;
			if (cancel_on_failure) {
				stop = true;
				terminate(jobs, n);
			}
		}
		if (!running)
			break;

		nfds_t nfd = 0;
		for (size_t i = 0; i < n; i++)
			for (int k = 0; k < 3; k++)
				if (jobs[i].fd[k] >= 0) {
					pfd[nfd] = (struct pollfd){.fd = jobs[i].fd[k],
								   .events = POLLIN};
					owner[nfd] = &jobs[i];
					stream[nfd++] = k;
				}
		if (poll(pfd, nfd, POLL_MS) > 0) {
			for (nfds_t f = 0; f < nfd; f++) {
				if (!pfd[f].revents)
					continue;
				struct imgf_job *j = owner[f];
				int k = stream[f];
				if (!drain(j, k)) {
					if (k != STREAM_RESULT)
						relay_lines(j, k, true);
					close(j->fd[k]);
					j->fd[k] = -1;
				}
			}
		}
		/* A child is done when it exits, not when its pipes close: a tool it started may
		 * still hold them. */
		for (size_t i = 0; i < n; i++) {
			struct imgf_job *j = &jobs[i];
			int status;
			if (j->state != IMGF_JOB_RUNNING ||
			    waitpid(j->pid, &status, WNOHANG) != j->pid)
				continue;
			running--;
			finish_job(j, status);
			if (j->state == IMGF_JOB_FAILED && cancel_on_failure && !stop) {
				stop = true;
				bool others = false;
				for (size_t o = 0; o < n; o++)
					others |= jobs[o].state == IMGF_JOB_RUNNING ||
						  jobs[o].state == IMGF_JOB_NOT_STARTED;
				if (others)
					log_warn("image '%s' failed: cancelling the other builds",
						 j->name);
				terminate(jobs, n);
			}
		}
	}
	free(pfd);
	free(owner);
	free(stream);
	size_t not_done = 0;
	for (size_t i = 0; i < n; i++)
		not_done += jobs[i].state != IMGF_JOB_DONE;
	return not_done;
}

void imgf_jobs_release(struct imgf_job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_decref(jobs[i].result);
		imgf_error_free(jobs[i].err);
		for (int k = 0; k < 3; k++) {
			if (jobs[i].buf[k])
				strbuf_release(jobs[i].buf[k]);
			free(jobs[i].buf[k]);
		}
		memset(&jobs[i], 0, sizeof(jobs[i]));
	}
}
