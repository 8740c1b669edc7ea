/*
 * The docker builder's Docker Engine API client: calls over libcurl to the engine DOCKER_HOST
 * names (a unix socket, or tcp:// with TLS client certificates), with the API version
 * negotiated at connect. The builder's ops are in docker.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "error.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"
#include "builders/docker-internal.h"

#define DOCKER_API_MAX_MINOR 41 /* the newest API this client speaks: 1.41 */
#define DOCKER_REPLY_MAX (8u << 20)

/* ---- HTTP ------------------------------------------------------------------------------- */

void imgf_docker_free(struct docker *d)
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

int imgf_docker_call_error(struct docker_call *c, const char *what, struct imgf_error **err)
{
	json_t *j = json_loads(c->reply.buf, 0, NULL);
	const char *m = json_string_value(json_object_get(j, "message"));
	imgf_error_set(err, IMGF_EXIT_FAIL, "%s: docker engine answered %ld: %s", what, c->status,
		       m ? m : (c->reply.len ? c->reply.buf : "no message"));
	json_decref(j);
	return -1;
}

int imgf_docker_do(struct docker *d, struct docker_call *c, struct imgf_error **err)
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

void imgf_docker_call_release(struct docker_call *c)
{
	free(c->path);
	json_decref(c->body);
	strbuf_release(&c->reply);
}

/* runc's cgroup v1 freezer gives up ("unable to freeze") when a process does not stop in
 * time, as under heavy I/O on fuse-overlayfs; the engine then answers 500 and nothing has
 * changed, so a call that freezes the container is worth another attempt. */
static bool freeze_failed(const struct docker_call *c)
{
	return c->status == 500 && c->reply.buf && strstr(c->reply.buf, "unable to freeze");
}

static int docker_json_v(struct docker *d, const char *method, json_t *body, json_t **out,
			 long *status, bool freezes, struct imgf_error **err, const char *fmt,
			 va_list ap)
{
	_cleanup_free_ char *path = xvasprintf(fmt, ap);
	struct imgf_http_retry policy = imgf_http_retry_policy(freezes ? 5 : 1);
	struct docker_call c;
	int r;
	for (int attempt = 1;; attempt++) {
		c = (struct docker_call){.method = method,
					 .body = json_incref(body),
					 .path = xstrdup(path),
					 .reply = STRBUF_INIT};
		r = imgf_docker_do(d, &c, err);
		if (r < 0 || !freezes || !freeze_failed(&c) || attempt >= policy.max_attempts)
			break;
		long ms = imgf_http_retry_delay(&policy, attempt, -1);
		_cleanup_free_ char *what = xasprintf("%s %s", method, path);
		imgf_http_retry_log(&policy, attempt, ms, what,
				    "the engine could not freeze the container");
		imgf_docker_call_release(&c);
		if (imgf_sleep_ms(ms) < 0) {
			json_decref(body);
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		}
	}
	json_decref(body);
	if (r == 0) {
		if (status)
			*status = c.status;
		if (c.status >= 300 && !status) {
			_cleanup_free_ char *what = xasprintf("%s %s", method, c.path);
			r = imgf_docker_call_error(&c, what, err);
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
	imgf_docker_call_release(&c);
	return r;
}

int imgf_docker_json(struct docker *d, const char *method, json_t *body, json_t **out, long *status,
		     struct imgf_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = docker_json_v(d, method, body, out, status, false, err, fmt, ap);
	va_end(ap);
	return r;
}

int imgf_docker_json_freezing(struct docker *d, const char *method, json_t *body, json_t **out,
			      struct imgf_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = docker_json_v(d, method, body, out, NULL, true, err, fmt, ap);
	va_end(ap);
	return r;
}

/* ---- connecting --------------------------------------------------------------------------- */

int imgf_docker_connect(struct docker **out, struct imgf_error **err)
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
				imgf_docker_free(d);
				return -1;
			}
		}
	} else {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "DOCKER_HOST '%s': expected unix:///PATH or tcp://HOST:PORT", host);
		imgf_docker_free(d);
		return -1;
	}

	/* Negotiate: the engine's API version, capped at what this client speaks. */
	struct docker_call c = {.method = "GET", .unversioned = true, .reply = STRBUF_INIT};
	c.path = xstrdup("/version");
	int r = imgf_docker_do(d, &c, err);
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
	imgf_docker_call_release(&c);
	if (r < 0) {
		imgf_docker_free(d);
		return -1;
	}
	*out = d;
	return 0;
}

size_t imgf_docker_file_sink(void *opaque, const char *data, size_t len)
{
	return fwrite(data, 1, len, opaque);
}

size_t imgf_docker_pull_progress(void *opaque, const char *data, size_t len)
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
