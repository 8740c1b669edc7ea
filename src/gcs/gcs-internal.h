/*
 * What the parts of the GCS client share (gcs-request.c: requests, gcs.c: the client,
 * gcs-auth.c: the key, the JWT and the token, gcs-upload.c: resumable uploads, gcs-hash.c:
 * their digests). Not for other users.
 */
#ifndef IMGF_GCS_INTERNAL_H
#define IMGF_GCS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "digest.h"
#include "gcs.h"
#include "http.h"
#include "strbuf.h"

/* Time bounds as in http.h: a dead or stalled server costs a bounded time per attempt. */
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
	struct imgf_http_retry retry; /* per request, and per chunk without progress */
	uint64_t chunk;		      /* IMGFORGE_UPLOAD_CHUNK; 0: one request */
	char errbuf[CURL_ERROR_SIZE];
	struct imgf_http_progress progress; /* of the running upload (label NULL: none) */
	/* Puts a valid access token in `token` when there is a key (imgf_gcs_token; a hook, so
	 * that requests do not depend on the authentication that makes requests of its own). */
	int (*token_fetch)(struct imgf_gcs *g, struct imgf_error **err);
};

/* sha256 and crc32c of the bytes an upload reads, computed by a worker thread while the
 * transfer goes on (imgf_gcs_upload_hash_start; without it, in the caller). The server's
 * crc32c is what the stored object is checked with, as GCS's own tools do; md5, twice the
 * work of both, only when a server reports no crc32c (gcs-upload.c reads the file again). */
struct hash_worker;
struct upload_hash {
	struct imgf_digest sha256;
	uint32_t crc;
	uint64_t upto; /* bytes [0, upto) of the file are in the digests (or queued for them) */
	struct hash_worker *w;
};

/* The body of an upload chunk: a range of the file, hashed as it is read, each byte once. */
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

/* "gs://BUCKET/OBJECT", newly allocated. */
char *imgf_gcs_gs_name(const char *bucket, const char *object);
/* The upload URL of an object for uploadType `type` ("media", "resumable"). */
char *imgf_gcs_upload_url(const struct imgf_gcs *g, const char *bucket, const char *object,
			  const char *type);
/* An md5 in GCS's form: base64 of the raw digest, into out[25]. */
void imgf_gcs_md5_b64(const void *data, size_t len, char out[25]);

/* A request: init takes ownership of url; what names it in messages. */
void imgf_gcs_req_init(struct http_req *r, const char *method, char *url, const char *what);
void imgf_gcs_req_release(struct http_req *r);
/* One attempt: -1 only when the request could not be made (no token); the outcome of the
 * exchange is in r->rc and r->status. */
int imgf_gcs_perform(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err);
/* With retries (transport failures, 408/429/5xx) and one fresh token after a 401: 0 with
 * r->status the final status, -1 when no reply came or it never succeeded. */
int imgf_gcs_request(struct imgf_gcs *g, struct http_req *r, struct imgf_error **err);
/* Fail with what went wrong with r: interrupted, curl's words, or the server's. */
int imgf_gcs_req_fail(struct imgf_gcs *g, const struct http_req *r, struct imgf_error **err);
json_t *imgf_gcs_reply_json(const struct http_req *r, struct imgf_error **err);
char *imgf_gcs_curl_reason(struct imgf_gcs *g, CURLcode rc);
char *imgf_gcs_http_reason(const struct http_req *r);

/* A valid access token in g->token, fetched (JWT bearer grant) when it is near its end. */
int imgf_gcs_token(struct imgf_gcs *g, struct imgf_error **err);

/* Feed bytes [at, at+n) of the file to the upload's digests, skipping what they have seen. */
void imgf_gcs_upload_hash_feed(struct upload_hash *h, uint64_t at, const char *buf, size_t n);
/* Hash on a worker thread from now on (false: it could not start; the caller hashes). */
bool imgf_gcs_upload_hash_start(struct upload_hash *h);
/* Wait until everything fed is in the digests, and stop the worker. */
void imgf_gcs_upload_hash_finish(struct upload_hash *h);

#endif
