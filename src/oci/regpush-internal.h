/*
 * What the push (regpush.c) shares with its registry client (regpush-client.c): the client,
 * its blobs and the requests the push is made of. Not for other users.
 */
#ifndef IMGF_REGPUSH_INTERNAL_H
#define IMGF_REGPUSH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "http.h"
#include "regpush.h"

struct imgf_error;
struct strbuf;

#define DOC_MAX (4u << 20) /* manifests, configs, token replies */

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"

struct client {
	CURL *curl;
	const struct imgf_push_opts *o;
	char *registry; /* "HOST[:PORT]" as in the reference */
	char *base;	/* "https://HOST[:PORT]" */
	char **scopes;	/* what a token must grant: "repository:R:pull,push", ... */
	char *auth;	/* "Authorization: ..." once a challenge was answered */
	char *auth_file;
	char *user, *password;
	bool creds_read;
	char *no_proxy;
	struct imgf_http_retry retry; /* o's numbers, IMGFORGE_RETRY_BASE_MS by default */
};

struct blob {
	char digest[72];
	uint64_t size;
	char *path;	  /* on disk, or */
	const char *data; /* in memory */
	const char *what; /* "config", "layer 0" */
};

/* A client for `registry` ("HOST[:PORT]") with the push options o. */
int imgf_regc_init(struct client *c, const char *registry, const struct imgf_push_opts *o,
		   struct imgf_error **err);

/* Forget the client's handle, token and credentials. */
void imgf_regc_release(struct client *c);

/* Ask tokens to grant pull (and push) on repo too. */
void imgf_regc_scope(struct client *c, const char *repo, bool push);

/* Put blob b into repo: nothing when it is there, a mount from `from` (may be NULL) when
 * the registry allows it, else an upload (retried from a new session). */
int imgf_regc_push_blob(struct client *c, const char *repo, const struct blob *b, const char *from,
			bool must_mount, struct imgf_push_stats *st, struct imgf_error **err);

/* PUT a manifest (or index) `json` as repo:reference; its digest into digest. */
int imgf_regc_put_manifest(struct client *c, const char *repo, const char *reference,
			   const char *media_type, const char *json, char digest[72],
			   struct imgf_error **err);

/* GET a manifest or blob (small) into out, checking its sha256 against `want` when given. */
int imgf_regc_get_doc(struct client *c, const char *url, const char *accept, const char *want,
		      struct strbuf *out, char **content_type, char digest[72],
		      struct imgf_error **err);

#endif
