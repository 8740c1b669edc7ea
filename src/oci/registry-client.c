/*
 * The registry pull client's HTTP side: credentials read from a docker config when a push's
 * access options are given, the registry's challenges answered (a Bearer token from its realm,
 * or Basic), and GETs through imgf_http_do with the retry policy and the pull's deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "archive.h"
#include "base64.h"
#include "digest.h"
#include "dlcache.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "http.h"
#include "log.h"
#include "ociimage.h"
#include "regauth.h"
#include "registry.h"
#include "regpush.h"
#include "strbuf.h"
#include "util.h"

#include "registry-internal.h"

#define TOKEN_MAX (1u << 20)
#define ERRBODY_MAX 4096 /* an error reply's body: enough for the registry's message */

void imgf_registry_reply_release(struct reply *r)
{
	imgf_http_headers_reset(&r->h);
	r->status = 0;
}

static int pull_timed_out(const struct reg_client *c, const char *url, struct imgf_error **err)
{
	return imgf_error_set(err, IMGF_EXIT_FAIL,
			      "GET '%s': the pull was not done within %ld s (variable "
			      "'download_timeout')",
			      url, c->opts ? c->opts->timeout_s : 0L);
}

/* With access: the user and password the docker config holds for the registry, once. */
static int read_creds(struct reg_client *c, struct imgf_error **err)
{
	if (c->creds_read || !c->access)
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
	OPENSSL_cleanse(up, strlen(up));
	return xasprintf("Authorization: Basic %s", b);
}

/* Who a 401 refused: "the credentials of user 'U'" or "anonymous access" (newly allocated). */
static char *refused_who(const struct reg_client *c)
{
	return c->user ? xasprintf("the credentials of user '%s'", c->user)
		       : xstrdup("anonymous access");
}

/* Answer a Bearer challenge with a token from its realm: anonymous, or (with access) asked
 * with the registry's credentials when the docker config has any. */
static int fetch_token(struct reg_client *c, const struct imgf_reg_challenge *ch,
		       const char *www_auth, struct imgf_error **err)
{
	if (!ch->realm ||
	    !(str_has_prefix(ch->realm, "https://") || str_has_prefix(ch->realm, "http://")))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "bearer challenge without an http(s) realm: '%s'", www_auth);
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
	strbuf_addf(&url, "%cscope=", sep);
	imgf_http_escape(&url, ch->scope ? ch->scope : c->scope, false);

	struct strbuf body = STRBUF_INIT;
	body.max = TOKEN_MAX;
	struct sink s = {.buf = &body, .fd = -1};
	struct reply rep = REPLY_INIT;
	/* The token endpoint is asked with the credentials, or anonymously: never with a
	 * token we hold. */
	char *saved = c->auth;
	c->auth = c->user ? basic_header(c->user, c->password) : NULL;
	c->in_token = true;
	int ret = imgf_registry_get(c, url.buf, "application/json", &s, &rep, err);
	c->in_token = false;
	free(c->auth);
	c->auth = saved;
	if (ret < 0) {
		imgf_error_prefix(err, "fetch token from '%s'%s%s%s", url.buf,
				  c->user ? " for user '" : "", c->user ? c->user : "",
				  c->user ? "'" : "");
		goto out;
	}
	json_error_t jerr;
	json_t *root = json_loadb(body.buf, body.len, 0, &jerr);
	const char *tok = json_string_value(json_object_get(root, "token"));
	if (!tok || !*tok)
		tok = json_string_value(json_object_get(root, "access_token"));
	if (!tok || !*tok) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "token reply from '%s' has no 'token' or 'access_token'",
				     url.buf);
	} else if (strcspn(tok, "\r\n") != strlen(tok)) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "token reply from '%s' is malformed",
				     url.buf);
	} else {
		free(c->auth);
		c->auth = xasprintf("Authorization: Bearer %s", tok);
	}
	json_decref(root);
out:
	imgf_registry_reply_release(&rep);
	strbuf_release(&body);
	strbuf_release(&url);
	return ret;
}

/* Answer a 401's challenge: a bearer token; with access also Basic, from the docker config. */
static int answer_challenge(struct reg_client *c, const char *www_auth, struct imgf_error **err)
{
	struct imgf_reg_challenge ch;
	if (imgf_reg_challenge_parse(www_auth, &ch) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "unparsable WWW-Authenticate challenge '%s'", www_auth);
	int r;
	if (!strcasecmp(ch.scheme, "Bearer")) {
		r = fetch_token(c, &ch, www_auth, err);
	} else if (!c->access || strcasecmp(ch.scheme, "Basic") != 0) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "registry requires '%s' authentication; only %s are supported",
				   ch.scheme,
				   c->access ? "Basic and Bearer" : "anonymous bearer tokens");
	} else if (read_creds(c, err) < 0) {
		r = -1;
	} else if (!c->user && c->auth_file) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "HTTP 401: registry '%s' asks for a user and password, and '%s' "
				   "has none for it",
				   c->registry, c->auth_file);
	} else if (!c->user) {
		r = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"HTTP 401: registry '%s' asks for a user and password, and there "
			"is no docker config.json to take them from (--auth-file, or "
			"$DOCKER_CONFIG/config.json)",
			c->registry);
	} else {
		free(c->auth);
		c->auth = basic_header(c->user, c->password);
		r = 0;
	}
	imgf_reg_challenge_release(&ch);
	return r;
}

/* A GET as the HTTP layer's request, and the hooks that tie it to the client. */
struct get_call {
	struct reg_client *c;
	struct sink *s;
	const char *accept;
	struct reply *r;
	struct strbuf errbody; /* a non-2xx reply's body, for the registry's message */
	bool token_tried;
};

static void tee_digest(void *dg, const char *data, size_t len)
{
	imgf_digest_update(dg, data, len);
}

/* Each attempt starts the sink afresh and carries the token held now. */
static int get_before(struct imgf_http_req *q, void *arg, struct imgf_error **err)
{
	struct get_call *g = arg;
	struct sink *s = g->s;
	if (s->fd >= 0 && (ftruncate(s->fd, 0) < 0 || lseek(s->fd, 0, SEEK_SET) < 0))
		return imgf_error_errno(err, errno, "truncate temp file");
	if (s->dg) {
		enum imgf_digest_alg alg = s->dg->alg;
		imgf_digest_release(s->dg);
		imgf_digest_init(s->dg, alg);
	}
	curl_slist_free_all(q->headers);
	q->headers = NULL;
	if (g->accept)
		imgf_http_header_add(&q->headers, "Accept: %s", g->accept);
	if (g->c->auth)
		imgf_http_header_add(&q->headers, "%s", g->c->auth);
	return 0;
}

/* A 401 with a challenge is answered once, and that attempt does not count. */
static int get_after(struct imgf_http_req *q, struct imgf_http_resp *r, void *arg,
		     struct imgf_error **err)
{
	struct get_call *g = arg;
	if (g->s->label && imgf_log_progress_enabled())
		imgf_progress_done();
	const char *www_auth = imgf_http_header_get(q->reply_headers, "WWW-Authenticate");
	if (r->rc != CURLE_OK || r->status != 401 || !www_auth || g->token_tried || g->c->in_token)
		return IMGF_HTTP_POLICY;
	g->token_tried = true;
	_cleanup_free_ char *challenge = xstrdup(www_auth);
	if (answer_challenge(g->c, challenge, err) < 0)
		return imgf_error_prefix(err, "GET '%s'", q->url);
	return IMGF_HTTP_AGAIN;
}

static char *status_why(const struct get_call *g, long status)
{
	_cleanup_free_ char *detail = imgf_reg_error_text(&g->errbody);
	return detail ? xasprintf("HTTP %ld (%s)", status, detail) : xasprintf("HTTP %ld", status);
}

static char *get_why(struct imgf_http_req *q, struct imgf_http_resp *r, void *arg)
{
	(void)q;
	return status_why(arg, r->status);
}

/*
 * GET url into the sink, answering one bearer challenge and retrying 408/429/5xx, stalls
 * and connection errors with exponential backoff. Only a 2xx reply succeeds.
 */
int imgf_registry_get(struct reg_client *c, const char *url, const char *accept, struct sink *s,
		      struct reply *r, struct imgf_error **err)
{
	struct imgf_http_retry policy = imgf_http_retry_for(c->opts ? c->opts->max_attempts : 0,
							    c->opts ? c->opts->retry_base_ms : 0);
	struct get_call g = {.c = c, .s = s, .accept = accept, .r = r, .errbody = STRBUF_INIT};
	struct imgf_http_progress prog = {.label = s->label, .total = s->fd >= 0 ? s->limit : 0};
	struct imgf_http_req q = {
		.url = url,
		.reply_headers = &r->h,
		/* Blob GETs redirect to CDNs; libcurl keeps our Authorization header on the
		 * first host. A stalled transfer (under 1 KiB/s for stall_s) counts as a timeout
		 * and is retried. */
		.opts = {.redir_protocols = "http,https",
			 .stall_s = c->opts && c->opts->stall_s > 0 ? c->opts->stall_s : 0,
			 .no_proxy = c->no_proxy,
			 .tls_ca = c->access ? c->access->ca_file : NULL,
			 .tls_no_verify = c->access && c->access->tls_no_verify,
			 .progress = &prog},
		.retry = &policy,
		.deadline_ms = c->deadline_ms,
		.before = get_before,
		.after = get_after,
		.why = get_why,
		.hook_arg = &g,
	};
	if (s->fd >= 0)
		q.sink = (struct imgf_http_sink){
			.kind = IMGF_HTTP_SINK_FILE, .fd = s->fd, .max = s->limit};
	else
		q.sink = (struct imgf_http_sink){.kind = IMGF_HTTP_SINK_MEMORY, .buf = s->buf};
	q.sink.errbody = &g.errbody;
	q.sink.errbody_max = ERRBODY_MAX;
	if (s->dg) {
		q.sink.tee = tee_digest;
		q.sink.tee_arg = s->dg;
	}
	struct imgf_http_resp resp = {0};
	int ret = imgf_http_do(c->curl, &q, &resp, err);
	curl_slist_free_all(q.headers);
	r->status = resp.status;
	s->written = q.sink.written;
	const char *again = resp.attempts > 1 ? " (after retries)" : "";
	_cleanup_free_ char *why = NULL;
	if (ret < 0)
		goto out;
	if (resp.interrupted) {
		ret = imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "GET '%s': interrupted", url);
	} else if (resp.deadline_passed) {
		ret = pull_timed_out(c, url, err);
	} else if (resp.rc == CURLE_WRITE_ERROR && q.sink.overflow) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "GET '%s': reply larger than %llu bytes",
				     url,
				     (unsigned long long)(s->fd >= 0 ? s->limit : s->buf->max));
	} else if (resp.rc == CURLE_WRITE_ERROR && q.sink.write_errno) {
		ret = imgf_error_errno(err, q.sink.write_errno, "GET '%s': write", url);
	} else if (resp.rc != CURLE_OK) {
		why = imgf_http_resp_reason(&resp);
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "GET '%s': %s%s", url, why, again);
	} else if (resp.status < 200 || resp.status > 299) {
		why = status_why(&g, resp.status);
		if (resp.status == 401) {
			_cleanup_free_ char *who = refused_who(c);
			ret = imgf_error_set(err, IMGF_EXIT_FAIL, "GET '%s': %s: the %s refused %s",
					     url, why, c->in_token ? "token endpoint" : "registry",
					     who);
		} else
			ret = imgf_error_set(err, IMGF_EXIT_FAIL, "GET '%s': %s%s", url, why,
					     again);
	}
out:
	strbuf_release(&g.errbody);
	return ret;
}
