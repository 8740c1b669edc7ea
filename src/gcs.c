#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "gcs.h"
#include "log.h"
#include "http.h"
#include "strbuf.h"
#include "util.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define CRC32C_HW 1
#endif

/* Time bounds as in http.h: a dead or stalled server costs a bounded time per attempt. */
#define MAX_ATTEMPTS 5	    /* per request, and per chunk without progress */
#define MAX_SESSIONS 3	    /* fresh sessions after the server forgot one */
#define RESP_MAX (8u << 20) /* a JSON reply; a listing page of 1000 objects fits */
#define KEY_FILE_MAX (64u << 10)

#define TOKEN_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
#define TOKEN_URI_DEFAULT "https://oauth2.googleapis.com/token"
#define TOKEN_LIFETIME_S 3600
#define TOKEN_SLACK_S 120 /* refresh a token this long before it expires */
#define JWT_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"

struct imgf_gcs {
	char *endpoint; /* no trailing slash */
	bool custom;	/* STORAGE_EMULATOR_HOST or IMGFORGE_GCS_ENDPOINT */
	bool have_key;
	char *key_path;
	struct imgf_gcs_key key;
	char *token;
	time_t token_expiry;
	CURL *easy;
	long retry_base_ms;
	uint64_t chunk; /* IMGFORGE_UPLOAD_CHUNK; 0: one request */
	char errbuf[CURL_ERROR_SIZE];
	struct imgf_http_progress progress; /* of the running upload (label NULL: none) */
};

/* ---- small helpers ---- */

/* Percent-encode everything but RFC 3986's unreserved characters (and '/' when keep_slash). */
static void url_escape(struct strbuf *sb, const char *s, bool keep_slash)
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

static char *object_url(const struct imgf_gcs *g, const char *bucket, const char *object)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s/storage/v1/b/", g->endpoint);
	url_escape(&sb, bucket, false);
	strbuf_addstr(&sb, "/o/");
	url_escape(&sb, object, false);
	return strbuf_detach(&sb, NULL);
}

static char *gs_name(const char *bucket, const char *object)
{
	return xasprintf("gs://%s/%s", bucket, object);
}

/* ---- base64 ---- */

char *imgf_base64_encode(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	const unsigned char *p = data;
	size_t o = 0;
	/* EVP_EncodeBlock takes an int length; feed it in pieces that are multiples of 3. */
	while (len) {
		size_t n = len > (1u << 30) ? (1u << 30) : len;
		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p, (int)n);
		p += n;
		len -= n;
	}
	out[o] = '\0';
	return out;
}

char *imgf_base64url_encode(const void *data, size_t len)
{
	char *s = imgf_base64_encode(data, len);
	size_t n = strlen(s);
	while (n && s[n - 1] == '=')
		s[--n] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+')
			s[i] = '-';
		else if (s[i] == '/')
			s[i] = '_';
	}
	return s;
}

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ---- */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
#ifdef CRC32C_HW
static bool crc32c_have_hw;
#endif

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^
					     crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
#ifdef CRC32C_HW
	__builtin_cpu_init();
	crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* Slicing-by-8: eight table lookups per 8 bytes. */
static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		uint32_t lo = crc ^ (uint32_t)w, hi = (uint32_t)(w >> 32);
		crc = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
		      crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
		      crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
		      crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
#endif
	while (len--)
		crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#ifdef CRC32C_HW
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
							    size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = _mm_crc32_u8(c32, *p++);
	return c32;
}
#endif

uint32_t imgf_crc32c_update_sw(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
	return ~crc32c_sw(~crc, data, len);
}

uint32_t imgf_crc32c_update(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
#ifdef CRC32C_HW
	if (crc32c_have_hw)
		return ~crc32c_hw(~crc, data, len);
#endif
	return ~crc32c_sw(~crc, data, len);
}

void imgf_crc32c_b64(uint32_t crc, char out[9])
{
	unsigned char be[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
			       (unsigned char)(crc >> 8), (unsigned char)crc};
	_cleanup_free_ char *s = imgf_base64_encode(be, sizeof(be));
	snprintf(out, 9, "%s", s);
}

/* ---- gs:// URLs ---- */

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

/* ---- HTTP ---- */

/* The body of an upload chunk: a range of the file, hashed as it is read, each byte once. */
struct upload_hash {
	EVP_MD_CTX *md5;
	struct imgf_digest sha256;
	uint32_t crc;
	uint64_t upto; /* bytes [0, upto) of the file are in the digests */
};

struct file_body {
	int fd;
	uint64_t off, len, pos; /* the range [off, off+len); pos bytes of it given to curl */
	struct upload_hash *h;
	int read_errno;
	bool shrank;
};

struct http_req {
	const char *method;
	char *url;
	const char *what; /* for messages: "gs://b/o", "token endpoint" */
	const char *content_type;
	const char *content_range;
	const void *body;
	size_t body_len;
	size_t body_pos;
	struct file_body *fbody;
	bool no_auth;
	bool progress;
	size_t resp_max;
	/* results of the last attempt */
	CURLcode rc;
	long status;
	struct strbuf resp;
	struct imgf_http_headers hdrs; /* Location, Range, Retry-After */
	char *location;
	int64_t range_end; /* "Range: bytes=0-N" -> N; -1 none */
	long retry_after_s;
	uint64_t sent; /* body bytes given to the transport */
};

static void http_req_init(struct http_req *r, const char *method, char *url, const char *what)
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

static void http_req_release(struct http_req *r)
{
	free(r->url);
	free(r->location);
	imgf_http_headers_reset(&r->hdrs);
	strbuf_release(&r->resp);
}

static void upload_hash_feed(struct upload_hash *h, uint64_t at, const char *buf, size_t n)
{
	if (at + n <= h->upto)
		return; /* re-sent after a resume: already hashed */
	size_t skip = at < h->upto ? (size_t)(h->upto - at) : 0;
	/* at > upto cannot happen: reads only go past upto contiguously (see the upload loop) */
	if (EVP_DigestUpdate(h->md5, buf + skip, n - skip) != 1)
		abort();
	imgf_digest_update(&h->sha256, buf + skip, n - skip);
	h->crc = imgf_crc32c_update(h->crc, buf + skip, n - skip);
	h->upto = at + n;
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
	upload_hash_feed(fb->h, fb->off + fb->pos, buf, (size_t)got);
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

static long retry_delay_ms(struct imgf_gcs *g, int attempt, long retry_after_s)
{
	return imgf_retry_delay_ms(g->retry_base_ms, attempt, retry_after_s);
}

/* curl's words for a transport failure, lowercased to read like ours. */
static char *curl_reason(struct imgf_gcs *g, CURLcode rc)
{
	return imgf_http_curl_reason(g->errbuf, rc);
}

/* What a failed reply says: "HTTP 403: message" with the JSON API's error.message if any. */
static char *http_reason(const struct http_req *r)
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

static int fail_req(struct imgf_gcs *g, const struct http_req *r, struct imgf_error **err)
{
	if (r->rc == CURLE_ABORTED_BY_CALLBACK && imgf_interrupted)
		return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "%s '%s': interrupted", r->method,
				      r->what);
	if (r->rc != CURLE_OK) {
		_cleanup_free_ char *why = curl_reason(g, r->rc);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': %s", r->method, r->what, why);
	}
	_cleanup_free_ char *why = http_reason(r);
	return imgf_error_set(err, IMGF_EXIT_FAIL, "%s '%s': %s", r->method, r->what, why);
}

static int gcs_token(struct imgf_gcs *g, struct imgf_error **err);

/* One attempt. Returns -1 only when the request could not be made (no token); the outcome
 * of the exchange itself is in r->rc and r->status. */
static int http_perform(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err)
{
	struct curl_slist *hdrs = NULL;
	/* The token goes only to the endpoint, whatever a Location header pointed at. */
	size_t elen = strlen(g->endpoint);
	bool to_endpoint = !strncmp(r->url, g->endpoint, elen) && r->url[elen] == '/';
	if (!r->no_auth && g->have_key && to_endpoint) {
		if (gcs_token(g, err) < 0)
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
static int http_request(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err)
{
	bool reauth = false;
	for (int attempt = 1;; attempt++) {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "%s '%s': interrupted",
					      r->method, r->what);
		if (http_perform(g, r, err) < 0)
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
			return fail_req(g, r, err);
		struct imgf_http_retry policy = {MAX_ATTEMPTS, g->retry_base_ms};
		long delay = imgf_http_retry_delay(&policy, attempt, r->retry_after_s);
		_cleanup_free_ char *why = r->rc != CURLE_OK ? curl_reason(g, r->rc)
							     : xasprintf("HTTP %ld", r->status);
		_cleanup_free_ char *prefix = xasprintf("%s '%s'", r->method, r->what);
		imgf_http_retry_log(&policy, attempt, delay, prefix, why);
		if (imgf_sleep_ms(delay) < 0)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "%s '%s': interrupted",
					      r->method, r->what);
	}
	if (r->rc != CURLE_OK)
		return fail_req(g, r, err);
	return 0;
}

static json_t *reply_json(const struct http_req *r, struct imgf_error **err)
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

/* ---- OAuth2: the JWT bearer grant ---- */

static int gcs_token(struct imgf_gcs *g, struct imgf_error **err)
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
	url_escape(&body, JWT_GRANT, false);
	strbuf_addstr(&body, "&assertion=");
	strbuf_addstr(&body, jwt); /* base64url and '.' need no escaping */
	_cleanup_free_ char *what = xasprintf("token endpoint %s", g->key.token_uri);
	if (imgf_url_unauthenticated(g->key.token_uri))
		log_warn("service-account key '%s': token_uri '%s' is plain http: the signed "
			 "assertion and the access token travel unauthenticated (use https)",
			 g->key_path, g->key.token_uri);
	struct http_req r;
	http_req_init(&r, "POST", xstrdup(g->key.token_uri), what);
	r.no_auth = true;
	r.body = body.buf;
	r.body_len = body.len;
	r.content_type = "application/x-www-form-urlencoded";
	r.resp_max = 64 * 1024;
	int ret = -1;
	json_t *doc = NULL;
	if (http_request(g, &r, err) < 0)
		goto out;
	if (r.status != 200) {
		fail_req(g, &r, err);
		goto out;
	}
	if (!(doc = reply_json(&r, err)))
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
	http_req_release(&r);
	if (ret < 0)
		imgf_error_prefix(err, "service-account key '%s'", g->key_path);
	return ret;
}

/* ---- the client ---- */

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
	g->retry_base_ms = 1000;
	const char *v = getenv("IMGFORGE_RETRY_BASE_MS");
	if (v && *v) {
		char *end;
		errno = 0;
		long ms = strtol(v, &end, 10);
		if (!errno && !*end && ms >= 0 && ms <= IMGF_RETRY_DELAY_CAP_MS)
			g->retry_base_ms = ms;
	}
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
		url_escape(&sb, bucket, false);
		strbuf_addstr(&sb, "/o/");
		url_escape(&sb, object, false);
		strbuf_addstr(&sb, "?alt=media");
	} else {
		strbuf_addf(&sb, "%s/", IMGF_GCS_DEFAULT_ENDPOINT);
		url_escape(&sb, bucket, false);
		strbuf_addch(&sb, '/');
		url_escape(&sb, object, true);
	}
	return strbuf_detach(&sb, NULL);
}

int imgf_gcs_bucket_check(struct imgf_gcs *g, const char *bucket, struct imgf_error **err)
{
	/* Listing needs only object permissions, unlike reading the bucket's metadata. */
	struct strbuf url = STRBUF_INIT;
	strbuf_addf(&url, "%s/storage/v1/b/", g->endpoint);
	url_escape(&url, bucket, false);
	strbuf_addstr(&url, "/o?maxResults=1");
	_cleanup_free_ char *what = xasprintf("gs://%s", bucket);
	struct http_req r;
	http_req_init(&r, "GET", strbuf_detach(&url, NULL), what);
	int ret = -1;
	if (http_request(g, &r, err) < 0)
		goto out;
	if (r.status == 404)
		imgf_error_set(err, IMGF_EXIT_FAIL, "bucket '%s' does not exist (at %s)", bucket,
			       g->endpoint);
	else if (r.status != 200)
		fail_req(g, &r, err);
	else
		ret = 0;
out:
	http_req_release(&r);
	return ret;
}

int imgf_gcs_stat(struct imgf_gcs *g, const char *bucket, const char *object, json_t **out,
		  struct imgf_error **err)
{
	*out = NULL;
	_cleanup_free_ char *what = gs_name(bucket, object);
	struct http_req r;
	http_req_init(&r, "GET", object_url(g, bucket, object), what);
	int ret = -1;
	if (http_request(g, &r, err) < 0)
		goto out;
	if (r.status == 404)
		ret = 0;
	else if (r.status != 200)
		fail_req(g, &r, err);
	else if ((*out = reply_json(&r, err)))
		ret = 0;
out:
	http_req_release(&r);
	return ret;
}

int imgf_gcs_get_small(struct imgf_gcs *g, const char *bucket, const char *object, size_t max,
		       struct strbuf *out, bool *found, struct imgf_error **err)
{
	*found = false;
	_cleanup_free_ char *what = gs_name(bucket, object);
	_cleanup_free_ char *base = object_url(g, bucket, object);
	struct http_req r;
	http_req_init(&r, "GET", xasprintf("%s?alt=media", base), what);
	r.resp_max = max;
	int ret = -1;
	if (http_request(g, &r, err) < 0)
		goto out;
	if (r.status == 404) {
		ret = 0;
	} else if (r.status != 200) {
		fail_req(g, &r, err);
	} else {
		strbuf_add(out, r.resp.buf, r.resp.len);
		*found = true;
		ret = 0;
	}
out:
	http_req_release(&r);
	return ret;
}

int imgf_gcs_list(struct imgf_gcs *g, const char *bucket, const char *prefix, json_t **items,
		  struct imgf_error **err)
{
	json_t *all = json_array();
	_cleanup_free_ char *token = NULL;
	_cleanup_free_ char *what = gs_name(bucket, prefix);
	for (;;) {
		struct strbuf url = STRBUF_INIT;
		strbuf_addf(&url, "%s/storage/v1/b/", g->endpoint);
		url_escape(&url, bucket, false);
		strbuf_addstr(&url, "/o?maxResults=1000&prefix=");
		url_escape(&url, prefix, false);
		if (token) {
			strbuf_addstr(&url, "&pageToken=");
			url_escape(&url, token, false);
		}
		struct http_req r;
		http_req_init(&r, "GET", strbuf_detach(&url, NULL), what);
		json_t *doc = NULL;
		int ok = http_request(g, &r, err) == 0;
		if (ok && r.status == 404) {
			imgf_error_set(err, IMGF_EXIT_FAIL, "bucket '%s' does not exist (at %s)",
				       bucket, g->endpoint);
			ok = 0;
		} else if (ok && r.status != 200) {
			fail_req(g, &r, err);
			ok = 0;
		}
		if (ok && !(doc = reply_json(&r, err)))
			ok = 0;
		http_req_release(&r);
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
	_cleanup_free_ char *what = gs_name(bucket, object);
	struct http_req r;
	http_req_init(&r, "DELETE", object_url(g, bucket, object), what);
	int ret = -1;
	if (http_request(g, &r, err) < 0)
		goto out;
	if (r.status == 200 || r.status == 204 || r.status == 404)
		ret = 0;
	else
		fail_req(g, &r, err);
out:
	http_req_release(&r);
	return ret;
}

static char *upload_url(const struct imgf_gcs *g, const char *bucket, const char *object,
			const char *type)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s/upload/storage/v1/b/", g->endpoint);
	url_escape(&sb, bucket, false);
	strbuf_addf(&sb, "/o?uploadType=%s&name=", type);
	url_escape(&sb, object, false);
	return strbuf_detach(&sb, NULL);
}

static void md5_b64(const void *data, size_t len, char out[25])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1)
		abort();
	_cleanup_free_ char *s = imgf_base64_encode(md, n);
	snprintf(out, 25, "%s", s);
}

int imgf_gcs_put_small(struct imgf_gcs *g, const char *bucket, const char *object, const void *data,
		       size_t len, const char *content_type, struct imgf_error **err)
{
	_cleanup_free_ char *what = gs_name(bucket, object);
	struct http_req r;
	http_req_init(&r, "POST", upload_url(g, bucket, object, "media"), what);
	r.body = data;
	r.body_len = len;
	r.content_type = content_type;
	int ret = -1;
	json_t *doc = NULL;
	if (http_request(g, &r, err) < 0)
		goto out;
	if (r.status != 200 && r.status != 201) {
		fail_req(g, &r, err);
		goto out;
	}
	if (!(doc = reply_json(&r, err)))
		goto out;
	char want[25];
	md5_b64(data, len, want);
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
	http_req_release(&r);
	return ret;
}

/* ---- resumable uploads ---- */

struct upload {
	struct imgf_gcs *g;
	const char *bucket, *object, *path;
	char *what;
	int fd;
	uint64_t size;
	struct upload_hash h;
	char *session;
	uint64_t offset; /* the server has bytes [0, offset) */
	unsigned sessions;
	struct imgf_gcs_upload_result *res;
	json_t *final;	/* the object resource once the server finalized it */
	char *last_why; /* the last failure worth a retry */
};

static int upload_session_start(struct upload *u, struct imgf_error **err)
{
	if (++u->sessions > MAX_SESSIONS)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "upload '%s': the server lost the upload session %u times",
				      u->what, MAX_SESSIONS - 1);
	_cleanup_free_ char *meta = NULL;
	json_t *m = json_pack("{s:s,s:s}", "name", u->object, "contentType",
			      "application/octet-stream");
	meta = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	struct http_req r;
	http_req_init(&r, "POST", upload_url(u->g, u->bucket, u->object, "resumable"), u->what);
	r.body = meta;
	r.body_len = strlen(meta);
	r.content_type = "application/json; charset=UTF-8";
	int ret = -1;
	if (http_request(u->g, &r, err) < 0)
		goto out;
	if (r.status == 404) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "bucket '%s' does not exist (at %s)", u->bucket,
			       u->g->endpoint);
		goto out;
	}
	if (r.status != 200 && r.status != 201) {
		fail_req(u->g, &r, err);
		goto out;
	}
	if (!r.location || !*r.location) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the server started no session (no Location header)",
			       u->what);
		goto out;
	}
	free(u->session);
	u->session = xstrdup(r.location);
	u->offset = 0;
	ret = 0;
out:
	http_req_release(&r);
	return ret;
}

/* What a reply to a chunk or a status query says about the session. */
enum chunk_outcome {
	CHUNK_FINAL,	/* 200/201: the object exists */
	CHUNK_CONTINUE, /* 308: u->offset updated from Range */
	CHUNK_RETRY,	/* connection trouble, 408/429/5xx, 401: query, then go on */
	CHUNK_LOST,	/* 404/410: the session is gone, start a new one */
	CHUNK_FATAL,	/* *err is set */
};

static enum chunk_outcome chunk_outcome(struct upload *u, struct http_req *r,
					struct imgf_error **err)
{
	if (r->rc == CURLE_ABORTED_BY_CALLBACK || r->rc == CURLE_READ_ERROR) {
		struct file_body *fb = r->fbody;
		if (imgf_interrupted)
			imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "upload '%s': interrupted",
				       u->what);
		else if (fb && fb->read_errno)
			imgf_error_errno(err, fb->read_errno, "upload '%s': read '%s'", u->what,
					 u->path);
		else if (fb && fb->shrank)
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "upload '%s': '%s' shrank while it was being uploaded",
				       u->what, u->path);
		else
			fail_req(u->g, r, err);
		return CHUNK_FATAL;
	}
	if (r->rc != CURLE_OK) {
		if (imgf_retry_transport(r->rc))
			return CHUNK_RETRY;
		fail_req(u->g, r, err);
		return CHUNK_FATAL;
	}
	if (r->status == 200 || r->status == 201) {
		json_decref(u->final);
		u->final = reply_json(r, err);
		return u->final ? CHUNK_FINAL : CHUNK_FATAL;
	}
	if (r->status == 308) {
		uint64_t have = r->range_end >= 0 ? (uint64_t)r->range_end + 1 : 0;
		if (have > u->h.upto || have > u->size) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "upload '%s': the server claims %llu bytes, only %llu were "
				       "sent",
				       u->what, (unsigned long long)have,
				       (unsigned long long)u->h.upto);
			return CHUNK_FATAL;
		}
		u->offset = have;
		return CHUNK_CONTINUE;
	}
	if (r->status == 404 || r->status == 410)
		return CHUNK_LOST;
	if (imgf_retry_status(r->status) || (r->status == 401 && u->g->have_key)) {
		if (r->status == 401) {
			free(u->g->token);
			u->g->token = NULL;
		}
		return CHUNK_RETRY;
	}
	fail_req(u->g, r, err);
	return CHUNK_FATAL;
}

/* PUT bytes [offset, offset+len) of the file, or with len 0 ask where the session stands. */
static enum chunk_outcome upload_put(struct upload *u, uint64_t len, struct imgf_error **err)
{
	char range[96];
	struct file_body fb = {.fd = u->fd, .off = u->offset, .len = len, .h = &u->h};
	if (len)
		snprintf(range, sizeof(range), "bytes %llu-%llu/%llu",
			 (unsigned long long)u->offset, (unsigned long long)(u->offset + len - 1),
			 (unsigned long long)u->size);
	else
		snprintf(range, sizeof(range), "bytes */%llu", (unsigned long long)u->size);
	struct http_req r;
	http_req_init(&r, "PUT", xstrdup(u->session), u->what);
	r.content_range = range;
	r.content_type = "application/octet-stream";
	r.fbody = &fb;
	u->g->progress.base = u->offset;
	enum chunk_outcome o = CHUNK_FATAL;
	if (http_perform(u->g, &r, err) == 0) {
		u->res->bytes_sent += r.sent;
		o = chunk_outcome(u, &r, err);
	}
	if (o == CHUNK_RETRY) {
		free(u->last_why);
		u->last_why = r.rc != CURLE_OK ? curl_reason(u->g, r.rc) : http_reason(&r);
		log_warn("upload '%s': %s %s: %s", u->what, len ? "chunk" : "status query", range,
			 u->last_why);
	}
	http_req_release(&r);
	return o;
}

/* Read what was never read (the server finalized early) so the digests cover the file. */
static int upload_hash_rest(struct upload *u, struct imgf_error **err)
{
	char buf[65536];
	while (u->h.upto < u->size) {
		ssize_t n = pread(u->fd, buf, sizeof(buf), (off_t)u->h.upto);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return imgf_error_errno(err, errno, "read '%s'", u->path);
		if (n == 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "'%s' shrank while it was being uploaded", u->path);
		upload_hash_feed(&u->h, u->h.upto, buf, (size_t)n);
	}
	return 0;
}

static int upload_delete_after(struct upload *u, struct imgf_error **err)
{
	struct imgf_error *e2 = NULL;
	if (imgf_gcs_delete(u->g, u->bucket, u->object, &e2) < 0) {
		imgf_error_suffix(err, "; deleting the object failed too: %s", e2->msg);
		imgf_error_free(e2);
	} else {
		imgf_error_suffix(err, "; the object was deleted");
	}
	return -1;
}

/* Compare what the server stored with what was read. */
static int upload_verify(struct upload *u, struct imgf_error **err)
{
	if (upload_hash_rest(u, err) < 0)
		return upload_delete_after(u, err);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(u->h.md5, md, &n) != 1)
		abort();
	_cleanup_free_ char *m64 = imgf_base64_encode(md, n);
	snprintf(u->res->md5_b64, sizeof(u->res->md5_b64), "%s", m64);
	imgf_crc32c_b64(u->h.crc, u->res->crc32c_b64);
	imgf_digest_final_hex(&u->h.sha256, u->res->sha256);

	const char *size_s = json_string_value(json_object_get(u->final, "size"));
	json_t *size_j = json_object_get(u->final, "size");
	unsigned long long got_size =
		size_s ? strtoull(size_s, NULL, 10)
		       : (json_is_integer(size_j) ? (unsigned long long)json_integer_value(size_j)
						  : 0);
	const char *md5 = json_string_value(json_object_get(u->final, "md5Hash"));
	const char *crc = json_string_value(json_object_get(u->final, "crc32c"));
	u->res->size = got_size;
	if ((size_s || size_j) && got_size != u->size) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the server stored %llu bytes of the %llu-byte '%s'",
			       u->what, got_size, (unsigned long long)u->size, u->path);
		return upload_delete_after(u, err);
	}
	if (!md5 && !crc) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the server reported neither md5Hash nor crc32c",
			       u->what);
		return upload_delete_after(u, err);
	}
	if (md5 && strcmp(md5, u->res->md5_b64) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': md5 mismatch: the server stored %s, '%s' has %s",
			       u->what, md5, u->path, u->res->md5_b64);
		return upload_delete_after(u, err);
	}
	if (crc && strcmp(crc, u->res->crc32c_b64) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': crc32c mismatch: the server stored %s, '%s' has %s",
			       u->what, crc, u->path, u->res->crc32c_b64);
		return upload_delete_after(u, err);
	}
	return 0;
}

static int upload_run(struct upload *u, struct imgf_error **err)
{
	if (upload_session_start(u, err) < 0)
		return -1;
	int fails = 0;	    /* failures since the server last had more than ever before */
	uint64_t best = 0;  /* the most the server ever had */
	bool query = false; /* ask the server where it stands before sending more */
	for (;;) {
		enum chunk_outcome o;
		if (query) {
			o = upload_put(u, 0, err);
		} else {
			uint64_t len = u->size - u->offset;
			if (u->g->chunk && len > u->g->chunk)
				len = u->g->chunk;
			o = upload_put(u, len, err);
		}
		switch (o) {
		case CHUNK_FINAL:
			return 0;
		case CHUNK_FATAL:
			return -1;
		case CHUNK_CONTINUE:
			if (query) {
				u->res->resumes++;
				log_info("upload '%s': resuming at byte %llu of %llu", u->what,
					 (unsigned long long)u->offset,
					 (unsigned long long)u->size);
			}
			if (u->offset > best) {
				best = u->offset;
				fails = 0;
			} else if (!query || u->offset == u->size) {
				break; /* a chunk the server kept nothing of: a failure too */
			}
			query = false;
			/* 308 for all bytes: only a status query can finalize now */
			if (u->offset == u->size && u->size)
				query = true;
			continue;
		case CHUNK_LOST:
			log_warn("upload '%s': the server forgot the upload session; starting a "
				 "new one",
				 u->what);
			if (upload_session_start(u, err) < 0)
				return -1;
			best = 0;
			query = false;
			continue;
		case CHUNK_RETRY:
			break;
		}
		if (++fails >= MAX_ATTEMPTS)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "upload '%s': no progress after %d attempts at byte "
					      "%llu: %s",
					      u->what, fails, (unsigned long long)u->offset,
					      u->last_why ? u->last_why
							  : "the server kept nothing");
		long delay = retry_delay_ms(u->g, fails, -1);
		log_warn("upload '%s': asking the server how much it has in %.1f s (attempt %d "
			 "of %d)",
			 u->what, (double)delay / 1000, fails + 1, MAX_ATTEMPTS);
		if (imgf_sleep_ms(delay) < 0)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED,
					      "upload '%s': interrupted", u->what);
		query = true;
	}
}

int imgf_gcs_upload_file(struct imgf_gcs *g, const char *bucket, const char *object,
			 const char *path, const char *want_sha256,
			 struct imgf_gcs_upload_result *res, struct imgf_error **err)
{
	memset(res, 0, sizeof(*res));
	struct upload u = {.g = g, .bucket = bucket, .object = object, .path = path, .res = res};
	u.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (u.fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	struct stat st;
	if (fstat(u.fd, &st) < 0) {
		int e = errno;
		close(u.fd);
		return imgf_error_errno(err, e, "stat '%s'", path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(u.fd);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is not a regular file", path);
	}
#ifdef POSIX_FADV_SEQUENTIAL
	posix_fadvise(u.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
	u.size = (uint64_t)st.st_size;
	u.what = gs_name(bucket, object);
	u.h.md5 = EVP_MD_CTX_new();
	if (!u.h.md5 || EVP_DigestInit_ex(u.h.md5, EVP_md5(), NULL) != 1)
		abort();
	imgf_digest_init(&u.h.sha256, IMGF_SHA256);
	g->progress = (struct imgf_http_progress){
		.label = path_basename(object), .upload = true, .total = u.size};

	int r = upload_run(&u, err);
	imgf_progress_done();
	g->progress.label = NULL;
	if (r == 0)
		r = upload_verify(&u, err);
	if (r == 0 && want_sha256 && strcmp(want_sha256, res->sha256) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "upload '%s': the bytes sent from '%s' have sha256 %s, not %s (the "
			       "file changed, or its .sha256 is wrong)",
			       u.what, path, res->sha256, want_sha256);
		r = upload_delete_after(&u, err);
	}
	if (r == 0) {
		_cleanup_free_ char *human = xasprintf(
			"upload '%s': sent %llu bytes for %llu-byte object (%u resume%s)", u.what,
			(unsigned long long)res->bytes_sent, (unsigned long long)u.size,
			res->resumes, res->resumes == 1 ? "" : "s");
		imgf_event("upload-sent",
			   json_pack("{s:s,s:s,s:I,s:I,s:i,s:s,s:s}", "object", u.what, "file",
				     path, "size", (json_int_t)u.size, "bytes_sent",
				     (json_int_t)res->bytes_sent, "resumes", (int)res->resumes,
				     "md5", res->md5_b64, "crc32c", res->crc32c_b64),
			   human);
	}
	EVP_MD_CTX_free(u.h.md5);
	imgf_digest_release(&u.h.sha256);
	json_decref(u.final);
	free(u.last_why);
	free(u.session);
	free(u.what);
	close(u.fd);
	return r;
}
