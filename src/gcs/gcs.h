/*
 * A small Google Cloud Storage JSON API client over libcurl: object metadata, small media
 * reads, listing, deletion, small writes, and resumable uploads of large files whose crc32c
 * and sha256 are computed while the file is read (each byte once), the crc32c checked against
 * what the server stored (its md5, read again, when it reports no crc32c).
 *
 * Endpoint and authentication, from the environment:
 *   IMGFORGE_GCS_ENDPOINT   a GCS-compatible endpoint (http[s]://host[:port]) used WITH the
 *                           service-account key when one is given (tests, private endpoints)
 *   STORAGE_EMULATOR_HOST   an emulator (http://host:port, or host:port meaning http): no auth
 *   otherwise               https://storage.googleapis.com with an OAuth2 token obtained by
 *                           signing a JWT (RS256) with the key file's private key
 *   GOOGLE_APPLICATION_CREDENTIALS   the key file when none is passed
 *   IMGFORGE_UPLOAD_CHUNK   send resumable uploads in chunks of this many bytes, a multiple of
 *                           262144 (default: the whole file in one request)
 *   IMGFORGE_RETRY_BASE_MS  first retry backoff (default 1000), doubled per attempt, +-50% jitter
 *
 * The private key and the access token never appear in logs or error messages.
 */
#ifndef IMGF_GCS_H
#define IMGF_GCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "crc32c.h"

struct imgf_error;
struct strbuf;
struct imgf_gcs;

#define IMGF_GCS_DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define IMGF_GCS_CHUNK_QUANTUM 262144u /* chunks are a multiple of this */

/*
 * Open a client. key_file is --key-file (may be NULL: then GOOGLE_APPLICATION_CREDENTIALS);
 * with STORAGE_EMULATOR_HOST no key is read. A key that cannot be used is an error naming
 * the file and the field, never its content. No network traffic happens here.
 */
int imgf_gcs_open(const char *key_file, struct imgf_gcs **out, struct imgf_error **err);
void imgf_gcs_free(struct imgf_gcs *g);
/* The endpoint in use, e.g. "http://127.0.0.1:4443" (no trailing slash). */
const char *imgf_gcs_endpoint(const struct imgf_gcs *g);
/* True when talking to an emulator or IMGFORGE_GCS_ENDPOINT rather than Google. */
bool imgf_gcs_is_custom_endpoint(const struct imgf_gcs *g);

/*
 * The HTTP download URL of an object (newly allocated): https://storage.googleapis.com/B/O,
 * or on an emulator/custom endpoint ENDPOINT/download/storage/v1/b/B/o/O?alt=media.
 */
char *imgf_gcs_download_url(const struct imgf_gcs *g, const char *bucket, const char *object);

/* Fail with "bucket 'B' does not exist" (or the server's refusal) unless it can be listed. */
int imgf_gcs_bucket_check(struct imgf_gcs *g, const char *bucket, struct imgf_error **err);

/* An object's metadata (the JSON resource) into *out, or *out = NULL when it does not exist. */
int imgf_gcs_stat(struct imgf_gcs *g, const char *bucket, const char *object, json_t **out,
		  struct imgf_error **err);
/* A small object's content into out (at most max bytes); *found = false when it does not exist. */
int imgf_gcs_get_small(struct imgf_gcs *g, const char *bucket, const char *object, size_t max,
		       struct strbuf *out, bool *found, struct imgf_error **err);
/* Every object whose name starts with prefix (all pages) as a JSON array of resources. */
int imgf_gcs_list(struct imgf_gcs *g, const char *bucket, const char *prefix, json_t **items,
		  struct imgf_error **err);
/* Delete an object; one that does not exist is not an error. */
int imgf_gcs_delete(struct imgf_gcs *g, const char *bucket, const char *object,
		    struct imgf_error **err);
/* Write a small object in one request; the stored md5 is checked. */
int imgf_gcs_put_small(struct imgf_gcs *g, const char *bucket, const char *object, const void *data,
		       size_t len, const char *content_type, struct imgf_error **err);

struct imgf_gcs_upload_result {
	uint64_t size;	     /* the object's size */
	uint64_t bytes_sent; /* body bytes handed to the connection, resends and lost ones too */
	unsigned resumes;    /* interruptions recovered from */
	char md5_b64[25];    /* as GCS spells them, base64 of the raw digest; the md5 only when
				the server reported no crc32c, else empty */
	char crc32c_b64[9];
	char sha256[65]; /* hex, computed in the same pass */
};

/*
 * Upload a file with a resumable session: in one request (or in chunks of
 * IMGFORGE_UPLOAD_CHUNK). After a dropped connection, a timeout or a 5xx the session is asked
 * how much it has persisted (an empty PUT) and the upload continues from that offset, again
 * in one request; bytes re-sent are not hashed again. When the server's crc32c (or, without
 * one, its md5) differs from the local one the object is deleted and the upload fails. When
 * want_sha256 is non-NULL and the sha256 of the bytes sent (computed in the same pass) differs, the
 * file changed since it was hashed or want_sha256 came from a wrong .sha256: the object is deleted
 * and the upload fails. A symlink is not followed (ELOOP): image-upload sends only regular files of
 * a build directory.
 */
int imgf_gcs_upload_file(struct imgf_gcs *g, const char *bucket, const char *object,
			 const char *path, const char *want_sha256,
			 struct imgf_gcs_upload_result *res, struct imgf_error **err);

/* ---- pieces exposed for unit tests ---- */

struct imgf_gcs_key {
	char *client_email;
	char *token_uri;
	char *private_key_id; /* may be NULL */
	void *pkey;	      /* EVP_PKEY */
};

/* Read and check a service-account key file; errors name the file and field only. */
int imgf_gcs_key_load(const char *path, struct imgf_gcs_key *key, struct imgf_error **err);
void imgf_gcs_key_release(struct imgf_gcs_key *key);
/* The signed JWT assertion (header.claims.signature, base64url) valid from now for an hour. */
int imgf_gcs_jwt_build(const struct imgf_gcs_key *key, time_t now, char **out,
		       struct imgf_error **err);

/* Parse gs://BUCKET[/PREFIX] into newly allocated bucket and prefix ("" when none). */
int imgf_gs_url_parse(const char *url, char **bucket, char **prefix, struct imgf_error **err);

#endif
