/*
 * The GCS client's requests, as the HTTP layer's (http.h): the access token from the
 * client's token hook, only to the endpoint, a fresh one after a 401, capped replies and what
 * to say when a request fails. The client (gcs.c), its authentication (gcs-auth.c) and
 * resumable uploads (gcs-upload.c) are built on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base64.h"
#include "digest.h"
#include "error.h"
#include "gcs-internal.h"
#include "gcs.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"

char *imgf_gcs_gs_name(const char *bucket, const char *object)
{
	return xasprintf("gs://%s/%s", bucket, object);
}

/* ---- HTTP ---- */

void imgf_gcs_req_init(struct http_req *r, const char *method, char *url, const char *what)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->url = url;
	r->what = what;
	strbuf_init(&r->resp, 0);
	r->resp_max = RESP_MAX;
	r->range_end = -1;
	r->retry_after_s = -1;
	r->hdrs = (struct imgf_http_headers){.names = {"Location", "Range", "Retry-After"}};
}

void imgf_gcs_req_release(struct http_req *r)
{
	free(r->url);
	free(r->location);
	imgf_http_headers_reset(&r->hdrs);
	strbuf_release(&r->resp);
}

static void feed_hash(void *arg, uint64_t at, const char *buf, size_t n)
{
	imgf_gcs_upload_hash_feed(arg, at, buf, n);
}

/* curl's words for a transport failure, lowercased to read like ours. */
char *imgf_gcs_curl_reason(struct imgf_gcs *g, CURLcode rc)
{
	return imgf_http_curl_reason(g->errbuf, rc);
}

/* What a failed reply says: "HTTP 403: message" with the JSON API's error.message if any. */
char *imgf_gcs_http_reason(const struct http_req *r)
{
	json_t *doc = json_loadb(r->resp.buf, r->resp.len, 0, NULL);
	const char *msg = NULL;
	json_t *e = json_object_get(doc, "error");
	if (json_is_object(e))
		msg = json_string_value(json_object_get(e, "message"));
	else if (json_is_string(e)) /* OAuth: {"error":"invalid_grant","error_description":..} */
		msg = json_string_value(e);
	const char *desc = json_string_value(json_object_get(doc, "error_description"));
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "HTTP %ld", r->status);
	if (msg || desc) {
		strbuf_addstr(&sb, ": ");
		/* printable, bounded: this text comes from the network */
		char clean[240];
		snprintf(clean, sizeof(clean), "%s%s%s", msg ? msg : "", msg && desc ? ": " : "",
			 desc ? desc : "");
		for (char *p = clean; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
				*p = ' ';
		size_t n = strlen(clean);
		while (n && clean[n - 1] == '.')
			clean[--n] = '\0';
		strbuf_addstr(&sb, clean);
	}
	json_decref(doc);
	return strbuf_detach(&sb, NULL);
}

int imgf_gcs_req_fail(struct imgf_gcs *g, const struct http_req *r, struct imgf_error **err)
{
	if (r->rc == CURLE_ABORTED_BY_CALLBACK && imgf_interrupted)
		return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "%s '%s': interrupted", r->method,
				      r->what);
	if (r->rc != CURLE_OK) {
		_cleanup_free_ char *why = imgf_gcs_curl_reason(g, r->rc);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': %s", r->method, r->what, why);
	}
	_cleanup_free_ char *why = imgf_gcs_http_reason(r);
	return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': %s", r->method, r->what, why);
}

/* A GCS request as one of the HTTP layer's, and the hooks that tie it to the client. */
struct gcs_call {
	struct imgf_gcs *g;
	struct http_req *r;
	struct imgf_http_req q;
	struct imgf_http_resp resp;
	bool reauth; /* a 401 has fetched a new token */
};

/* Each attempt's headers: the token goes only to the endpoint, whatever a Location header
 * pointed at; no "Expect: 100-continue" round trip before each chunk. */
static int call_before(struct imgf_http_req *q, void *arg, struct imgf_error **err)
{
	struct gcs_call *c = arg;
	struct http_req *r = c->r;
	curl_slist_free_all(q->headers);
	q->headers = NULL;
	size_t elen = strlen(c->g->endpoint);
	bool to_endpoint = !strncmp(r->url, c->g->endpoint, elen) && r->url[elen] == '/';
	if (!r->no_auth && c->g->have_key && to_endpoint) {
		if (c->g->token_fetch(c->g, err) < 0)
			return -1;
		_cleanup_free_ char *h = xasprintf("Authorization: Bearer %s", c->g->token);
		imgf_http_header_add(&q->headers, "%s", h);
		OPENSSL_cleanse(h, strlen(h));
	}
	imgf_http_header_add(&q->headers, "Expect:");
	if (r->content_type)
		imgf_http_header_add(&q->headers, "Content-Type: %s", r->content_type);
	if (r->content_range)
		imgf_http_header_add(&q->headers, "Content-Range: %s", r->content_range);
	return 0;
}

static int call_after(struct imgf_http_req *q, struct imgf_http_resp *resp, void *arg,
		      struct imgf_error **err)
{
	struct gcs_call *c = arg;
	if (q->sink.overflow)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': reply larger than %zu bytes",
				      c->r->method, c->r->what, c->r->resp_max);
	if (resp->rc == CURLE_OK && resp->status == 401 && c->g->have_key && !c->reauth) {
		c->reauth = true;
		free(c->g->token);
		c->g->token = NULL;
		return IMGF_HTTP_AGAIN;
	}
	return IMGF_HTTP_POLICY;
}

static void call_init(struct gcs_call *c, struct imgf_gcs *g, struct http_req *r)
{
	memset(c, 0, sizeof(*c));
	c->g = g;
	c->r = r;
	r->resp.max = r->resp_max;
	c->q = (struct imgf_http_req){
		.method = r->method,
		.url = r->url,
		.what = r->what,
		.sink = {.kind = IMGF_HTTP_SINK_MEMORY, .buf = &r->resp},
		.reply_headers = &r->hdrs,
		/* 308 is "resume incomplete" here, never a redirect to follow. */
		.opts = {.errbuf = g->errbuf, .progress = &g->progress},
		.upload_buffer = 512L * 1024,
		.before = call_before,
		.after = call_after,
		.hook_arg = c,
	};
	if (r->fbody)
		c->q.body = (struct imgf_http_body){
			.kind = IMGF_HTTP_BODY_FILE,
			.fd = r->fbody->fd,
			.off = r->fbody->off,
			.len = (int64_t)r->fbody->len,
			.seen = feed_hash,
			.arg = r->fbody->h,
		};
	else if (r->body)
		c->q.body = (struct imgf_http_body){.kind = IMGF_HTTP_BODY_MEMORY,
						    .data = r->body,
						    .len = (int64_t)r->body_len};
}

/* The last attempt's outcome into r. */
static void call_finish(struct gcs_call *c)
{
	struct http_req *r = c->r;
	curl_slist_free_all(c->q.headers);
	c->q.headers = NULL;
	r->rc = c->resp.rc;
	r->status = c->resp.status;
	r->sent = c->resp.sent;
	if (r->fbody) {
		r->fbody->pos = c->q.body.pos;
		r->fbody->read_errno = c->q.body.read_errno;
		r->fbody->shrank = c->q.body.shrank;
	}
	free(r->location);
	const char *v = imgf_http_header_get(&r->hdrs, "Location");
	r->location = v ? xstrdup(v) : NULL;
	/* "Range: bytes=0-N": the server has bytes 0..N */
	r->range_end = -1;
	v = imgf_http_header_get(&r->hdrs, "Range");
	if (v && strncasecmp(v, "bytes=0-", 8) == 0 && v[8] >= '0' && v[8] <= '9')
		r->range_end = (int64_t)strtoull(v + 8, NULL, 10);
	r->retry_after_s = imgf_http_retry_after(&r->hdrs);
}

/* One attempt. Returns -1 only when the request could not be made (no token) or its reply
 * was too large; the outcome of the exchange itself is in r->rc and r->status. */
int imgf_gcs_perform(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err)
{
	struct gcs_call c;
	call_init(&c, g, r);
	int ret = imgf_http_perform(g->easy, &c.q, &c.resp, err);
	call_finish(&c);
	if (ret == 0 && c.q.sink.overflow)
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': reply larger than %zu bytes",
				     r->method, r->what, r->resp_max);
	return ret;
}

/*
 * A request with retries: transport failures and 408/429/5xx are retried with backoff; a
 * 401 with a key fetches a new token once. Returns 0 with r->status set to the final status
 * (callers decide which ones are errors), -1 when no reply came or it never succeeded.
 */
int imgf_gcs_request(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err)
{
	struct gcs_call c;
	call_init(&c, g, r);
	c.q.retry = &g->retry;
	c.q.retry_unsafe = true; /* a POST here starts a session or writes a whole object */
	int ret = imgf_http_do(g->easy, &c.q, &c.resp, err);
	call_finish(&c);
	if (ret < 0)
		return -1;
	if (c.resp.rc != CURLE_OK || c.resp.exhausted)
		return imgf_gcs_req_fail(g, r, err);
	return 0;
}

json_t *imgf_gcs_reply_json(const struct http_req *r, struct imgf_error **err)
{
	json_t *doc = json_loadb(r->resp.buf, r->resp.len, 0, NULL);
	if (!json_is_object(doc)) {
		json_decref(doc);
		imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': the reply is not a JSON object",
			       r->method, r->what);
		return NULL;
	}
	return doc;
}

char *imgf_gcs_upload_url(const struct imgf_gcs *g, const char *bucket, const char *object,
			  const char *type)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s/upload/storage/v1/b/", g->endpoint);
	imgf_http_escape(&sb, bucket, false);
	strbuf_addf(&sb, "/o?uploadType=%s&name=", type);
	imgf_http_escape(&sb, object, false);
	return strbuf_detach(&sb, NULL);
}

void imgf_gcs_md5_b64(const void *data, size_t len, char out[25])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1)
		abort();
	_cleanup_free_ char *s = imgf_base64_encode(md, n);
	snprintf(out, 25, "%s", s);
}
