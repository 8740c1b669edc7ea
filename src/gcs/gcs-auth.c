/*
 * GCS authentication: the service-account key file, the signed JWT (RS256) and the OAuth2
 * access token it buys. Neither the private key nor the token reaches a log or a message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "base64.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "gcs-internal.h"
#include "log.h"
#include "util.h"

/* ---- the service-account key and the JWT ---- */

static int key_field(json_t *doc, const char *path, const char *name, bool required, char **out,
		     struct imgf_error **err)
{
	json_t *v = json_object_get(doc, name);
	if (!v && !required)
		return 0;
	if (!json_is_string(v) || !json_string_length(v))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "service-account key '%s': field '%s' is %s", path, name,
				      v ? "not a non-empty string" : "missing");
	*out = xstrdup(json_string_value(v));
	return 0;
}

/* Never prompt for a passphrase: a service-account key is not encrypted. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

/* Wipe a secret string that jansson owns before it is freed. */
static void json_string_cleanse(json_t *v)
{
	if (json_is_string(v))
		OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
}

int imgf_gcs_key_load(const char *path, struct imgf_gcs_key *key, struct imgf_error **err)
{
	memset(key, 0, sizeof(*key));
	char *text = NULL;
	size_t len = 0;
	if (read_file(path, KEY_FILE_MAX, &text, &len, err) < 0)
		return imgf_error_prefix(err, "service-account key");
	/* jansson's messages quote the text near the error, which may be the key: not used. */
	json_error_t je;
	json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	OPENSSL_cleanse(text, len);
	free(text);
	if (!doc)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "service-account key '%s': not valid JSON (line %d, column "
				      "%d)",
				      path, je.line, je.column);
	int r = -1;
	json_t *pk = json_object_get(doc, "private_key");
	if (!json_is_object(doc)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "service-account key '%s': expected a JSON object", path);
		goto out;
	}
	json_t *type = json_object_get(doc, "type");
	if (type &&
	    (!json_is_string(type) || strcmp(json_string_value(type), "service_account") != 0)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "service-account key '%s': field 'type' is not 'service_account' "
			       "(only service-account keys are supported)",
			       path);
		goto out;
	}
	if (key_field(doc, path, "client_email", true, &key->client_email, err) < 0 ||
	    key_field(doc, path, "token_uri", false, &key->token_uri, err) < 0 ||
	    key_field(doc, path, "private_key_id", false, &key->private_key_id, err) < 0)
		goto out;
	if (!key->token_uri)
		key->token_uri = xstrdup(TOKEN_URI_DEFAULT);
	if (!str_has_prefix(key->token_uri, "https://") &&
	    !str_has_prefix(key->token_uri, "http://")) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "service-account key '%s': field 'token_uri' is not an http(s) URL",
			       path);
		goto out;
	}
	if (!json_is_string(pk) || !json_string_length(pk)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "service-account key '%s': field 'private_key' is %s", path,
			       pk ? "not a non-empty string" : "missing");
		goto out;
	}
	BIO *bio = BIO_new_mem_buf(json_string_value(pk), (int)json_string_length(pk));
	EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error(); /* OpenSSL's queue is not shown: nothing of the key leaks through it */
	if (!pkey) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "service-account key '%s': field 'private_key' is not a PEM private "
			       "key",
			       path);
		goto out;
	}
	if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pkey);
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "service-account key '%s': field 'private_key' is not an RSA key "
			       "(RS256 needs one)",
			       path);
		goto out;
	}
	key->pkey = pkey;
	r = 0;
out:
	json_string_cleanse(pk);
	json_decref(doc);
	if (r < 0)
		imgf_gcs_key_release(key);
	return r;
}

void imgf_gcs_key_release(struct imgf_gcs_key *key)
{
	free(key->client_email);
	free(key->token_uri);
	free(key->private_key_id);
	EVP_PKEY_free(key->pkey);
	memset(key, 0, sizeof(*key));
}

static char *json_b64url(json_t *j)
{
	_cleanup_free_ char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!s)
		abort(); /* only out of memory makes json_dumps fail here */
	return imgf_base64url_encode(s, strlen(s));
}

int imgf_gcs_jwt_build(const struct imgf_gcs_key *key, time_t now, char **out,
		       struct imgf_error **err)
{
	json_t *hdr = json_pack("{s:s,s:s}", "alg", "RS256", "typ", "JWT");
	if (key->private_key_id)
		json_object_set_new(hdr, "kid", json_string(key->private_key_id));
	json_t *claims = json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", key->client_email, "scope",
				   TOKEN_SCOPE, "aud", key->token_uri, "iat", (json_int_t)now,
				   "exp", (json_int_t)now + TOKEN_LIFETIME_S);
	_cleanup_free_ char *h64 = json_b64url(hdr);
	_cleanup_free_ char *c64 = json_b64url(claims);
	_cleanup_free_ char *input = xasprintf("%s.%s", h64, c64);

	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t siglen = 0;
	unsigned char *sig = NULL;
	int ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
		 EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)input, strlen(input)) ==
			 1;
	if (ok) {
		sig = xmalloc(siglen);
		ok = EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input,
				    strlen(input)) == 1;
	}
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (!ok) {
		free(sig);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "sign the token request with RS256");
	}
	_cleanup_free_ char *s64 = imgf_base64url_encode(sig, siglen);
	free(sig);
	*out = xasprintf("%s.%s", input, s64);
	return 0;
}

/* ---- OAuth2: the JWT bearer grant ---- */

int imgf_gcs_token(struct imgf_gcs *g, struct imgf_error **err)
{
	time_t now = time(NULL);
	if (g->token && now + TOKEN_SLACK_S < g->token_expiry)
		return 0;
	free(g->token);
	g->token = NULL;
	_cleanup_free_ char *jwt = NULL;
	if (imgf_gcs_jwt_build(&g->key, now, &jwt, err) < 0)
		return imgf_error_prefix(err, "service-account key '%s'", g->key_path);
	struct strbuf body = STRBUF_INIT;
	strbuf_addstr(&body, "grant_type=");
	imgf_http_escape(&body, JWT_GRANT, false);
	strbuf_addstr(&body, "&assertion=");
	strbuf_addstr(&body, jwt); /* base64url and '.' need no escaping */
	_cleanup_free_ char *what = xasprintf("token endpoint %s", g->key.token_uri);
	if (imgf_url_unauthenticated(g->key.token_uri))
		log_warn("service-account key '%s': token_uri '%s' is plain http: the signed "
			 "assertion and the access token travel unauthenticated (use https)",
			 g->key_path, g->key.token_uri);
	struct http_req r;
	imgf_gcs_req_init(&r, "POST", xstrdup(g->key.token_uri), what);
	r.no_auth = true;
	r.body = body.buf;
	r.body_len = body.len;
	r.content_type = "application/x-www-form-urlencoded";
	r.resp_max = 64 * 1024;
	int ret = -1;
	json_t *doc = NULL;
	if (imgf_gcs_request(g, &r, err) < 0)
		goto out;
	if (r.status != 200) {
		imgf_gcs_req_fail(g, &r, err);
		goto out;
	}
	if (!(doc = imgf_gcs_reply_json(&r, err)))
		goto out;
	const char *tok = json_string_value(json_object_get(doc, "access_token"));
	json_t *exp = json_object_get(doc, "expires_in");
	if (!tok || !*tok) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "POST '%s': the reply has no access_token",
			       what);
		goto out;
	}
	g->token = xstrdup(tok);
	g->token_expiry =
		now + (json_is_integer(exp) ? (time_t)json_integer_value(exp) : TOKEN_LIFETIME_S);
	json_string_cleanse(json_object_get(doc, "access_token"));
	log_debug("got an access token for '%s' from %s", g->key.client_email, g->key.token_uri);
	ret = 0;
out:
	if (r.resp.len)
		OPENSSL_cleanse(r.resp.buf, r.resp.len);
	json_decref(doc);
	OPENSSL_cleanse(body.buf, body.len);
	strbuf_release(&body);
	imgf_gcs_req_release(&r);
	if (ret < 0)
		imgf_error_prefix(err, "service-account key '%s'", g->key_path);
	return ret;
}
