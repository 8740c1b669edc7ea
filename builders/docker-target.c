/*
 * The docker builder's target ops: a step's commands run as execs in the build container
 * (their multiplexed output demultiplexed into the log), files in and out as tar archives
 * through the container archive API. The builder's ops are in docker.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "error.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"
#include "builders/docker-internal.h"

/* ---- exec ------------------------------------------------------------------------------- */

struct demux {
	const struct imgf_exec *x;
	struct strbuf frame;   /* pending bytes of the multiplexed stream */
	struct strbuf line[3]; /* line buffers for logging, by stream */
};

static void emit(struct demux *m, int stream, const char *data, size_t len)
{
	if (m->x->on_output) {
		m->x->on_output(m->x->opaque, stream, data, len);
		return;
	}
	struct strbuf *lb = &m->line[stream == 2 ? 2 : 1];
	strbuf_add(lb, data, len);
	char *nl;
	while ((nl = memchr(lb->buf, '\n', lb->len))) {
		size_t n = (size_t)(nl - lb->buf);
		log_output(m->x->label ? m->x->label : "exec", stream, lb->buf, n);
		memmove(lb->buf, nl + 1, lb->len - n - 1);
		lb->len -= n + 1;
		lb->buf[lb->len] = '\0';
	}
}

/* Docker's multiplexed stream: 8-byte headers [stream, 0, 0, 0, size(be32)] + payload. */
static size_t demux_cb(void *opaque, const char *data, size_t len)
{
	struct demux *m = opaque;
	strbuf_add(&m->frame, data, len);
	size_t off = 0;
	while (m->frame.len - off >= 8) {
		const unsigned char *hd = (const unsigned char *)m->frame.buf + off;
		size_t size = ((size_t)hd[4] << 24) | ((size_t)hd[5] << 16) | ((size_t)hd[6] << 8) |
			      hd[7];
		if (m->frame.len - off - 8 < size)
			break;
		int stream = hd[0] == 2 ? 2 : 1;
		emit(m, stream, m->frame.buf + off + 8, size);
		off += 8 + size;
	}
	memmove(m->frame.buf, m->frame.buf + off, m->frame.len - off);
	m->frame.len -= off;
	if (m->frame.alloc)
		m->frame.buf[m->frame.len] = '\0';
	return len;
}

static int docker_exec(struct imgf_target *t, const struct imgf_exec *x, int *status,
		       struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	json_t *cmd = json_array();
	for (size_t i = 0; x->argv[i]; i++)
		json_array_append_new(cmd, json_string(x->argv[i]));
	json_t *env = json_array();
	for (size_t i = 0; x->env && x->env[i]; i++)
		json_array_append_new(env, json_string(x->env[i]));
	json_t *req = json_pack("{s:b,s:b,s:b,s:o,s:o,s:s,s:s}", "AttachStdin", 0, "AttachStdout",
				1, "AttachStderr", 1, "Cmd", cmd, "Env", env, "WorkingDir",
				x->workdir ? x->workdir : "/", "User", "root");
	json_t *created = NULL;
	int r = imgf_docker_json(dt->d, "POST", req, &created, NULL, err, "/containers/%s/exec",
				 dt->id);
	if (r < 0)
		return -1;
	_cleanup_free_ char *exec_id =
		xstrdup(json_string_value(json_object_get(created, "Id")) ?: "");
	json_decref(created);

	struct demux m = {.x = x, .frame = STRBUF_INIT};
	for (int i = 0; i < 3; i++)
		m.line[i] = (struct strbuf)STRBUF_INIT;
	struct docker_call c = {
		.method = "POST",
		.body = json_pack("{s:b,s:b}", "Detach", 0, "Tty", 0),
		.on_data = demux_cb,
		.opaque = &m,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/exec/%s/start", exec_id);
	r = imgf_docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "start exec: docker engine answered %ld",
				   c.status);
	for (int i = 1; i < 3; i++) {
		if (m.line[i].len)
			emit(&m, i, "\n", 1);
		strbuf_release(&m.line[i]);
	}
	strbuf_release(&m.frame);
	imgf_docker_call_release(&c);
	if (r < 0)
		return -1;

	/* The stream can end a moment before the engine records the exit: poll briefly. */
	bool running = true;
	for (int i = 0; i < 100 && running; i++) {
		json_t *info = NULL;
		if (imgf_docker_json(dt->d, "GET", NULL, &info, NULL, err, "/exec/%s/json",
				     exec_id) < 0)
			return -1;
		json_t *code = json_object_get(info, "ExitCode");
		*status = json_is_integer(code) ? (int)json_integer_value(code) : -1;
		running = json_is_true(json_object_get(info, "Running"));
		json_decref(info);
		if (running)
			usleep(50 * 1000);
	}
	if (running)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "exec '%s': output ended but the process still runs",
				      x->argv[0]);
	return 0;
}

/* ---- archives --------------------------------------------------------------------------- */

static int docker_put_tar(struct imgf_target *t, const char *tar_path, const char *dest_dir,
			  struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	_cleanup_fclose_ FILE *f = fopen(tar_path, "rb");
	if (!f)
		return imgf_error_errno(err, errno, "open '%s'", tar_path);
	struct stat st;
	if (fstat(fileno(f), &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", tar_path);
	_cleanup_free_ char *dir = imgf_http_escaped(dest_dir);
	struct docker_call c = {
		.method = "PUT",
		.upload = f,
		.upload_size = st.st_size,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/containers/%s/archive?path=%s&noOverwriteDirNonDir=true", dt->id, dir);
	int r = imgf_docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_docker_call_error(&c, "put archive", err);
	imgf_docker_call_release(&c);
	return r;
}

static int docker_get_tar(struct imgf_target *t, const char *path, const char *out_tar,
			  struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	FILE *f = fopen(out_tar, "wb");
	if (!f)
		return imgf_error_errno(err, errno, "create '%s'", out_tar);
	_cleanup_free_ char *p = imgf_http_escaped(path);
	struct docker_call c = {
		.method = "GET",
		.on_data = imgf_docker_file_sink,
		.opaque = f,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/containers/%s/archive?path=%s", dt->id, p);
	int r = imgf_docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "get '%s': docker engine answered %ld",
				   path, c.status);
	if (fclose(f) != 0 && r == 0)
		r = imgf_error_errno(err, errno, "write '%s'", out_tar);
	imgf_docker_call_release(&c);
	if (r < 0)
		unlink(out_tar);
	return r;
}

const struct imgf_target_ops imgf_docker_target_ops = {
	.exec = docker_exec,
	.put_tar = docker_put_tar,
	.get_tar = docker_get_tar,
};
