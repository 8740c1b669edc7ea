/*
 * The registry pull client's HTTP side (registry-client.c), for the pull (registry.c): the
 * client's state, where a reply's body goes, and GETs that answer the registry's challenges
 * (anonymous or a push's credentials, Basic or a Bearer token) and apply the retry policy.
 */
#ifndef IMGF_REGISTRY_INTERNAL_H
#define IMGF_REGISTRY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "digest.h"
#include "fetch.h"
#include "http.h"
#include "regpush.h"
#include "strbuf.h"

struct reg_client {
	CURL *curl;
	const struct imgf_fetch_opts *opts;
	/* credentials and TLS (imgf_registry_pull_as); NULL: anonymous, TLS verified */
	const struct imgf_push_opts *access;
	char *registry;	 /* "HOST[:PORT]" the bytes come from */
	char *base;	 /* "https://HOST/v2/REPO" */
	char *scope;	 /* "repository:REPO:pull" */
	char *auth;	 /* "Authorization: ..." once a challenge was answered */
	char *auth_file; /* with access: the docker config.json credentials come from */
	char *user, *password;
	bool creds_read;
	bool in_token;	     /* asking a token endpoint: its 401 is final */
	char *no_proxy;	     /* NOPROXY: the environment's list plus loopback */
	int64_t deadline_ms; /* monotonic end of the whole pull; 0 = none */
};

/* Where a response body goes: a capped buffer, or a file hashed while it is written. */
struct sink {
	struct strbuf *buf; /* with buf->max set */
	int fd;		    /* -1 when buf is used */
	struct imgf_digest *dg;
	uint64_t limit;	   /* for fd: the descriptor's size */
	const char *label; /* progress bar label or NULL */
	uint64_t written;  /* the last attempt's body bytes */
};

/* A reply's status and the headers the client reads. */
struct reply {
	long status;
	struct imgf_http_headers h;
};

#define REPLY_INIT                                                                           \
	{                                                                                    \
		.h = {.names = {"Content-Type", "Docker-Content-Digest", "WWW-Authenticate", \
				"Retry-After"} }                                             \
	}

void imgf_registry_reply_release(struct reply *r);

/* GET url (Accept: accept) into s, r the reply: the registry's challenge answered once (a
 * token fetched, or Basic with the credentials), failures retried as the policy says, within
 * the pull's deadline. */
int imgf_registry_get(struct reg_client *c, const char *url, const char *accept, struct sink *s,
		      struct reply *r, struct imgf_error **err);

#endif
