/*
 * The one HTTP layer over libcurl. Downloads (fetch.c), the registry client, the GCS client
 * and the Docker Engine client (over its unix socket or tcp) all set their handles up here:
 * libcurl initialised once, the options every request shares (user agent, connect timeout,
 * stall limit, allowed protocols and redirects, no signals), a capped reply body, the reply
 * headers a client asks for, progress bars and SIGINT, and the one retry policy (retry.h)
 * between attempts.
 */
#ifndef IMGF_HTTP_H
#define IMGF_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "retry.h"

struct imgf_error;
struct strbuf;

#ifndef IMGF_VERSION
#define IMGF_VERSION "unknown"
#endif

#define IMGF_HTTP_USER_AGENT "imgforge/" IMGF_VERSION
/*
 * Time bounds. A dead server costs at most IMGF_HTTP_CONNECT_TIMEOUT_S per attempt, a stalled
 * one (under IMGF_HTTP_STALL_BYTES_PER_S) its stall time, and no single backoff (nor
 * Retry-After) exceeds IMGF_RETRY_DELAY_CAP_MS.
 */
#define IMGF_HTTP_CONNECT_TIMEOUT_S 30L
#define IMGF_HTTP_STALL_BYTES_PER_S 1024L
#define IMGF_HTTP_STALL_S_DEFAULT 60L
#define IMGF_HTTP_MAX_REDIRS 10L

/* curl_global_init, once per process (thread-safe); an error when libcurl cannot start. */
int imgf_http_init(struct imgf_error **err);

/* A progress bar (when stderr shows one) and the SIGINT check, for one handle. */
struct imgf_http_progress {
	const char *label;    /* the bar's label; NULL = no bar */
	bool upload;	      /* count bytes sent, not received */
	uint64_t base;	      /* added to curl's count (an upload resumed at an offset) */
	uint64_t total;	      /* the bar's 100%; 0 = what curl knows of the size */
	bool uninterruptible; /* SIGINT/SIGTERM does not abort the transfer */
	int64_t last_ms;      /* when the bar was last drawn */
};

struct imgf_http_opts {
	const char *protocols;	     /* the URL's allowed schemes; NULL = "http,https" */
	const char *redir_protocols; /* follow up to IMGF_HTTP_MAX_REDIRS redirects to these
					schemes; NULL = follow none */
	long stall_s;		     /* under 1 KiB/s this long fails the attempt (a timeout);
					0 = IMGF_HTTP_STALL_S_DEFAULT, < 0 = no stall limit */
	long timeout_ms;	     /* the whole transfer; 0 = no limit */
	const char *unix_socket;     /* speak HTTP over this unix socket (the Docker Engine) */
	const char *no_proxy;	     /* CURLOPT_NOPROXY, or NULL */
	const char *tls_ca;	     /* CA certificates to verify the server with, or NULL */
	const char *tls_cert;	     /* a client certificate and its key, or NULL */
	const char *tls_key;
	bool tls_no_verify;		     /* TLS without verifying the server (said out loud by
						the caller) */
	char *errbuf;			     /* CURL_ERROR_SIZE bytes for curl's words, or NULL */
	struct imgf_http_progress *progress; /* NULL = only the SIGINT check */
};

/*
 * Put the options every imgforge request shares on a fresh (or curl_easy_reset) handle:
 * user agent, connect timeout, stall limit, protocols, redirects, no signals, TCP
 * keepalive, error buffer, and a progress callback that draws o->progress and aborts the
 * transfer (CURLE_ABORTED_BY_CALLBACK) on SIGINT/SIGTERM.
 */
void imgf_http_setup(CURL *h, const struct imgf_http_opts *o);
/* imgf_http_init, then a new handle with imgf_http_setup(o); NULL and *err on failure. */
CURL *imgf_http_easy_new(const struct imgf_http_opts *o, struct imgf_error **err);

/*
 * A CURLOPT_WRITEFUNCTION collecting the body into the strbuf given as its data, capped at
 * the strbuf's max: past it the transfer fails with CURLE_WRITE_ERROR and buf->overflow set.
 */
size_t imgf_http_write_strbuf(char *data, size_t size, size_t nmemb, void *strbuf);

#define IMGF_HTTP_HEADERS_MAX 8

/*
 * The reply headers a client wants: set `names` (NULL-terminated, at most
 * IMGF_HTTP_HEADERS_MAX - 1), pass the struct as CURLOPT_HEADERDATA with
 * imgf_http_on_header. Each new response (after a redirect or a 100) starts afresh, so the
 * values are the final response's; the first of repeated headers wins.
 */
struct imgf_http_headers {
	const char *names[IMGF_HTTP_HEADERS_MAX];
	char *values[IMGF_HTTP_HEADERS_MAX];
	char reason[64]; /* the status line's reason phrase, printable, lowercase */
};

size_t imgf_http_on_header(char *data, size_t size, size_t nmemb, void *headers);
/* The value of header `name` (one of h->names, case-insensitive), or NULL. */
const char *imgf_http_header_get(const struct imgf_http_headers *h, const char *name);
/* Retry-After as seconds (see imgf_retry_after_s), -1 when absent or unreadable. */
long imgf_http_retry_after(const struct imgf_http_headers *h);
/* Forget the values (the names stay). */
void imgf_http_headers_reset(struct imgf_http_headers *h);

/* curl's words for a failed transfer (errbuf when it says something), lowercased to read
 * like ours, without a final period; newly allocated. */
char *imgf_http_curl_reason(const char *errbuf, CURLcode rc);

/* The retry policy's numbers for one kind of request. */
struct imgf_http_retry {
	int max_attempts; /* attempts in all, >= 1 */
	long base_ms;	  /* the first backoff, doubled per attempt, +-50% jitter */
};

/* Whether a failed attempt (`attempt` of them so far) is worth another: a transport failure
 * or status the policy retries (retry.h), and attempts left. */
bool imgf_http_retry_worth(const struct imgf_http_retry *p, int attempt, CURLcode rc, long status);
/* The wait before the next attempt, and the one warning about it:
 * "PREFIX: WHY; retrying in S s (attempt N of M)". */
long imgf_http_retry_delay(const struct imgf_http_retry *p, int attempt, long retry_after_s);
void imgf_http_retry_log(const struct imgf_http_retry *p, int attempt, long delay_ms,
			 const char *prefix, const char *why);

#endif
