/*
 * The push's registry client: URLs, auth challenges and credentials, requests (the HTTP
 * layer's), blob HEAD/mount/upload, and manifest PUTs and GETs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "base64.h"
#include "digest.h"
#include "error.h"
#include "fetch.h" /* imgf_url_unauthenticated */
#include "http.h"
#include "imageref.h"
#include "log.h"
#include "regauth.h"
#include "regpush-internal.h"
#include "regpush.h"
#include "strbuf.h"
#include "util.h"

#define ERRBODY_MAX 4096

/* ---- URLs and JSON ---------------------------------------------------------------------- */

char *imgf_reg_upload_url(const char *base, const char *location, const char *digest)
{
	CURLU *u = curl_url();
	char *out = NULL, *s = NULL;
	_cleanup_free_ char *q = digest ? xasprintf("digest=%s", digest) : NULL;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
	    (!q || curl_url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) ==
			   CURLUE_OK) &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = xstrdup(s);
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

char *imgf_reg_mount_url(const char *base, const char *repo, const char *digest, const char *from)
{
	if (!from)
		return xasprintf("%s/v2/%s/blobs/uploads/", base, repo);
	return xasprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", base, repo, digest, from);
}

char *imgf_reg_index_json(const struct imgf_index_entry *e, size_t n, struct imgf_error **err)
{
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(e[i].os, e[j].os) &&
			    !strcmp(e[i].architecture, e[j].architecture) &&
			    !strcmp(e[i].variant ? e[i].variant : "",
				    e[j].variant ? e[j].variant : "")) {
				json_decref(list);
				imgf_error_set(
					err, IMGF_EXIT_FAIL,
					"images %zu (%s) and %zu (%s) are both for %s/%s%s%s",
					j + 1, e[j].digest, i + 1, e[i].digest, e[i].os,
					e[i].architecture, e[i].variant ? "/" : "",
					e[i].variant ? e[i].variant : "");
				return NULL;
			}
		}
		json_t *plat =
			json_pack("{s:s,s:s}", "architecture", e[i].architecture, "os", e[i].os);
		if (e[i].variant)
			json_object_set_new(plat, "variant", json_string(e[i].variant));
		json_array_append_new(list,
				      json_pack("{s:s,s:s,s:I,s:o}", "mediaType", e[i].media_type,
						"digest", e[i].digest, "size",
						(json_int_t)e[i].size, "platform", plat));
	}
	json_t *root = json_pack("{s:i,s:s,s:o}", "schemaVersion", 2, "mediaType", MT_OCI_INDEX,
				 "manifests", list);
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}

bool imgf_reg_repository_valid(const char *repo)
{
	if (!repo || !*repo || strchr(repo, ':') || strchr(repo, '@'))
		return false;
	_cleanup_free_ char *ref = xasprintf("localhost/%s", repo);
	struct imgf_image_ref r;
	struct imgf_error *e = NULL;
	if (imgf_image_ref_parse(ref, &r, &e) < 0) {
		imgf_error_free(e);
		return false;
	}
	bool ok = !strcmp(r.repository, repo);
	imgf_image_ref_release(&r);
	return ok;
}

/* ---- the client ------------------------------------------------------------------------- */

struct request {
	const char *method; /* GET, HEAD, POST, PUT */
	const char *url;
	const char *content_type;
	const char *accept;
	const void *data; /* a body in memory */
	size_t len;
	const char *path; /* or a body from a file */
	uint64_t size;
	const char *label;  /* progress bar */
	bool once;	    /* not retried (an upload's PUT consumes its session) */
	const char *auth;   /* an Authorization header instead of the client's */
	struct strbuf *out; /* the 2xx body (capped by its max), or NULL */
};

struct reply {
	long status;
	CURLcode cc; /* the last attempt's transfer result */
	struct imgf_http_headers h;
	struct strbuf body; /* a non-2xx body, for the registry's message */
	curl_off_t content_length;
};

#define REPLY_INIT                                                                       \
	{                                                                                \
		.h = {.names = {"Location", "WWW-Authenticate", "Docker-Content-Digest", \
				"Content-Type", "Retry-After"}},                         \
		.body = STRBUF_INIT                                                      \
	}

static void reply_release(struct reply *r)
{
	imgf_http_headers_reset(&r->h);
	strbuf_release(&r->body);
}

static char *status_text(const struct reply *r)
{
	_cleanup_free_ char *detail = imgf_reg_error_text(&r->body);
	return detail ? xasprintf("HTTP %ld (%s)", r->status, detail)
		      : xasprintf("HTTP %ld", r->status);
}

static int read_creds(struct client *c, struct imgf_error **err)
{
	if (c->creds_read)
		return 0;
	c->creds_read = true;
	if (!c->auth_file)
		return 0;
	int r = imgf_reg_auth_lookup(c->auth_file, c->registry, &c->user, &c->password, err);
	if (r > 0)
		log_debug("registry '%s': credentials of user '%s' from '%s'", c->registry, c->user,
			  c->auth_file);
	return r < 0 ? -1 : 0;
}

static char *basic_header(const char *user, const char *password)
{
	_cleanup_free_ char *up = xasprintf("%s:%s", user, password);
	_cleanup_free_ char *b = imgf_base64_encode(up, strlen(up));
	return xasprintf("Authorization: Basic %s", b);
}

static int request(struct client *c, const struct request *q, struct reply *r,
		   struct imgf_error **err);

/* The token a bearer challenge's realm gives for every scope this push needs. */
static int fetch_token(struct client *c, const struct imgf_reg_challenge *ch,
		       struct imgf_error **err)
{
	if (!ch->realm ||
	    !(str_has_prefix(ch->realm, "https://") || str_has_prefix(ch->realm, "http://")))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "bearer challenge without an http(s) realm");
	if (read_creds(c, err) < 0)
		return -1;
	if (imgf_url_unauthenticated(ch->realm)) {
		if (c->user)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "token endpoint '%s' is plain http: the credentials "
					      "of '%s' are not sent over it",
					      ch->realm, c->user);
		log_warn("registry token endpoint '%s' is plain http: the token and what it "
			 "grants rest on an unauthenticated connection",
			 ch->realm);
	}
	struct strbuf url = STRBUF_INIT;
	strbuf_addstr(&url, ch->realm);
	char sep = strchr(ch->realm, '?') ? '&' : '?';
	if (ch->service) {
		strbuf_addf(&url, "%cservice=", sep);
		imgf_http_escape(&url, ch->service, false);
		sep = '&';
	}
	for (size_t i = 0; c->scopes[i]; i++) {
		strbuf_addf(&url, "%cscope=", sep);
		imgf_http_escape(&url, c->scopes[i], false);
		sep = '&';
	}
	_cleanup_free_ char *basic = c->user ? basic_header(c->user, c->password) : NULL;
	struct strbuf body = STRBUF_INIT;
	body.max = DOC_MAX;
	struct request q = {.method = "GET",
			    .url = url.buf,
			    .accept = "application/json",
			    .auth = basic ? basic : "Authorization:",
			    .out = &body};
	struct reply rep = REPLY_INIT;
	int ret = request(c, &q, &rep, err);
	if (ret < 0) {
		imgf_error_prefix(err, "token from '%s'%s%s%s", ch->realm,
				  c->user ? " for user '" : "", c->user ? c->user : "",
				  c->user ? "'" : "");
		goto out;
	}
	json_t *root = json_loadb(body.buf, body.len, 0, NULL);
	const char *tok = json_string_value(json_object_get(root, "token"));
	if (!tok || !*tok)
		tok = json_string_value(json_object_get(root, "access_token"));
	if (!tok || !*tok)
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "token reply from '%s' has no 'token' or 'access_token'",
				     ch->realm);
	else if (strcspn(tok, "\r\n") != strlen(tok))
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "token reply from '%s' is malformed",
				     ch->realm);
	else {
		free(c->auth);
		c->auth = xasprintf("Authorization: Bearer %s", tok);
	}
	json_decref(root);
out:
	reply_release(&rep);
	strbuf_release(&body);
	strbuf_release(&url);
	return ret;
}

static int answer_challenge(struct client *c, const char *www, struct imgf_error **err)
{
	struct imgf_reg_challenge ch;
	if (imgf_reg_challenge_parse(www, &ch) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "unparsable WWW-Authenticate challenge '%s'", www);
	int ret = 0;
	if (!strcasecmp(ch.scheme, "Bearer")) {
		ret = fetch_token(c, &ch, err);
	} else if (!strcasecmp(ch.scheme, "Basic")) {
		if (read_creds(c, err) < 0)
			ret = -1;
		else if (!c->user && c->auth_file)
			ret = imgf_error_set(err, IMGF_EXIT_FAIL,
					     "registry '%s' asks for a user and password, and '%s' "
					     "has none for it",
					     c->registry, c->auth_file);
		else if (!c->user)
			ret = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"registry '%s' asks for a user and password, and there "
				"is no docker config.json to take them from "
				"(post-processor key 'auth_file', --auth-file, or "
				"$DOCKER_CONFIG/config.json)",
				c->registry);
		else if (!str_has_prefix(c->base, "https://") &&
			 !imgf_registry_is_loopback(c->registry))
			ret = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"registry '%s' is plain http: credentials are not sent",
				c->registry);
		else {
			free(c->auth);
			c->auth = basic_header(c->user, c->password);
		}
	} else {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "registry asks for '%s' authentication; only Basic and "
				     "Bearer are supported",
				     ch.scheme);
	}
	imgf_reg_challenge_release(&ch);
	return ret;
}

/* A request as the HTTP layer's, and the hooks that tie it to the client. */
struct call {
	struct client *c;
	const struct request *q;
	struct reply *r;
	bool answered; /* a challenge was answered (a token request answers none) */
};

/* Each attempt carries the authorization held now. */
static int call_before(struct imgf_http_req *h, void *arg, struct imgf_error **err)
{
	(void)err;
	struct call *k = arg;
	const struct request *q = k->q;
	curl_slist_free_all(h->headers);
	h->headers = NULL;
	const char *auth = q->auth ? q->auth : k->c->auth;
	if (auth)
		imgf_http_header_add(&h->headers, "%s", auth);
	if (q->content_type)
		imgf_http_header_add(&h->headers, "Content-Type: %s", q->content_type);
	else if (strcmp(q->method, "GET") != 0 && strcmp(q->method, "HEAD") != 0)
		imgf_http_header_add(&h->headers, "Content-Type:");
	if (q->accept)
		imgf_http_header_add(&h->headers, "Accept: %s", q->accept);
	return 0;
}

static int call_after(struct imgf_http_req *h, struct imgf_http_resp *resp, void *arg,
		      struct imgf_error **err)
{
	struct call *k = arg;
	if (k->q->label && imgf_log_progress_enabled())
		imgf_progress_done();
	const char *www = imgf_http_header_get(h->reply_headers, "WWW-Authenticate");
	if (resp->rc != CURLE_OK || resp->status != 401 || !www || k->answered)
		return IMGF_HTTP_POLICY;
	k->answered = true;
	_cleanup_free_ char *challenge = xstrdup(www);
	if (answer_challenge(k->c, challenge, err) < 0)
		return imgf_error_prefix(err, "%s '%s'", k->q->method, k->q->url);
	return IMGF_HTTP_AGAIN;
}

static char *call_why(struct imgf_http_req *h, struct imgf_http_resp *resp, void *arg)
{
	(void)h;
	struct call *k = arg;
	k->r->status = resp->status;
	return status_text(k->r);
}

/*
 * One request: a 401 challenge answered once (the request then repeated), 408/429/5xx and
 * transport failures retried with backoff unless q->once. Any final status is returned in r
 * for the caller to judge, but a 401 after the challenge was answered is an error.
 */
static int request(struct client *c, const struct request *q, struct reply *r,
		   struct imgf_error **err)
{
	static const struct imgf_http_retry once = {.max_attempts = 1};
	struct call k = {.c = c, .q = q, .r = r, .answered = q->auth != NULL};
	struct imgf_http_progress prog = {.label = q->label, .upload = true, .total = q->size};
	struct imgf_http_req h = {
		.method = q->method,
		.url = q->url,
		.sink = {.kind = q->out ? IMGF_HTTP_SINK_MEMORY : IMGF_HTTP_SINK_DISCARD,
			 .buf = q->out,
			 .errbody = &r->body,
			 .errbody_max = ERRBODY_MAX},
		.reply_headers = &r->h,
		/* A blob GET may be sent on to storage (S3, a CDN); our Authorization stays
		 * behind. */
		.opts = {.redir_protocols = !strcmp(q->method, "GET") ? "http,https" : NULL,
			 .tls_ca = c->o->ca_file,
			 .tls_no_verify = c->o->tls_no_verify,
			 .no_proxy = c->no_proxy,
			 .progress = &prog},
		.retry = q->once ? &once : &c->retry,
		.retry_unsafe = true, /* a POST starts an upload session: another is harmless */
		.before = call_before,
		.after = call_after,
		.why = call_why,
		.hook_arg = &k,
	};
	_cleanup_close_ int fd = -1;
	if (q->path && strcmp(q->method, "HEAD") != 0) {
		if ((fd = open(q->path, O_RDONLY | O_CLOEXEC)) < 0)
			return imgf_error_errno(err, errno, "open '%s'", q->path);
		h.body = (struct imgf_http_body){
			.kind = IMGF_HTTP_BODY_FILE, .fd = fd, .len = (int64_t)q->size};
	} else if (strcmp(q->method, "GET") != 0 && strcmp(q->method, "HEAD") != 0) {
		h.body = (struct imgf_http_body){.kind = IMGF_HTTP_BODY_MEMORY,
						 .data = q->data ? q->data : "",
						 .len = (int64_t)q->len};
	}
	struct imgf_http_resp resp = {0};
	int ret = imgf_http_do(c->curl, &h, &resp, err);
	curl_slist_free_all(h.headers);
	r->cc = resp.rc;
	r->status = resp.status;
	r->content_length = resp.content_length;
	if (ret < 0)
		return -1;
	if (resp.interrupted)
		return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "%s '%s': interrupted", q->method,
				      q->url);
	if (resp.rc == CURLE_WRITE_ERROR && h.sink.overflow)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': reply larger than %zu bytes",
				      q->method, q->url, q->out->max);
	if (h.body.read_errno)
		return imgf_error_errno(err, h.body.read_errno, "%s '%s': read '%s'", q->method,
					q->url, q->path);
	if (h.body.shrank)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s '%s': '%s' shrank while it was being uploaded", q->method,
				      q->url, q->path);
	if (resp.rc != CURLE_OK) {
		_cleanup_free_ char *why = imgf_http_resp_reason(&resp);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': %s%s", q->method, q->url, why,
				      resp.attempts > 1 ? " (after retries)" : "");
	}
	if (r->status == 401) {
		_cleanup_free_ char *st = status_text(r);
		_cleanup_free_ char *who =
			c->user ? xasprintf("the credentials of user '%s'", c->user)
				: xstrdup("anonymous access");
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': %s: %s refused %s", q->method,
				      q->url, st, q->auth ? "the token endpoint" : "the registry",
				      who);
	}
	return 0;
}

/* An error for an unexpected final status. */
static int unexpected(const struct request *q, const struct reply *r, const char *want,
		      struct imgf_error **err)
{
	_cleanup_free_ char *st = status_text(r);
	return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': %s, expected %s", q->method, q->url,
			      st, want);
}

void imgf_regc_release(struct client *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->registry);
	free(c->base);
	strv_free(c->scopes);
	free(c->auth);
	free(c->auth_file);
	free(c->user);
	if (c->password)
		OPENSSL_cleanse(c->password, strlen(c->password));
	free(c->password);
	free(c->no_proxy);
	memset(c, 0, sizeof(*c));
}

int imgf_regc_init(struct client *c, const char *registry, const struct imgf_push_opts *o,
		   struct imgf_error **err)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	if (o->auth_file && access(o->auth_file, R_OK) < 0)
		return imgf_error_errno(err, errno, "registry credentials '%s'", o->auth_file);
	c->curl = imgf_http_easy_new(NULL, err);
	if (!c->curl)
		return -1;
	c->registry = xstrdup(registry);
	const char *host = !strcmp(registry, "docker.io") ? "registry-1.docker.io" : registry;
	bool plain = imgf_registry_is_loopback(registry);
	c->base = xasprintf("%s://%s", plain ? "http" : "https", host);
	c->scopes = xcalloc(1, sizeof(*c->scopes));
	c->auth_file = o->auth_file ? xstrdup(o->auth_file) : imgf_reg_auth_file_default();
	c->no_proxy = imgf_http_no_proxy_loopback();
	c->retry = imgf_http_retry_for(o->max_attempts, o->retry_base_ms);
	if (!plain && o->tls_no_verify)
		imgf_reg_tls_unverified_warn(registry);
	return 0;
}

void imgf_regc_scope(struct client *c, const char *repo, bool push)
{
	c->scopes = strv_push(c->scopes,
			      xasprintf("repository:%s:%s", repo, push ? "pull,push" : "pull"));
}

/* ---- blobs and manifests ---------------------------------------------------------------- */

/* Whether the repository has the blob (HEAD): 1 yes, 0 no. */
static int blob_exists(struct client *c, const char *repo, const struct blob *b,
		       struct imgf_error **err)
{
	_cleanup_free_ char *url = xasprintf("%s/v2/%s/blobs/%s", c->base, repo, b->digest);
	struct request q = {.method = "HEAD", .url = url};
	struct reply r = REPLY_INIT;
	int ret = request(c, &q, &r, err);
	if (ret == 0) {
		if (r.status == 200)
			ret = r.content_length < 0 || (uint64_t)r.content_length == b->size;
		else if (r.status == 404)
			ret = 0;
		else
			ret = unexpected(&q, &r, "200 or 404", err);
		if (ret == 0 && r.status == 200)
			log_warn("registry '%s': blob %s is there with %lld bytes, not %llu: "
				 "uploading it again",
				 c->registry, b->digest, (long long)r.content_length,
				 (unsigned long long)b->size);
	}
	reply_release(&r);
	return ret;
}

/* Cancel an upload session we will not finish (best effort). */
static void upload_cancel(struct client *c, const char *location)
{
	_cleanup_free_ char *url = imgf_reg_upload_url(c->base, location, NULL);
	if (!url)
		return;
	struct request q = {.method = "DELETE", .url = url, .once = true};
	struct reply r = REPLY_INIT;
	struct imgf_error *e = NULL;
	request(c, &q, &r, &e);
	imgf_error_free(e);
	reply_release(&r);
}

/*
 * Start an upload of blob b into `repo` (POST), or mount it from `from` when that is not
 * NULL: 1 when the registry mounted it, 0 and *put the URL to PUT the bytes to.
 */
static int blob_session(struct client *c, const char *repo, const struct blob *b, const char *from,
			bool must_mount, char **put, struct imgf_error **err)
{
	_cleanup_free_ char *url = imgf_reg_mount_url(c->base, repo, b->digest, from);
	struct request q = {.method = "POST", .url = url};
	struct reply r = REPLY_INIT;
	int ret = request(c, &q, &r, err);
	if (ret < 0)
		goto out;
	if (from && r.status == 201) {
		ret = 1;
		goto out;
	}
	const char *loc = imgf_http_header_get(&r.h, "Location");
	if (r.status != 202 || !loc) {
		ret = unexpected(
			&q, &r,
			from ? "201 (mounted) or 202 with a Location" : "202 with a Location", err);
	} else if (must_mount) {
		upload_cancel(c, loc);
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "registry '%s' did not mount %s from '%s' into '%s'",
				     c->registry, b->digest, from, repo);
	} else if (!(*put = imgf_reg_upload_url(c->base, loc, b->digest))) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "POST '%s': unusable Location '%s'", url,
				     loc);
	}
out:
	reply_release(&r);
	return ret;
}

/* The bytes of b in one PUT to `put`; *cc and *status say how a failure came about. */
static int blob_put(struct client *c, const struct blob *b, const char *put, CURLcode *cc,
		    long *status, struct imgf_error **err)
{
	_cleanup_free_ char *label = xasprintf("push %.19s", b->digest);
	struct request q = {.method = "PUT",
			    .url = put,
			    .content_type = "application/octet-stream",
			    .data = b->data,
			    .len = b->data ? b->size : 0,
			    .path = b->path,
			    .size = b->size,
			    .label = b->path ? label : NULL,
			    .once = true};
	struct reply r = REPLY_INIT;
	int ret = request(c, &q, &r, err);
	*cc = r.cc;
	*status = r.status;
	if (ret == 0 && r.status != 201)
		ret = unexpected(&q, &r, "201", err);
	const char *said = imgf_http_header_get(&r.h, "Docker-Content-Digest");
	if (ret == 0 && said && strcmp(said, b->digest) != 0)
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "PUT '%s': the registry stored %s as %s",
				     put, b->digest, said);
	reply_release(&r);
	return ret;
}

/*
 * Put one blob into `repo`: nothing when it is there, a mount from `from` when the registry
 * allows it, else a POST and one monolithic PUT. A PUT that fails in a way worth another try
 * (a dropped connection, 5xx) starts over with a new upload, as its session may be gone.
 * `from` may be NULL.
 */
int imgf_regc_push_blob(struct client *c, const char *repo, const struct blob *b, const char *from,
			bool must_mount, struct imgf_push_stats *st, struct imgf_error **err)
{
	int have = blob_exists(c, repo, b, err);
	if (have < 0)
		return imgf_error_prefix(err, "%s %s", b->what, b->digest);
	if (st)
		st->blobs++;
	if (have) {
		log_debug("%s %s: already in '%s'", b->what, b->digest, repo);
		if (st)
			st->existed++;
		return 0;
	}
	for (int attempt = 1;; attempt++) {
		_cleanup_free_ char *put = NULL;
		int m = blob_session(c, repo, b, from, must_mount, &put, err);
		if (m < 0)
			break;
		if (m > 0) {
			log_debug("%s %s: mounted from '%s'", b->what, b->digest, from);
			if (st)
				st->mounted++;
			return 0;
		}
		CURLcode cc = CURLE_OK;
		long status = 0;
		if (blob_put(c, b, put, &cc, &status, err) == 0) {
			log_debug("%s %s: uploaded %llu bytes", b->what, b->digest,
				  (unsigned long long)b->size);
			if (st) {
				st->uploaded++;
				st->bytes_uploaded += b->size;
			}
			return 0;
		}
		long wait;
		if (imgf_interrupted || !imgf_http_retry_failure(cc, status) ||
		    imgf_http_retry_next(&c->retry, attempt, -1, 0, &wait) != IMGF_HTTP_RETRY_WAIT)
			break;
		_cleanup_free_ char *why = xstrdup(err && *err ? (*err)->msg : "failed");
		imgf_error_clear(err);
		_cleanup_free_ char *prefix = xasprintf("upload of %s %s", b->what, b->digest);
		imgf_http_retry_log(&c->retry, attempt, wait, prefix, why);
		if (imgf_sleep_ms(wait) < 0)
			break;
	}
	return imgf_error_prefix(err, "%s %s", b->what, b->digest);
}

int imgf_regc_put_manifest(struct client *c, const char *repo, const char *reference,
			   const char *media_type, const char *json, char digest[72],
			   struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, json, strlen(json), hex);
	snprintf(digest, 72, "sha256:%.64s", hex);
	_cleanup_free_ char *url = xasprintf("%s/v2/%s/manifests/%s", c->base, repo, reference);
	struct request q = {.method = "PUT",
			    .url = url,
			    .content_type = media_type,
			    .data = json,
			    .len = strlen(json)};
	struct reply r = REPLY_INIT;
	int ret = request(c, &q, &r, err);
	if (ret == 0 && r.status != 201)
		ret = unexpected(&q, &r, "201", err);
	const char *said = imgf_http_header_get(&r.h, "Docker-Content-Digest");
	if (ret == 0 && said && strcmp(said, digest) != 0)
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "PUT '%s': the registry stored the manifest %s as %s", url,
				     digest, said);
	reply_release(&r);
	return ret;
}

/* GET a manifest or blob (small) into out, checking its sha256 against `want` when given. */
int imgf_regc_get_doc(struct client *c, const char *url, const char *accept, const char *want,
		      struct strbuf *out, char **content_type, char digest[72],
		      struct imgf_error **err)
{
	out->max = DOC_MAX;
	struct request q = {.method = "GET", .url = url, .accept = accept, .out = out};
	struct reply r = REPLY_INIT;
	int ret = request(c, &q, &r, err);
	if (ret == 0 && r.status != 200)
		ret = unexpected(&q, &r, "200", err);
	if (ret == 0) {
		char hex[IMGF_DIGEST_HEX_MAX];
		imgf_digest_buffer(IMGF_SHA256, out->buf, out->len, hex);
		snprintf(digest, 72, "sha256:%.64s", hex);
		const char *said = imgf_http_header_get(&r.h, "Docker-Content-Digest");
		if (want && strcmp(want, digest) != 0)
			ret = imgf_error_set(err, IMGF_EXIT_FAIL,
					     "GET '%s': sha256 mismatch: want %s, got %s", url,
					     want, digest);
		else if (said && str_has_prefix(said, "sha256:") && strcmp(said, digest) != 0)
			ret = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"GET '%s': sha256 mismatch: the registry says %s, content is %s",
				url, said, digest);
		if (content_type) {
			const char *t = imgf_http_header_get(&r.h, "Content-Type");
			*content_type = xstrndup(t ? t : "", t ? strcspn(t, "; ") : 0);
		}
	}
	reply_release(&r);
	return ret;
}
