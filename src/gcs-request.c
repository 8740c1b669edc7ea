/*
 * The GCS client's requests: URLs and escaping, one attempt (the access token from the
 * client's token hook, only to the endpoint), retries with backoff, capped replies and what
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

/* ---- small helpers ---- */

/* Percent-encode everything but RFC 3986's unreserved characters (and '/' when keep_slash). */
void imgf_gcs_url_escape(struct strbuf *sb, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
			strbuf_addch(sb, c);
		} else {
			strbuf_addch(sb, '%');
			strbuf_addch(sb, hex[c >> 4]);
			strbuf_addch(sb, hex[c & 15]);
		}
	}
}

char *imgf_gcs_gs_name(const char *bucket, const char *object)
{
	return xasprintf("gs://%s/%s", bucket, object);
}

/* ---- gs:// URLs ---- */

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

static size_t on_read(char *buf, size_t size, size_t nitems, void *userp)
{
	struct http_req *r = userp;
	size_t want = size * nitems;
	if (!r->fbody) {
		size_t n = r->body_len - r->body_pos;
		if (n > want)
			n = want;
		if (n)
			memcpy(buf, (const char *)r->body + r->body_pos, n);
		r->body_pos += n;
		return n;
	}
	struct file_body *fb = r->fbody;
	uint64_t left = fb->len - fb->pos;
	size_t n = left < want ? (size_t)left : want;
	if (!n)
		return 0;
	ssize_t got;
	do
		got = pread(fb->fd, buf, n, (off_t)(fb->off + fb->pos));
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		fb->read_errno = errno;
		return CURL_READFUNC_ABORT;
	}
	if (got == 0) {
		fb->shrank = true;
		return CURL_READFUNC_ABORT;
	}
	imgf_gcs_upload_hash_feed(fb->h, fb->off + fb->pos, buf, (size_t)got);
	fb->pos += (uint64_t)got;
	return (size_t)got;
}

/* An attempt failed in a way worth another: the connection, a timeout, 408/429/5xx. */
static bool req_retryable(const struct http_req *r)
{
	if (r->rc != CURLE_OK)
		return imgf_retry_transport(r->rc);
	return imgf_retry_status(r->status);
}

long imgf_gcs_retry_delay_ms(struct imgf_gcs *g, int attempt, long retry_after_s)
{
	return imgf_retry_delay_ms(g->retry_base_ms, attempt, retry_after_s);
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

/* One attempt. Returns -1 only when the request could not be made (no token); the outcome
 * of the exchange itself is in r->rc and r->status. */
int imgf_gcs_perform(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err)
{
	struct curl_slist *hdrs = NULL;
	/* The token goes only to the endpoint, whatever a Location header pointed at. */
	size_t elen = strlen(g->endpoint);
	bool to_endpoint = !strncmp(r->url, g->endpoint, elen) && r->url[elen] == '/';
	if (!r->no_auth && g->have_key && to_endpoint) {
		if (g->token_fetch(g, err) < 0)
			return -1;
		_cleanup_free_ char *h = xasprintf("Authorization: Bearer %s", g->token);
		hdrs = curl_slist_append(hdrs, h);
		OPENSSL_cleanse(h, strlen(h));
	}
	/* No "Expect: 100-continue" round trip before each chunk. */
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (r->content_type) {
		_cleanup_free_ char *h = xasprintf("Content-Type: %s", r->content_type);
		hdrs = curl_slist_append(hdrs, h);
	}
	if (r->content_range) {
		_cleanup_free_ char *h = xasprintf("Content-Range: %s", r->content_range);
		hdrs = curl_slist_append(hdrs, h);
	}

	CURL *e = g->easy;
	curl_easy_reset(e);
	strbuf_reset(&r->resp);
	r->resp.max = r->resp_max;
	r->resp.overflow = 0;
	free(r->location);
	r->location = NULL;
	r->range_end = -1;
	r->retry_after_s = -1;
	r->status = 0;
	r->sent = 0;
	r->body_pos = 0;

	/* 308 is "resume incomplete" here, never a redirect to follow. */
	struct imgf_http_opts ho = {.errbuf = g->errbuf, .progress = &g->progress};
	imgf_http_setup(e, &ho);
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, imgf_http_write_strbuf);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->resp);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, imgf_http_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &r->hdrs);
	curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);

	bool has_body = r->fbody || r->body || r->content_range;
	uint64_t body_len = r->fbody ? r->fbody->len : r->body_len;
	if (!strcmp(r->method, "GET")) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_len);
	} else if (!strcmp(r->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	} else {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (has_body || !strcmp(r->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, r);
	}

	r->rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	/* What the body handed to the transport: curl's own count restarts when it tries to
	 * rewind a body on a dead connection, so this one (never less) is reported. */
	curl_off_t up = 0;
	curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &up);
	r->sent = r->fbody ? r->fbody->pos : r->body_pos;
	if (up > 0 && (uint64_t)up > r->sent)
		r->sent = (uint64_t)up;
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	const char *v = imgf_http_header_get(&r->hdrs, "Location");
	r->location = v ? xstrdup(v) : NULL;
	/* "Range: bytes=0-N": the server has bytes 0..N */
	v = imgf_http_header_get(&r->hdrs, "Range");
	if (v && strncasecmp(v, "bytes=0-", 8) == 0 && v[8] >= '0' && v[8] <= '9')
		r->range_end = (int64_t)strtoull(v + 8, NULL, 10);
	r->retry_after_s = imgf_http_retry_after(&r->hdrs);
	if (r->rc == CURLE_WRITE_ERROR && r->resp.overflow)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': reply larger than %zu bytes",
				      r->method, r->what, r->resp_max);
	return 0;
}

/*
 * A request with retries: transport failures and 408/429/5xx are retried with backoff; a
 * 401 with a key fetches a new token once. Returns 0 with r->status set to the final status
 * (callers decide which ones are errors), -1 when no reply came or it never succeeded.
 */
int imgf_gcs_request(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err)
{
	bool reauth = false;
	for (int attempt = 1;; attempt++) {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "%s '%s': interrupted",
					      r->method, r->what);
		if (imgf_gcs_perform(g, r, err) < 0)
			return -1;
		if (r->rc == CURLE_OK && r->status == 401 && g->have_key && !reauth) {
			reauth = true;
			free(g->token);
			g->token = NULL;
			attempt--;
			continue;
		}
		if (!req_retryable(r))
			break;
		if (attempt >= MAX_ATTEMPTS)
			return imgf_gcs_req_fail(g, r, err);
		struct imgf_http_retry policy = {MAX_ATTEMPTS, g->retry_base_ms};
		long delay = imgf_http_retry_delay(&policy, attempt, r->retry_after_s);
		_cleanup_free_ char *why = r->rc != CURLE_OK ? imgf_gcs_curl_reason(g, r->rc)
							     : xasprintf("HTTP %ld", r->status);
		_cleanup_free_ char *prefix = xasprintf("%s '%s'", r->method, r->what);
		imgf_http_retry_log(&policy, attempt, delay, prefix, why);
		if (imgf_sleep_ms(delay) < 0)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "%s '%s': interrupted",
					      r->method, r->what);
	}
	if (r->rc != CURLE_OK)
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
	imgf_gcs_url_escape(&sb, bucket, false);
	strbuf_addf(&sb, "/o?uploadType=%s&name=", type);
	imgf_gcs_url_escape(&sb, object, false);
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
