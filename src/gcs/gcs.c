/*
 * The GCS JSON API client: the endpoint, object metadata, small reads and writes, listing
 * and deletion. Requests (retries, the token, capped replies) are in gcs-request.c,
 * authentication in gcs-auth.c, resumable uploads in gcs-upload.c and their digests in
 * gcs-hash.c, CRC-32C in crc32c.c.
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
#include "fetch.h"
#include "gcs-internal.h"
#include "gcs.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"

/* ---- the client ---- */

static char *object_url(const struct imgf_gcs *g, const char *bucket, const char *object)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s/storage/v1/b/", g->endpoint);
	imgf_http_escape(&sb, bucket, false);
	strbuf_addstr(&sb, "/o/");
	imgf_http_escape(&sb, object, false);
	return strbuf_detach(&sb, NULL);
}

static bool bucket_name_ok(const char *b, size_t n)
{
	if (n < 3 || n > 222)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

int imgf_gs_url_parse(const char *url, char **bucket, char **prefix, struct imgf_error **err)
{
	if (!str_has_prefix(url, "gs://"))
		return imgf_error_set(err, IMGF_EXIT_USAGE,
				      "'%s': expected a gs://BUCKET/PREFIX URL", url);
	const char *b = url + 5;
	const char *slash = strchr(b, '/');
	size_t n = slash ? (size_t)(slash - b) : strlen(b);
	if (!bucket_name_ok(b, n))
		return imgf_error_set(err, IMGF_EXIT_USAGE,
				      "'%s': bucket name '%.*s' is not valid (3 to 222 of a-z, "
				      "0-9, '-', '_', '.')",
				      url, (int)n, b);
	*bucket = xstrndup(b, n);
	*prefix = xstrdup(slash ? slash + 1 : "");
	return 0;
}

static char *endpoint_from(const char *v)
{
	char *e = strstr(v, "://") ? xstrdup(v) : xasprintf("http://%s", v);
	size_t n = strlen(e);
	while (n && e[n - 1] == '/')
		e[--n] = '\0';
	return e;
}

/* 0, the default: the whole file in one request (recovered from the server's offset when it
 * fails), which is what GCS recommends; a chunk size only for callers that need chunks. */
static int chunk_from_env(uint64_t *chunk, struct imgf_error **err)
{
	*chunk = 0;
	const char *v = getenv("IMGFORGE_UPLOAD_CHUNK");
	if (!v || !*v)
		return 0;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || v[0] == '-' || n == 0 || n % IMGF_GCS_CHUNK_QUANTUM ||
	    n > (1ULL << 32))
		return imgf_error_set(err, IMGF_EXIT_USAGE,
				      "IMGFORGE_UPLOAD_CHUNK '%s': expected a positive multiple of "
				      "%u bytes (at most 4 GiB)",
				      v, IMGF_GCS_CHUNK_QUANTUM);
	*chunk = n;
	return 0;
}

int imgf_gcs_open(const char *key_file, struct imgf_gcs **out, struct imgf_error **err)
{
	if (imgf_http_init(err) < 0)
		return -1;
	struct imgf_gcs *g = xcalloc(1, sizeof(*g));
	g->retry = imgf_http_retry_for(0, 0); /* the defaults: 5 attempts, IMGFORGE_RETRY_BASE_MS */
	if (chunk_from_env(&g->chunk, err) < 0)
		goto fail;

	const char *custom = getenv("IMGFORGE_GCS_ENDPOINT");
	const char *emulator = getenv("STORAGE_EMULATOR_HOST");
	const char *key =
		key_file && *key_file ? key_file : getenv("GOOGLE_APPLICATION_CREDENTIALS");
	if (key && !*key)
		key = NULL;
	if (custom && *custom) {
		g->endpoint = endpoint_from(custom);
		g->custom = true;
	} else if (emulator && *emulator) {
		g->endpoint = endpoint_from(emulator);
		g->custom = true;
		if (key)
			log_debug("STORAGE_EMULATOR_HOST is set: not using the key '%s'", key);
		key = NULL;
	} else {
		g->endpoint = xstrdup(IMGF_GCS_DEFAULT_ENDPOINT);
		if (!key) {
			imgf_error_set(err, IMGF_EXIT_USAGE,
				       "no credentials for %s: pass --key-file or set "
				       "GOOGLE_APPLICATION_CREDENTIALS (or STORAGE_EMULATOR_HOST "
				       "for an emulator)",
				       g->endpoint);
			goto fail;
		}
	}
	if (!str_has_prefix(g->endpoint, "http://") && !str_has_prefix(g->endpoint, "https://")) {
		imgf_error_set(err, IMGF_EXIT_USAGE,
			       "GCS endpoint '%s': expected http(s)://HOST[:PORT]", g->endpoint);
		goto fail;
	}
	g->token_fetch = imgf_gcs_token;
	if (key) {
		if (imgf_gcs_key_load(key, &g->key, err) < 0)
			goto fail;
		g->have_key = true;
		g->key_path = xstrdup(key);
	}
	g->easy = curl_easy_init();
	if (!g->easy) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "initialize a libcurl handle");
		goto fail;
	}
	log_debug("GCS endpoint %s (%s)", g->endpoint,
		  g->have_key ? "service-account key" : "no authentication");
	*out = g;
	return 0;
fail:
	imgf_gcs_free(g);
	return -1;
}

void imgf_gcs_free(struct imgf_gcs *g)
{
	if (!g)
		return;
	if (g->easy)
		curl_easy_cleanup(g->easy);
	free(g->endpoint);
	free(g->key_path);
	imgf_gcs_key_release(&g->key);
	if (g->token)
		OPENSSL_cleanse(g->token, strlen(g->token));
	free(g->token);
	free(g);
}

const char *imgf_gcs_endpoint(const struct imgf_gcs *g)
{
	return g->endpoint;
}

bool imgf_gcs_is_custom_endpoint(const struct imgf_gcs *g)
{
	return g->custom;
}

char *imgf_gcs_download_url(const struct imgf_gcs *g, const char *bucket, const char *object)
{
	struct strbuf sb = STRBUF_INIT;
	if (g->custom) {
		strbuf_addf(&sb, "%s/download/storage/v1/b/", g->endpoint);
		imgf_http_escape(&sb, bucket, false);
		strbuf_addstr(&sb, "/o/");
		imgf_http_escape(&sb, object, false);
		strbuf_addstr(&sb, "?alt=media");
	} else {
		strbuf_addf(&sb, "%s/", IMGF_GCS_DEFAULT_ENDPOINT);
		imgf_http_escape(&sb, bucket, false);
		strbuf_addch(&sb, '/');
		imgf_http_escape(&sb, object, true);
	}
	return strbuf_detach(&sb, NULL);
}

int imgf_gcs_bucket_check(struct imgf_gcs *g, const char *bucket, struct imgf_error **err)
{
	/* Listing needs only object permissions, unlike reading the bucket's metadata. */
	struct strbuf url = STRBUF_INIT;
	strbuf_addf(&url, "%s/storage/v1/b/", g->endpoint);
	imgf_http_escape(&url, bucket, false);
	strbuf_addstr(&url, "/o?maxResults=1");
	_cleanup_free_ char *what = xasprintf("gs://%s", bucket);
	struct http_req r;
	imgf_gcs_req_init(&r, "GET", strbuf_detach(&url, NULL), what);
	int ret = -1;
	if (imgf_gcs_request(g, &r, err) < 0)
		goto out;
	if (r.status == 404)
		imgf_error_set(err, IMGF_EXIT_FAIL, "bucket '%s' does not exist (at %s)", bucket,
			       g->endpoint);
	else if (r.status != 200)
		imgf_gcs_req_fail(g, &r, err);
	else
		ret = 0;
out:
	imgf_gcs_req_release(&r);
	return ret;
}

int imgf_gcs_stat(struct imgf_gcs *g, const char *bucket, const char *object, json_t **out,
		  struct imgf_error **err)
{
	*out = NULL;
	_cleanup_free_ char *what = imgf_gcs_gs_name(bucket, object);
	struct http_req r;
	imgf_gcs_req_init(&r, "GET", object_url(g, bucket, object), what);
	int ret = -1;
	if (imgf_gcs_request(g, &r, err) < 0)
		goto out;
	if (r.status == 404)
		ret = 0;
	else if (r.status != 200)
		imgf_gcs_req_fail(g, &r, err);
	else if ((*out = imgf_gcs_reply_json(&r, err)))
		ret = 0;
out:
	imgf_gcs_req_release(&r);
	return ret;
}

int imgf_gcs_get_small(struct imgf_gcs *g, const char *bucket, const char *object, size_t max,
		       struct strbuf *out, bool *found, struct imgf_error **err)
{
	*found = false;
	_cleanup_free_ char *what = imgf_gcs_gs_name(bucket, object);
	_cleanup_free_ char *base = object_url(g, bucket, object);
	struct http_req r;
	imgf_gcs_req_init(&r, "GET", xasprintf("%s?alt=media", base), what);
	r.resp_max = max;
	int ret = -1;
	if (imgf_gcs_request(g, &r, err) < 0)
		goto out;
	if (r.status == 404) {
		ret = 0;
	} else if (r.status != 200) {
		imgf_gcs_req_fail(g, &r, err);
	} else {
		strbuf_add(out, r.resp.buf, r.resp.len);
		*found = true;
		ret = 0;
	}
out:
	imgf_gcs_req_release(&r);
	return ret;
}

int imgf_gcs_list(struct imgf_gcs *g, const char *bucket, const char *prefix, json_t **items,
		  struct imgf_error **err)
{
	json_t *all = json_array();
	_cleanup_free_ char *token = NULL;
	_cleanup_free_ char *what = imgf_gcs_gs_name(bucket, prefix);
	for (;;) {
		struct strbuf url = STRBUF_INIT;
		strbuf_addf(&url, "%s/storage/v1/b/", g->endpoint);
		imgf_http_escape(&url, bucket, false);
		strbuf_addstr(&url, "/o?maxResults=1000&prefix=");
		imgf_http_escape(&url, prefix, false);
		if (token) {
			strbuf_addstr(&url, "&pageToken=");
			imgf_http_escape(&url, token, false);
		}
		struct http_req r;
		imgf_gcs_req_init(&r, "GET", strbuf_detach(&url, NULL), what);
		json_t *doc = NULL;
		int ok = imgf_gcs_request(g, &r, err) == 0;
		if (ok && r.status == 404) {
			imgf_error_set(err, IMGF_EXIT_FAIL, "bucket '%s' does not exist (at %s)",
				       bucket, g->endpoint);
			ok = 0;
		} else if (ok && r.status != 200) {
			imgf_gcs_req_fail(g, &r, err);
			ok = 0;
		}
		if (ok && !(doc = imgf_gcs_reply_json(&r, err)))
			ok = 0;
		imgf_gcs_req_release(&r);
		if (!ok) {
			json_decref(all);
			return -1;
		}
		json_t *page = json_object_get(doc, "items");
		if (page && !json_is_array(page)) {
			json_decref(doc);
			json_decref(all);
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "list '%s': 'items' in the reply is not a list",
					      what);
		}
		if (page)
			json_array_extend(all, page);
		const char *next = json_string_value(json_object_get(doc, "nextPageToken"));
		bool more = next && *next && (!token || strcmp(next, token) != 0);
		free(token);
		token = more ? xstrdup(next) : NULL;
		json_decref(doc);
		if (!more)
			break;
	}
	*items = all;
	return 0;
}

int imgf_gcs_delete(struct imgf_gcs *g, const char *bucket, const char *object,
		    struct imgf_error **err)
{
	_cleanup_free_ char *what = imgf_gcs_gs_name(bucket, object);
	struct http_req r;
	imgf_gcs_req_init(&r, "DELETE", object_url(g, bucket, object), what);
	int ret = -1;
	if (imgf_gcs_request(g, &r, err) < 0)
		goto out;
	if (r.status == 200 || r.status == 204 || r.status == 404)
		ret = 0;
	else
		imgf_gcs_req_fail(g, &r, err);
out:
	imgf_gcs_req_release(&r);
	return ret;
}

int imgf_gcs_put_small(struct imgf_gcs *g, const char *bucket, const char *object, const void *data,
		       size_t len, const char *content_type, struct imgf_error **err)
{
	_cleanup_free_ char *what = imgf_gcs_gs_name(bucket, object);
	struct http_req r;
	imgf_gcs_req_init(&r, "POST", imgf_gcs_upload_url(g, bucket, object, "media"), what);
	r.body = data;
	r.body_len = len;
	r.content_type = content_type;
	int ret = -1;
	json_t *doc = NULL;
	if (imgf_gcs_request(g, &r, err) < 0)
		goto out;
	if (r.status != 200 && r.status != 201) {
		imgf_gcs_req_fail(g, &r, err);
		goto out;
	}
	if (!(doc = imgf_gcs_reply_json(&r, err)))
		goto out;
	char want[25];
	imgf_gcs_md5_b64(data, len, want);
	const char *got = json_string_value(json_object_get(doc, "md5Hash"));
	if (!got || strcmp(got, want) != 0) {
		/* Without the server's md5 nothing says the object holds what was sent. */
		if (got)
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "write '%s': the server stored md5 %s, sent %s; deleted it",
				       what, got, want);
		else
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "write '%s': the server's reply has no md5Hash, so what it "
				       "stored is unverified; deleted it",
				       what);
		struct imgf_error *e2 = NULL;
		imgf_gcs_delete(g, bucket, object, &e2);
		imgf_error_free(e2);
		goto out;
	}
	ret = 0;
out:
	json_decref(doc);
	imgf_gcs_req_release(&r);
	return ret;
}
