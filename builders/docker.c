/*
 * The docker builder: a build container on a Docker Engine, reached over its HTTP API with
 * libcurl (unix socket, or tcp:// with TLS client certificates), committed into an image.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "build.h"
#include "builder.h"
#include "contract.h"
#include "dockerengine.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "registry.h"
#include "squash.h"
#include "stepcache.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

#define DOCKER_API_MAX_MINOR 41 /* the newest API this client speaks: 1.41 */
#define DOCKER_REPLY_MAX (8u << 20)
#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct docker {
	char *socket; /* unix socket path, or NULL for tcp */
	char *base;   /* "http://docker" or "https://host:port" */
	char *ca, *cert, *key;
	bool verify;
	char api[16]; /* "/v1.41" */
};

struct docker_target {
	struct imgf_target t;
	struct docker *d;
	char *id;
	char *name;
	json_t *base_config;   /* the base image's Config, for defaults at commit */
	json_t *base_platform; /* {Architecture, Os, Variant} of the base, for a squashed image */
};

/* ---- HTTP ------------------------------------------------------------------------------- */

struct docker_call {
	const char *method;
	char *path;   /* after the API prefix */
	json_t *body; /* JSON body or NULL */
	FILE *upload; /* tar body for PUT or NULL */
	int64_t upload_size;
	/* Streamed reply: called for every chunk; NULL = collect into reply. */
	size_t (*on_data)(void *opaque, const char *data, size_t len);
	void *opaque;
	/* Streamed body of unknown length (sent chunked) when set: returns the bytes put in
	 * buf, 0 at the end, CURL_READFUNC_ABORT on error. */
	size_t (*on_read)(void *opaque, char *buf, size_t len);
	void *read_opaque;
	bool interruptible; /* abort when SIGINT/SIGTERM arrives */
	bool unversioned;   /* /version is asked before the API version is known */
	long status;
	struct strbuf reply;
};

static void docker_free(struct docker *d)
{
	if (!d)
		return;
	free(d->socket);
	free(d->base);
	free(d->ca);
	free(d->cert);
	free(d->key);
	free(d);
}

/* A message for a failed call: the Engine's own {"message": ...} when there is one. */
static int call_error(struct docker_call *c, const char *what, struct imgf_error **err)
{
	json_t *j = json_loads(c->reply.buf, 0, NULL);
	const char *m = json_string_value(json_object_get(j, "message"));
	imgf_error_set(err, IMGF_EXIT_FAIL, "%s: docker engine answered %ld: %s", what, c->status,
		       m ? m : (c->reply.len ? c->reply.buf : "no message"));
	json_decref(j);
	return -1;
}

static int docker_do(struct docker *d, struct docker_call *c, struct imgf_error **err)
{
	/* No stall limit: an exec's output may pause for as long as its command is quiet. */
	struct imgf_http_progress prog = {.uninterruptible = !c->interruptible};
	_cleanup_free_ char *url =
		xasprintf("%s%s%s", d->base, c->unversioned ? "" : d->api, c->path);
	_cleanup_free_ char *body = NULL;
	struct imgf_http_req q = {
		.method = c->method,
		.url = url,
		.opts = {.stall_s = -1,
			 .unix_socket = d->socket,
			 .tls_ca = d->ca,
			 .tls_cert = d->cert,
			 .tls_key = d->key,
			 .tls_no_verify = !d->socket && !d->verify,
			 .progress = &prog},
	};
	if (c->on_data) {
		q.sink = (struct imgf_http_sink){
			.kind = IMGF_HTTP_SINK_CALLBACK, .write = c->on_data, .arg = c->opaque};
	} else {
		c->reply.max = DOCKER_REPLY_MAX;
		q.sink = (struct imgf_http_sink){.kind = IMGF_HTTP_SINK_MEMORY, .buf = &c->reply};
	}
	if (c->body) {
		body = json_dumps(c->body, JSON_COMPACT);
		imgf_http_header_add(&q.headers, "Content-Type: application/json");
		q.body = (struct imgf_http_body){
			.kind = IMGF_HTTP_BODY_MEMORY, .data = body, .len = (int64_t)strlen(body)};
	} else if (c->upload) {
		imgf_http_header_add(&q.headers, "Content-Type: application/x-tar");
		q.body = (struct imgf_http_body){.kind = IMGF_HTTP_BODY_FILE,
						 .fd = fileno(c->upload),
						 .len = c->upload_size};
	} else if (c->on_read) {
		/* of unknown length: sent chunked */
		imgf_http_header_add(&q.headers, "Content-Type: application/x-tar");
		q.body = (struct imgf_http_body){.kind = IMGF_HTTP_BODY_READER,
						 .read = c->on_read,
						 .arg = c->read_opaque,
						 .len = -1};
	}
	imgf_http_header_add(&q.headers, "Expect:");

	struct imgf_http_resp r = {0};
	int ret = imgf_http_do(NULL, &q, &r, err);
	curl_slist_free_all(q.headers);
	c->status = r.status;
	if (ret < 0)
		return -1;
	if (r.interrupted)
		return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
	if (r.rc == CURLE_WRITE_ERROR && q.sink.overflow)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s %s: reply larger than %u bytes",
				      c->method, c->path, DOCKER_REPLY_MAX);
	if (r.rc != CURLE_OK)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "docker engine at '%s': %s",
				      d->socket ? d->socket : d->base,
				      r.errbuf[0] ? r.errbuf : curl_easy_strerror(r.rc));
	return 0;
}

static void call_release(struct docker_call *c)
{
	free(c->path);
	json_decref(c->body);
	strbuf_release(&c->reply);
}

/* A JSON request whose 2xx reply (if any) is parsed into *out (may be NULL). */
static int docker_json(struct docker *d, const char *method, json_t *body, json_t **out,
		       long *status, struct imgf_error **err, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static int docker_json(struct docker *d, const char *method, json_t *body, json_t **out,
		       long *status, struct imgf_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct docker_call c = {.method = method, .body = body, .reply = STRBUF_INIT};
	c.path = xvasprintf(fmt, ap);
	va_end(ap);
	int r = docker_do(d, &c, err);
	if (r == 0) {
		if (status)
			*status = c.status;
		if (c.status >= 300 && !status) {
			_cleanup_free_ char *what = xasprintf("%s %s", method, c.path);
			r = call_error(&c, what, err);
		} else if (c.status < 300 && out) {
			*out = c.reply.len ? json_loads(c.reply.buf, 0, NULL) : json_object();
			if (!*out)
				r = imgf_error_set(err, IMGF_EXIT_FAIL,
						   "%s %s: the engine's reply is not JSON", method,
						   c.path);
		} else if (c.status >= 300 && out) {
			*out = NULL;
		}
	}
	call_release(&c);
	return r;
}

/* ---- connecting --------------------------------------------------------------------------- */

static int docker_connect(struct docker **out, struct imgf_error **err)
{
	struct docker *d = xcalloc(1, sizeof(*d));
	const char *host = getenv("DOCKER_HOST");
	if (!host || !*host)
		host = "unix:///var/run/docker.sock";
	if (str_has_prefix(host, "unix://")) {
		d->socket = xstrdup(host + strlen("unix://"));
		d->base = xstrdup("http://docker");
	} else if (str_has_prefix(host, "tcp://")) {
		/* As the docker CLI: any non-empty DOCKER_TLS_VERIFY ("0" too) verifies the
		 * engine; DOCKER_CERT_PATH alone means TLS with client certificates but no
		 * verification (the Go client's FromEnv), which is said out loud. */
		const char *verify = getenv("DOCKER_TLS_VERIFY");
		const char *certs = getenv("DOCKER_CERT_PATH");
		bool tls = (verify && *verify) || (certs && *certs);
		d->verify = verify && *verify;
		d->base = xasprintf("%s://%s", tls ? "https" : "http", host + strlen("tcp://"));
		if (!tls)
			log_warn(
				"DOCKER_HOST '%s' without TLS: the engine is reached unencrypted "
				"and unauthenticated (set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)",
				host);
		else if (!d->verify)
			log_warn("DOCKER_HOST '%s': TLS without verifying the engine's certificate "
				 "(DOCKER_CERT_PATH is set but DOCKER_TLS_VERIFY is not); set "
				 "DOCKER_TLS_VERIFY=1 to verify it against '%s/ca.pem'",
				 host, certs);
		if (tls) {
			const char *home = getenv("HOME");
			_cleanup_free_ char *dir =
				certs && *certs ? xstrdup(certs)
						: xasprintf("%s/.docker", home ? home : "");
			d->ca = path_join(dir, "ca.pem");
			d->cert = path_join(dir, "cert.pem");
			d->key = path_join(dir, "key.pem");
			if (access(d->cert, R_OK) < 0 || access(d->key, R_OK) < 0) {
				imgf_error_set(err, IMGF_EXIT_FAIL,
					       "DOCKER_HOST '%s' uses TLS but '%s' or '%s' cannot "
					       "be read (set DOCKER_CERT_PATH)",
					       host, d->cert, d->key);
				docker_free(d);
				return -1;
			}
		}
	} else {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "DOCKER_HOST '%s': expected unix:///PATH or tcp://HOST:PORT", host);
		docker_free(d);
		return -1;
	}

	/* Negotiate: the engine's API version, capped at what this client speaks. */
	struct docker_call c = {.method = "GET", .unversioned = true, .reply = STRBUF_INIT};
	c.path = xstrdup("/version");
	int r = docker_do(d, &c, err);
	json_t *v = r == 0 && c.status == 200 ? json_loads(c.reply.buf, 0, NULL) : NULL;
	const char *api = json_string_value(json_object_get(v, "ApiVersion"));
	unsigned major = 0, minor = 0;
	if (r == 0 &&
	    (!api || sscanf(api, "%u.%u", &major, &minor) != 2 || major != 1 || minor < 24)) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "docker engine at '%s': cannot read a supported API version "
				   "from /version (got '%s', need 1.24 or newer)",
				   host, api ? api : "nothing");
	}
	if (r == 0) {
		if (minor > DOCKER_API_MAX_MINOR)
			minor = DOCKER_API_MAX_MINOR;
		snprintf(d->api, sizeof(d->api), "/v1.%u", minor);
		log_debug("docker engine at %s, API %s", host, d->api + 2);
	}
	json_decref(v);
	call_release(&c);
	if (r < 0) {
		docker_free(d);
		return -1;
	}
	*out = d;
	return 0;
}

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
	int r = docker_json(dt->d, "POST", req, &created, NULL, err, "/containers/%s/exec", dt->id);
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
	r = docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "start exec: docker engine answered %ld",
				   c.status);
	for (int i = 1; i < 3; i++) {
		if (m.line[i].len)
			emit(&m, i, "\n", 1);
		strbuf_release(&m.line[i]);
	}
	strbuf_release(&m.frame);
	call_release(&c);
	if (r < 0)
		return -1;

	/* The stream can end a moment before the engine records the exit: poll briefly. */
	bool running = true;
	for (int i = 0; i < 100 && running; i++) {
		json_t *info = NULL;
		if (docker_json(dt->d, "GET", NULL, &info, NULL, err, "/exec/%s/json", exec_id) < 0)
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
	int r = docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = call_error(&c, "put archive", err);
	call_release(&c);
	return r;
}

static size_t file_sink(void *opaque, const char *data, size_t len)
{
	return fwrite(data, 1, len, opaque);
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
		.on_data = file_sink,
		.opaque = f,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/containers/%s/archive?path=%s", dt->id, p);
	int r = docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "get '%s': docker engine answered %ld",
				   path, c.status);
	if (fclose(f) != 0 && r == 0)
		r = imgf_error_errno(err, errno, "write '%s'", out_tar);
	call_release(&c);
	if (r < 0)
		unlink(out_tar);
	return r;
}

static const struct imgf_target_ops docker_target_ops = {
	.exec = docker_exec,
	.put_tar = docker_put_tar,
	.get_tar = docker_get_tar,
};

/* ---- the builder ------------------------------------------------------------------------- */

static const struct imgf_key docker_keys[] = {
	{"image", IMGF_KEY_STRING, true}, /* the base image */
	{"pull", IMGF_KEY_STRING, false}, /* missing (default), always, never */
	{"tag", IMGF_KEY_STRING, false},  /* repo:tag of the result */
	{"entrypoint", IMGF_KEY_STRING_LIST, false},
	{"cmd", IMGF_KEY_STRING_LIST, false},
	{"env", IMGF_KEY_STRING_LIST, false},
	{"stop_signal", IMGF_KEY_STRING, false},
	{"labels", IMGF_KEY_OBJECT, false},
	{"workdir", IMGF_KEY_STRING, false},
	{"cap_add", IMGF_KEY_STRING_LIST, false},
	{"security_opt", IMGF_KEY_STRING_LIST, false},
	{"network", IMGF_KEY_STRING, false},
	{"squash", IMGF_KEY_BOOL, false}, /* one reproducible layer (default true) */
	{NULL, 0, false},
};

static json_t *cfg_list(struct imgf_build *b, const char *key, const char *def)
{
	json_t *v = json_object_get(b->builder_cfg, key);
	if (json_is_string(v))
		return json_pack("[s]", json_string_value(v));
	if (json_is_array(v))
		return json_deep_copy(v);
	return def ? json_pack("[s]", def) : json_array();
}

static int docker_validate(struct imgf_build *b, struct imgf_error **err)
{
	/* The image goes into Engine API paths: it must be a reference (or an image ID, which
	 * parses as one), nothing that could name another path. */
	struct imgf_image_ref ref;
	if (imgf_image_ref_parse(imgf_cfg_str(b->builder_cfg, "image", ""), &ref, err) < 0)
		return imgf_error_prefix(err, "image");
	imgf_image_ref_release(&ref);
	const char *pull = imgf_cfg_str(b->builder_cfg, "pull", "missing");
	if (strcmp(pull, "missing") && strcmp(pull, "always") && strcmp(pull, "never"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "pull: '%s' is not one of 'missing', 'always', 'never'",
				      pull);
	const char *tag = imgf_cfg_str(b->builder_cfg, "tag", NULL);
	if (tag && (!*tag || strchr(tag, ' ') || str_has_suffix(tag, ":")))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tag: '%s' is not a valid image name",
				      tag);
	json_t *labels = json_object_get(b->builder_cfg, "labels");
	const char *k;
	json_t *v;
	json_object_foreach(labels, k, v)
	{
		if (!json_is_string(v))
			return imgf_error_set(err, IMGF_EXIT_FAIL, "labels.%s: expected a string",
					      k);
	}
	return 0;
}

/* Split "repo[:tag]" where a ':' before the last '/' belongs to a registry port. */
static void split_tag(const char *ref, char **repo, char **tag)
{
	const char *slash = strrchr(ref, '/');
	const char *colon = strrchr(ref, ':');
	if (colon && (!slash || colon > slash)) {
		*repo = xstrndup(ref, (size_t)(colon - ref));
		*tag = xstrdup(colon + 1);
	} else {
		*repo = xstrdup(ref);
		*tag = xstrdup("latest");
	}
}

static size_t pull_progress(void *opaque, const char *data, size_t len)
{
	/* The pull stream is JSON objects, one per line; keep only the last error. */
	struct strbuf *errs = opaque;
	struct strbuf line = STRBUF_INIT;
	strbuf_add(&line, data, len);
	const char *p = line.buf;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		_cleanup_free_ char *one = xstrndup(p, nl ? (size_t)(nl - p) : strlen(p));
		json_t *j = json_loads(one, 0, NULL);
		/* Stream errors carry "error"; a refused request is one {"message": …}. */
		const char *e = json_string_value(json_object_get(j, "error"));
		if (!e)
			e = json_string_value(json_object_get(j, "message"));
		if (e) {
			strbuf_reset(errs);
			strbuf_addstr(errs, e);
		}
		json_decref(j);
		p = nl ? nl + 1 : NULL;
	}
	strbuf_release(&line);
	return len;
}

/* Make sure the base image is present (pulling per `pull`, for linux/ARCH); *info gets its
 * inspect reply. */
static int ensure_image(struct docker *d, const char *image, const char *pull, const char *arch,
			json_t **info_out, struct imgf_error **err)
{
	json_t *info = NULL;
	long st = 0;
	_cleanup_free_ char *q = imgf_http_escaped(image);
	if (strcmp(pull, "always") != 0) {
		if (docker_json(d, "GET", NULL, &info, &st, err, "/images/%s/json", q) < 0)
			return -1;
		if (st == 200) {
			*info_out = info;
			return 0;
		}
		json_decref(info);
		if (!strcmp(pull, "never"))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "base image '%s' is not present and pull is 'never'",
					      image);
	}
	log_info("pulling base image '%s'", image);
	struct strbuf errs = STRBUF_INIT;
	struct docker_call c = {.method = "POST",
				.on_data = pull_progress,
				.opaque = &errs,
				.interruptible = true,
				.reply = STRBUF_INIT};
	_cleanup_free_ char *platform = arch ? imgf_http_escaped(arch) : NULL;
	c.path = platform ? xasprintf("/images/create?fromImage=%s&platform=linux%%2F%s", q,
				      platform)
			  : xasprintf("/images/create?fromImage=%s", q);
	int r = docker_do(d, &c, err);
	if (r == 0 && (c.status >= 300 || errs.len))
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "pull base image '%s': %s", image,
				   errs.len ? errs.buf : "the engine refused");
	call_release(&c);
	strbuf_release(&errs);
	if (r < 0)
		return -1;
	if (docker_json(d, "GET", NULL, &info, NULL, err, "/images/%s/json", q) < 0)
		return imgf_error_prefix(err, "pull base image '%s'", image);
	*info_out = info;
	return 0;
}

static void remove_container(struct docker *d, const char *id)
{
	struct imgf_error *e = NULL;
	long st = 0;
	if (docker_json(d, "DELETE", NULL, NULL, &st, &e, "/containers/%s?force=true&v=true", id) <
		    0 ||
	    (st >= 300 && st != 404))
		log_warn("could not remove build container '%s': %s", id,
			 e ? e->msg : "the engine refused");
	imgf_error_free(e);
}

/* The base image, present (pulled per `pull`), recorded as the input "base-image" once. */
static int base_image(struct imgf_build *b, struct docker *d, json_t **info,
		      struct imgf_error **err)
{
	const char *image = imgf_cfg_str(b->builder_cfg, "image", "");
	/* The base is for the build's arch: a foreign one runs through binfmt_misc. */
	const char *arch = b->contract->arch;
	if (ensure_image(d, image, imgf_cfg_str(b->builder_cfg, "pull", "missing"), arch, info,
			 err) < 0)
		return -1;
	const char *base_arch = json_string_value(json_object_get(*info, "Architecture"));
	if (arch && base_arch && strcmp(base_arch, arch)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "base image '%s' is linux/%s, the build is for linux/%s (the 'arch' "
			       "variable): give an image for %s",
			       image, base_arch, arch, arch);
		json_decref(*info); /* base_arch points into it */
		*info = NULL;
		return -1;
	}
	const char *base_id = json_string_value(json_object_get(*info, "Id"));
	base_id = base_id ? base_id : "";
	size_t i;
	json_t *in;
	json_array_foreach(b->inputs, i, in)
	{
		const char *name = json_string_value(json_object_get(in, "name"));
		if (name && !strcmp(name, "base-image"))
			return 0;
	}
	imgf_build_record_input(b, "base-image", image,
				str_has_prefix(base_id, "sha256:") ? base_id + 7 : base_id);
	return 0;
}

/* A build container from `from` (the base image, or a cached step's image), started. */
static int create_container(struct imgf_build *b, struct docker *d, const char *from, char **id,
			    char **name_out, struct imgf_error **err)
{
	char rnd[9];
	snprintf(rnd, sizeof(rnd), "%08x", (unsigned)(getpid() ^ (unsigned)time(NULL) ^ rand()));
	_cleanup_free_ char *name = xasprintf("imgforge-%s-%s", b->def->name, rnd);
	json_t *host = json_pack("{s:o,s:o,s:s}", "CapAdd", cfg_list(b, "cap_add", "SYS_ADMIN"),
				 "SecurityOpt", cfg_list(b, "security_opt", "seccomp=unconfined"),
				 "NetworkMode", imgf_cfg_str(b->builder_cfg, "network", "host"));
	json_t *req = json_pack("{s:s,s:[s,s],s:[s],s:{s:s},s:o}", "Image", from, "Entrypoint",
				"sleep", "infinity", "Env", DEFAULT_PATH, "Labels",
				"io.imgforge.build", b->def->name, "HostConfig", host);
	json_t *created = NULL;
	_cleanup_free_ char *qname = imgf_http_escaped(name);
	if (docker_json(d, "POST", req, &created, NULL, err, "/containers/create?name=%s", qname) <
	    0)
		return imgf_error_prefix(err, "create build container from '%s'", from);
	*id = xstrdup(json_string_value(json_object_get(created, "Id")) ?: "");
	*name_out = xstrdup(name);
	json_decref(created);
	return 0;
}

static int docker_prepare(struct imgf_build *b, struct imgf_target **out, struct imgf_error **err)
{
	struct docker *d;
	if (docker_connect(&d, err) < 0)
		return -1;
	const char *image = imgf_cfg_str(b->builder_cfg, "image", "");
	json_t *base = NULL;
	if (base_image(b, d, &base, err) < 0) {
		docker_free(d);
		return -1;
	}
	/* From the deepest cached step when there is one; the commit's defaults are still the
	 * base image's config. */
	const char *from = imgf_stepcache_from(b);
	_cleanup_free_ char *cid = NULL, *name = NULL;
	if (create_container(b, d, from ? from : image, &cid, &name, err) < 0) {
		docker_free(d);
		json_decref(base);
		return -1;
	}
	struct docker_target *dt = xcalloc(1, sizeof(*dt));
	dt->d = d;
	dt->id = STEAL_POINTER(&cid);
	dt->name = xstrdup(name);
	dt->t.ops = &docker_target_ops;
	dt->t.priv = dt;
	dt->t.name = xasprintf("container '%s'", name);
	dt->base_config = json_incref(json_object_get(base, "Config"));
	dt->base_platform = json_pack(
		"{s:O?,s:O?,s:O?}", "Architecture", json_object_get(base, "Architecture"), "Os",
		json_object_get(base, "Os"), "Variant", json_object_get(base, "Variant"));
	json_decref(base);
	*out = &dt->t;
	imgf_event("target",
		   json_pack("{s:s,s:s,s:s}", "builder", "docker", "container", name, "id", dt->id),
		   NULL);
	if (from)
		log_info("build container '%s' from the cached image %.19s ('%s' and %zu step%s)",
			 name, from, image, b->cache->hit, b->cache->hit == 1 ? "" : "s");
	else
		log_info("build container '%s' from '%s'", name, image);
	if (docker_json(d, "POST", NULL, NULL, NULL, err, "/containers/%s/start", dt->id) < 0)
		return imgf_error_prefix(err, "start build container '%s'", name);
	return 0;
}

/* The image's config as the commit API takes it: what the image definition sets, with the
 * base image's entrypoint and cmd where it sets neither. */
static json_t *commit_config(struct imgf_build *b, struct docker_target *dt)
{
	json_t *labels = json_deep_copy(b->labels);
	json_t *user_labels = json_object_get(b->builder_cfg, "labels");
	if (user_labels)
		json_object_update(labels, user_labels);
	json_t *config = json_pack("{s:o,s:o}", "Labels", labels, "Env", cfg_list(b, "env", NULL));
	/* The build container's own entrypoint (sleep) must not leak into the image: without
	 * an entrypoint or cmd in the config, the base image's are kept. */
	json_t *ep = json_object_get(b->builder_cfg, "entrypoint");
	json_t *cmd = json_object_get(b->builder_cfg, "cmd");
	json_t *base_ep = json_object_get(dt->base_config, "Entrypoint");
	json_t *base_cmd = json_object_get(dt->base_config, "Cmd");
	json_object_set_new(config, "Entrypoint",
			    ep ? cfg_list(b, "entrypoint", NULL)
			       : (json_is_array(base_ep) ? json_deep_copy(base_ep) : json_array()));
	json_object_set_new(
		config, "Cmd",
		cmd ? cfg_list(b, "cmd", NULL)
		    : (!ep && json_is_array(base_cmd) ? json_deep_copy(base_cmd) : json_null()));
	if (imgf_cfg_str(b->builder_cfg, "stop_signal", NULL))
		json_object_set_new(config, "StopSignal",
				    json_string(imgf_cfg_str(b->builder_cfg, "stop_signal", NULL)));
	if (imgf_cfg_str(b->builder_cfg, "workdir", NULL))
		json_object_set_new(config, "WorkingDir",
				    json_string(imgf_cfg_str(b->builder_cfg, "workdir", NULL)));
	return config;
}

/* "repo:tag" with the tag spelled out, as an image archive's RepoTags wants it. */
static char *full_tag(const char *tag)
{
	_cleanup_free_ char *repo = NULL, *tg = NULL;
	split_tag(tag, &repo, &tg);
	return xasprintf("%s:%s", repo, tg);
}

static int engine_commit(struct docker_target *dt, json_t *config, const char *tag, char **id,
			 struct imgf_error **err)
{
	struct strbuf q = STRBUF_INIT;
	_cleanup_free_ char *author = imgf_http_escaped("imgforge " IMGF_VERSION);
	strbuf_addf(&q, "/commit?container=%s&pause=true&author=%s", dt->id, author);
	if (tag) {
		_cleanup_free_ char *repo = NULL, *tg = NULL;
		split_tag(tag, &repo, &tg);
		_cleanup_free_ char *er = imgf_http_escaped(repo);
		_cleanup_free_ char *et = imgf_http_escaped(tg);
		strbuf_addf(&q, "&repo=%s&tag=%s", er, et);
	}
	json_t *reply = NULL;
	int r = docker_json(dt->d, "POST", json_incref(config), &reply, NULL, err, "%s", q.buf);
	strbuf_release(&q);
	if (r < 0)
		return -1;
	*id = xstrdup(json_string_value(json_object_get(reply, "Id")) ?: "");
	json_decref(reply);
	return 0;
}

/* ---- the squashed image ----------------------------------------------------------------- */

/* What the engine adds to every container (its init layer), not what the build made; the
 * engine mounts its own /etc/hosts, /etc/hostname and /etc/resolv.conf over the (empty)
 * files it leaves there. */
static const char *const squash_drop[] = {".dockerenv", "dev/console", NULL};

/* containerd's metadata: its pages and times differ between two builds of the same images */
static const char *const squash_bolt[] = {
	"var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db", NULL};

static char *env_key(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? xstrndup(kv, (size_t)(eq - kv)) : xstrdup(kv);
}

static bool env_has(json_t *env, const char *key)
{
	size_t i;
	json_t *v;
	json_array_foreach(env, i, v)
	{
		_cleanup_free_ char *k = env_key(json_string_value(v) ?: "");
		if (!strcmp(k, key))
			return true;
	}
	return false;
}

static void env_merge(json_t *env, const char *kv)
{
	_cleanup_free_ char *k = env_key(kv);
	if (!env_has(env, k))
		json_array_append_new(env, json_string(kv));
}

/*
 * The commit API merges the build container's config into the image's; a squashed image is
 * written whole, so do the same here: the environment (the image definition's, then PATH
 * and the base image's other variables), and the base image's user, ports, volumes,
 * healthcheck and stop signal where the definition sets none.
 */
static json_t *squash_config(struct docker_target *dt, json_t *commit_cfg)
{
	json_t *c = json_deep_copy(commit_cfg);
	json_t *env = json_object_get(c, "Env");
	env_merge(env, DEFAULT_PATH);
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(dt->base_config, "Env"), i, v)
	{
		if (json_is_string(v))
			env_merge(env, json_string_value(v));
	}
	static const char *const inherited[] = {"User",	       "ExposedPorts", "Volumes",
						"Healthcheck", "StopSignal",   "OnBuild"};
	for (size_t k = 0; k < ARRAY_SIZE(inherited); k++) {
		json_t *own = json_object_get(c, inherited[k]);
		json_t *base = json_object_get(dt->base_config, inherited[k]);
		if ((!own || json_is_null(own)) && base && !json_is_null(base))
			json_object_set(c, inherited[k], base);
	}
	if (json_array_size(json_object_get(c, "Entrypoint")) == 0)
		json_object_set_new(c, "Entrypoint", json_null());
	return c;
}

static int export_container(struct docker_target *dt, const char *path, struct imgf_error **err)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return imgf_error_errno(err, errno, "create '%s'", path);
	struct docker_call c = {
		.method = "GET",
		.on_data = file_sink,
		.opaque = f,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/containers/%s/export", dt->id);
	int r = docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "export: docker engine answered %ld",
				   c.status);
	if (fclose(f) != 0 && r == 0)
		r = imgf_error_errno(err, errno, "write '%s'", path);
	call_release(&c);
	if (r < 0)
		imgf_error_prefix(err, "export to '%s'", path);
	return r;
}

struct load_source {
	struct imgf_image_archive *ia;
	struct imgf_error *err;
};

static size_t load_read(void *opaque, char *buf, size_t len)
{
	struct load_source *ls = opaque;
	ssize_t n = imgf_image_archive_read(ls->ia, buf, len, &ls->err);
	return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

static int load_image(struct docker *d, const char *config_json, const char *layer, const char *tag,
		      struct imgf_error **err)
{
	_cleanup_free_ char *rt = tag ? full_tag(tag) : NULL;
	struct load_source ls = {.ia = imgf_image_archive_open(config_json, layer, rt, err)};
	if (!ls.ia)
		return -1;
	struct strbuf errs = STRBUF_INIT;
	struct docker_call c = {
		.method = "POST",
		.on_read = load_read,
		.read_opaque = &ls,
		.on_data = pull_progress,
		.opaque = &errs,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xstrdup("/images/load?quiet=1");
	struct imgf_error *call_err = NULL;
	int r = docker_do(d, &c, &call_err);
	if (ls.err) { /* the archive's own error says more than curl's "aborted" */
		imgf_error_free(call_err);
		*err = ls.err;
		r = -1;
	} else if (r < 0) {
		*err = call_err;
	} else if (c.status >= 300 || errs.len) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "docker engine answered %ld: %s", c.status,
				   errs.len ? errs.buf : "no message");
	}
	call_release(&c);
	strbuf_release(&errs);
	imgf_image_archive_free(ls.ia);
	return r < 0 ? imgf_error_prefix(err, "load image") : 0;
}

/* The loaded image is there under the ID its config gives. */
static int check_loaded(struct docker *d, const char *want, struct imgf_error **err)
{
	long st = 0;
	if (docker_json(d, "GET", NULL, NULL, &st, err, "/images/%s/json", want) < 0)
		return -1;
	if (st != 200)
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"load image: the engine answered %ld for the loaded image '%s'", st, want);
	return 0;
}

int imgf_docker_load_image(const char *config_json, const char *layer, const char *tag,
			   const char *want_id, struct imgf_error **err)
{
	struct docker *d = NULL;
	if (docker_connect(&d, err) < 0)
		return -1;
	int r = load_image(d, config_json, layer, tag, err);
	if (r == 0)
		r = check_loaded(d, want_id, err);
	docker_free(d);
	return r;
}

/* Pause the container (as the commit API does) while its filesystem is exported. */
static int export_paused(struct docker_target *dt, const char *path, struct imgf_error **err)
{
	if (docker_json(dt->d, "POST", NULL, NULL, NULL, err, "/containers/%s/pause", dt->id) < 0)
		return -1;
	int r = export_container(dt, path, err);
	struct imgf_error *e = NULL;
	if (docker_json(dt->d, "POST", NULL, NULL, NULL, &e, "/containers/%s/unpause", dt->id) <
	    0) {
		if (r < 0) { /* the export's error is the one to report */
			imgf_error_free(e);
			return -1;
		}
		*err = e;
		return imgf_error_prefix(err, "unpause");
	}
	return r;
}

/*
 * The container's filesystem exported, rewritten as one reproducible layer and loaded with
 * a config of its own (created at SOURCE_DATE_EPOCH): the same build gives the same ID.
 */
static int squash_commit(struct imgf_build *b, struct docker_target *dt, json_t *commit_cfg,
			 const char *tag, char **id, struct imgf_error **err)
{
	struct imgf_squash_opts o = {.drop = squash_drop, .bolt = squash_bolt};
	o.epoch = b->contract->epoch.value;
	const char *from = b->contract->epoch.from;
	_cleanup_free_ char *exp = imgf_target_stage_path(&dt->t, "export");
	_cleanup_free_ char *layer = imgf_target_stage_path(&dt->t, "layer");
	struct imgf_layer l;
	double t0 = imgf_now();
	int r = export_paused(dt, exp, err);
	if (r == 0) {
		imgf_build_phase(b, "export", imgf_now() - t0);
		t0 = imgf_now();
		r = imgf_squash_layer(exp, layer, &o, &l, err);
	}
	unlink(exp);
	if (r < 0)
		return imgf_error_prefix(err, "squash");
	imgf_build_phase(b, "squash", imgf_now() - t0);
	log_info("squashed %s into one layer: %zu files, %.1f MiB, %s (mtimes clamped to %" PRId64
		 ", %s; %zu bolt database%s rewritten)",
		 dt->t.name, l.entries, (double)l.size / (1 << 20), l.diff_id, o.epoch, from,
		 l.rewritten, l.rewritten == 1 ? "" : "s");

	json_t *cc = squash_config(dt, commit_cfg);
	json_t *p = dt->base_platform;
	char want[IMGF_DIGEST_ID_MAX];
	_cleanup_free_ char *author = xasprintf("imgforge " IMGF_VERSION);
	_cleanup_free_ char *config = imgf_image_config(
		cc, json_string_value(json_object_get(p, "Architecture")) ?: "amd64",
		json_string_value(json_object_get(p, "Variant")),
		json_string_value(json_object_get(p, "Os")) ?: "linux", o.epoch, author, l.diff_id,
		want);
	json_decref(cc);
	t0 = imgf_now();
	r = load_image(dt->d, config, layer, tag, err);
	unlink(layer);
	if (r < 0)
		return -1;
	imgf_build_phase(b, "load", imgf_now() - t0);
	if (check_loaded(dt->d, want, err) < 0)
		return -1;
	*id = xstrdup(want);
	return 0;
}

/* "OS/ARCH[/VARIANT]" of an image inspect reply (or the base_platform subset of one). */
static char *platform_of(json_t *info)
{
	const char *variant = json_string_value(json_object_get(info, "Variant"));
	return xasprintf("%s/%s%s%s", json_string_value(json_object_get(info, "Os")) ?: "linux",
			 json_string_value(json_object_get(info, "Architecture")) ?: "amd64",
			 variant ? "/" : "", variant ? variant : "");
}

static int docker_commit(struct imgf_build *b, struct imgf_target *t, struct imgf_artifact *out,
			 struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	json_t *config = commit_config(b, dt);
	const char *tag = imgf_cfg_str(b->builder_cfg, "tag", NULL);
	_cleanup_free_ char *id = NULL;
	int r = imgf_cfg_bool(b->builder_cfg, "squash", true)
			? squash_commit(b, dt, config, tag, &id, err)
			: engine_commit(dt, config, tag, &id, err);
	json_decref(config);
	if (r < 0)
		return imgf_error_prefix(err, "commit %s", t->name);
	out->id = STEAL_POINTER(&id);
	out->files = xcalloc(1, sizeof(char *));
	/* The image's platform is its base's (a foreign one ran through binfmt_misc). */
	_cleanup_free_ char *platform = platform_of(dt->base_platform);
	out->extra = json_pack("{s:s?,s:s}", "image", tag, "platform", platform);
	log_info("committed %s as %s%s%s", t->name, out->id, tag ? " " : "", tag ? tag : "");
	return 0;
}

/* ---- the step cache --------------------------------------------------------------------- */

#define CACHE_KEY_LABEL "io.imgforge.cache.key"

/* Whether the base image is at hand as the build will use it: present, for the build's arch,
 * and not to be pulled again (pull 'always'). */
static int base_at_hand(struct imgf_build *b, struct docker *d, bool *yes, struct imgf_error **err)
{
	*yes = false;
	if (!strcmp(imgf_cfg_str(b->builder_cfg, "pull", "missing"), "always"))
		return 0;
	json_t *info = NULL;
	long st = 0;
	_cleanup_free_ char *q = imgf_http_escaped(imgf_cfg_str(b->builder_cfg, "image", ""));
	if (docker_json(d, "GET", NULL, &info, &st, err, "/images/%s/json", q) < 0)
		return -1;
	const char *arch = b->contract->arch;
	const char *base_arch = json_string_value(json_object_get(info, "Architecture"));
	*yes = st == 200 && (!arch || !base_arch || !strcmp(arch, base_arch));
	json_decref(info);
	return 0;
}

static int docker_cache_base(struct imgf_build *b, bool pull, char **digest,
			     struct imgf_error **err)
{
	struct docker *d;
	if (docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	bool yes = true;
	int r = pull ? 0 : base_at_hand(b, d, &yes, err);
	if (r == 0 && yes) {
		r = base_image(b, d, &info, err);
		if (r == 0)
			*digest = xstrdup(json_string_value(json_object_get(info, "Id")) ?: "");
	}
	json_decref(info);
	docker_free(d);
	return r;
}

/* An image's inspect reply, or NULL (and 0) when the engine has no such image. */
static int inspect_image(struct docker *d, const char *id, json_t **out, struct imgf_error **err)
{
	long st = 0;
	_cleanup_free_ char *q = imgf_http_escaped(id);
	*out = NULL;
	if (docker_json(d, "GET", NULL, out, &st, err, "/images/%s/json", q) < 0)
		return -1;
	if (st == 404)
		return 0;
	if (st != 200) {
		json_decref(*out);
		*out = NULL;
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "inspect image '%s': docker engine answered %ld", id, st);
	}
	return 0;
}

static int64_t image_size(struct docker *d, const char *id)
{
	json_t *info = NULL;
	struct imgf_error *e = NULL;
	int64_t size = 0;
	if (inspect_image(d, id, &info, &e) == 0 && info)
		size = json_integer_value(json_object_get(info, "Size"));
	imgf_error_free(e);
	json_decref(info);
	return size;
}

/* The build goes on in a fresh container from `image`; the old container goes. */
static int continue_from(struct imgf_build *b, struct docker_target *dt, const char *image,
			 struct imgf_error **err)
{
	_cleanup_free_ char *cid = NULL, *name = NULL;
	if (create_container(b, dt->d, image, &cid, &name, err) < 0)
		return -1;
	remove_container(dt->d, dt->id);
	free(dt->id);
	free(dt->name);
	free(dt->t.name);
	dt->id = STEAL_POINTER(&cid);
	dt->name = STEAL_POINTER(&name);
	dt->t.name = xasprintf("container '%s'", dt->name);
	imgf_event("target",
		   json_pack("{s:s,s:s,s:s}", "builder", "docker", "container", dt->name, "id",
			     dt->id),
		   NULL);
	if (docker_json(dt->d, "POST", NULL, NULL, NULL, err, "/containers/%s/start", dt->id) < 0)
		return imgf_error_prefix(err, "start build container '%s'", dt->name);
	return 0;
}

/*
 * The state after a step as an untagged image labelled with its key; the next step runs in
 * a fresh container from it, so each cached image adds only its own step's layer.
 */
static int docker_cache_save(struct imgf_build *b, struct imgf_target *t, const char *key,
			     const char *step, char **id, int64_t *size, struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	json_t *config =
		json_pack("{s:{s:s,s:s,s:s}}", "Labels", CACHE_KEY_LABEL, key,
			  "io.imgforge.cache.step", step, "io.imgforge.cache.image", b->def->name);
	_cleanup_free_ char *from = NULL;
	json_t *old = NULL;
	if (docker_json(dt->d, "GET", NULL, &old, NULL, err, "/containers/%s/json", dt->id) < 0) {
		json_decref(config);
		return -1;
	}
	from = xstrdup(json_string_value(json_object_get(old, "Image")) ?: "");
	json_decref(old);
	_cleanup_free_ char *img = NULL;
	int r = engine_commit(dt, config, NULL, &img, err);
	json_decref(config);
	if (r < 0 || continue_from(b, dt, img, err) < 0)
		return -1;
	*size = image_size(dt->d, img) - image_size(dt->d, from);
	if (*size < 0)
		*size = 0;
	*id = STEAL_POINTER(&img);
	return 0;
}

/* The image a twin build cached for the same step: the build goes on in a container from
 * it, its own container (and what the step did in it) goes. */
static int docker_cache_adopt(struct imgf_build *b, struct imgf_target *t, const char *id,
			      struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	if (continue_from(b, dt, id, err) < 0)
		return -1;
	log_info("build container '%s' goes on from the cached image %.19s", dt->name, id);
	return 0;
}

static int docker_cache_check(struct imgf_build *b, const char *key, const char *id, bool final,
			      struct imgf_error **err)
{
	(void)b;
	struct docker *d;
	if (docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	int r = inspect_image(d, id, &info, err);
	docker_free(d);
	if (r < 0 || !info)
		return r;
	const char *got = json_string_value(json_object_get(info, "Id"));
	const char *label = json_string_value(json_object_get(
		json_object_get(json_object_get(info, "Config"), "Labels"), CACHE_KEY_LABEL));
	/* A step's image must say which key it holds; the artifact is the ID it was. */
	bool ok = got && !strcmp(got, id) && (final || (label && !strcmp(label, key)));
	json_decref(info);
	return ok ? 1 : 0;
}

static int docker_cache_drop(const char *id, bool final, struct imgf_error **err)
{
	if (final)
		return 0; /* the artifact is the user's image: only its record goes */
	struct docker *d;
	if (docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	int r = inspect_image(d, id, &info, err);
	/* Only a step's image goes, never one the record merely names (a damaged record could
	 * name any image); its untagged parents that nothing else uses go with it. */
	json_t *labels = json_object_get(json_object_get(info, "Config"), "Labels");
	if (r == 0 && info && json_object_get(labels, CACHE_KEY_LABEL)) {
		long st = 0;
		_cleanup_free_ char *q = imgf_http_escaped(id);
		r = docker_json(d, "DELETE", NULL, NULL, &st, err, "/images/%s", q);
		if (r == 0 && st >= 300 && st != 404)
			r = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"remove image '%.19s': docker engine answered %ld%s", id, st,
				st == 409 ? " (an image or container still uses it)" : "");
	}
	json_decref(info);
	docker_free(d);
	return r;
}

static int docker_cache_reuse(struct imgf_build *b, const char *id, struct imgf_artifact *out,
			      struct imgf_error **err)
{
	const char *tag = imgf_cfg_str(b->builder_cfg, "tag", NULL);
	struct docker *d;
	if (docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	if (inspect_image(d, id, &info, err) < 0) {
		docker_free(d);
		return -1;
	}
	if (!json_object_get(info, "Id")) {
		json_decref(info);
		docker_free(d);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "cached image '%.19s' is gone", id);
	}
	_cleanup_free_ char *platform = platform_of(info);
	json_decref(info);
	if (tag) {
		_cleanup_free_ char *repo = NULL, *tg = NULL;
		split_tag(tag, &repo, &tg);
		_cleanup_free_ char *qi = imgf_http_escaped(id);
		_cleanup_free_ char *qr = imgf_http_escaped(repo);
		_cleanup_free_ char *qt = imgf_http_escaped(tg);
		int r = docker_json(d, "POST", NULL, NULL, NULL, err,
				    "/images/%s/tag?repo=%s&tag=%s", qi, qr, qt);
		if (r < 0) {
			docker_free(d);
			return imgf_error_prefix(err, "tag '%s'", tag);
		}
	}
	docker_free(d);
	out->id = xstrdup(id);
	out->files = xcalloc(1, sizeof(char *));
	out->extra = json_pack("{s:s?,s:s}", "image", tag, "platform", platform);
	return 0;
}

static size_t file_read(void *opaque, char *buf, size_t len)
{
	FILE *f = opaque;
	size_t n = fread(buf, 1, len, f);
	return n == 0 && ferror(f) ? CURL_READFUNC_ABORT : n;
}

/* A step's image from another machine (src/regcache.h): the archive streamed to
 * POST /images/load, then the engine must know it as `id`. */
static int docker_cache_load(struct imgf_build *b, const char *archive, const char *id,
			     struct imgf_error **err)
{
	(void)b;
	_cleanup_fclose_ FILE *f = fopen(archive, "rb");
	if (!f)
		return imgf_error_errno(err, errno, "open '%s'", archive);
	struct docker *d;
	if (docker_connect(&d, err) < 0)
		return -1;
	struct strbuf errs = STRBUF_INIT;
	struct docker_call c = {
		.method = "POST",
		.on_read = file_read,
		.read_opaque = f,
		.on_data = pull_progress,
		.opaque = &errs,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xstrdup("/images/load?quiet=1");
	int r = docker_do(d, &c, err);
	if (r == 0 && (c.status >= 300 || errs.len))
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "docker engine answered %ld: %s", c.status,
				   errs.len ? errs.buf : "no message");
	call_release(&c);
	strbuf_release(&errs);
	if (r == 0)
		r = check_loaded(d, id, err);
	docker_free(d);
	return r < 0 ? imgf_error_prefix(err, "load image '%.19s'", id) : 0;
}

static void docker_cleanup(struct imgf_build *b, struct imgf_target *t, bool keep)
{
	(void)b;
	struct docker_target *dt = (struct docker_target *)t;
	if (keep) {
		log_warn("keeping build container '%s' (--on-error=abort); remove it with the "
			 "Engine API or 'docker rm -f %s'",
			 dt->name, dt->name);
		imgf_event("kept", json_pack("{s:s,s:s}", "container", dt->name, "id", dt->id),
			   NULL);
	} else if (dt->id && *dt->id) {
		remove_container(dt->d, dt->id);
	}
	docker_free(dt->d);
	json_decref(dt->base_config);
	json_decref(dt->base_platform);
	free(dt->id);
	free(dt->name);
	free(dt->t.name);
	free(dt);
}

/* The image as GET /images/{id}/get streams it (what `docker save` writes). */
static int docker_image_save(struct imgf_build *b, const char *id, const char *out_tar,
			     struct imgf_error **err)
{
	struct docker *d = NULL;
	if (docker_connect(&d, err) < 0)
		return -1;
	FILE *f = fopen(out_tar, "wb");
	if (!f) {
		docker_free(d);
		return imgf_error_errno(err, errno, "create '%s'", out_tar);
	}
	_cleanup_free_ char *q = imgf_http_escaped(id);
	struct docker_call c = {
		.method = "GET",
		.on_data = file_sink,
		.opaque = f,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/images/%s/get", q);
	int r = docker_do(d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "save image '%s': docker engine answered %ld", id, c.status);
	if (fclose(f) != 0 && r == 0)
		r = imgf_error_errno(err, errno, "write '%s'", out_tar);
	call_release(&c);
	docker_free(d);
	if (r < 0)
		unlink(out_tar);
	return r;
}

static const struct imgf_builder_cache_ops docker_cache = {
	.base = docker_cache_base,
	.save = docker_cache_save,
	.adopt = docker_cache_adopt,
	.check = docker_cache_check,
	.drop = docker_cache_drop,
	.reuse = docker_cache_reuse,
	.load = docker_cache_load,
};

const struct imgf_builder_ops imgf_docker_builder = {
	.name = "docker",
	.keys = docker_keys,
	.validate = docker_validate,
	.prepare = docker_prepare,
	.commit = docker_commit,
	.cleanup = docker_cleanup,
	.cache = &docker_cache,
	.image_save = docker_image_save,
};
