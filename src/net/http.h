/*
 * The one HTTP layer over libcurl. The GCS client, the registry pull and push clients and the
 * Docker Engine client (over its unix socket or tcp) make whole requests here (struct
 * imgf_http_req: method, URL, headers, a body from memory, a file range or a reader, a sink
 * into capped memory, a file or a callback, the reply headers wanted, the shared options)
 * with imgf_http_do, which applies the one retry policy (retry.h); downloads (fetch-*.c) run
 * the same requests in parallel over curl multi with imgf_http_prepare/finish. Here too:
 * libcurl initialised once, the options every request shares (user agent, connect timeout,
 * stall limit, allowed protocols and redirects, no signals), progress bars and SIGINT, and
 * the one URL escaper.
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

/*
 * The retry policy, the one every request loop takes its decisions from: imgf_http_do's, the
 * downloader's per-transfer timers (fetch-xfer.c), the GCS resumable upload's chunks and the
 * registry push's blob sessions. Its numbers for one kind of request:
 */
struct imgf_http_retry {
	int max_attempts; /* attempts in all, >= 1 */
	long base_ms;	  /* the first backoff, doubled per attempt, +-50% jitter */
};

#define IMGF_HTTP_MAX_ATTEMPTS 5 /* the default number of attempts */

/* The retry policy's numbers for `max_attempts`: the base backoff is IMGFORGE_RETRY_BASE_MS
 * (milliseconds, tests make it short), else 1000; read here and nowhere else. */
struct imgf_http_retry imgf_http_retry_policy(int max_attempts);
/* The same for a client's options, where 0 means the default: max_attempts <= 0 is
 * IMGF_HTTP_MAX_ATTEMPTS, base_ms <= 0 the base imgf_http_retry_policy reads. */
struct imgf_http_retry imgf_http_retry_for(int max_attempts, long base_ms);

/* Whether a failure is one the policy retries: a transport failure (rc != CURLE_OK) or a
 * status (retry.h). */
bool imgf_http_retry_failure(CURLcode rc, long status);
/* Whether `attempt` attempts leave another. */
bool imgf_http_retry_left(const struct imgf_http_retry *p, int attempt);
/* Whether a failed attempt (`attempt` of them so far) is worth another: a failure the policy
 * retries, and attempts left. */
bool imgf_http_retry_worth(const struct imgf_http_retry *p, int attempt, CURLcode rc, long status);

/* What the policy says after a failure worth a retry. */
enum imgf_http_retry_next {
	IMGF_HTTP_RETRY_WAIT,	   /* another attempt, after *delay_ms */
	IMGF_HTTP_RETRY_EXHAUSTED, /* no attempts left */
	IMGF_HTTP_RETRY_DEADLINE,  /* the wait would end past the deadline */
};
/* After failed attempt `attempt` (1 = the first): attempts left, and the wait before the next
 * (imgf_http_retry_delay) unless it would end past deadline_ms (monotonic, 0 = none). */
enum imgf_http_retry_next imgf_http_retry_next(const struct imgf_http_retry *p, int attempt,
					       long retry_after_s, int64_t deadline_ms,
					       long *delay_ms);
/* The wait before the next attempt: base_ms doubled per attempt with jitter, or Retry-After
 * seconds when the server sent them (>= 0); capped. */
long imgf_http_retry_delay(const struct imgf_http_retry *p, int attempt, long retry_after_s);
/* The one warning about a retry: "PREFIX: WHY; retrying in S s (attempt N of M)". */
void imgf_http_retry_log(const struct imgf_http_retry *p, int attempt, long delay_ms,
			 const char *prefix, const char *why);

/* Percent-encode s into sb: all but RFC 3986's unreserved characters (and '/' when
 * keep_slash), as curl_easy_escape does. The one URL escaper. */
void imgf_http_escape(struct strbuf *sb, const char *s, bool keep_slash);
/* The same, newly allocated. */
char *imgf_http_escaped(const char *s);

/* ---- whole requests ---- */

enum imgf_http_body_kind {
	IMGF_HTTP_BODY_NONE,
	IMGF_HTTP_BODY_MEMORY, /* data, len */
	IMGF_HTTP_BODY_FILE,   /* the range [off, off+len) of fd, read with pread */
	IMGF_HTTP_BODY_READER, /* read() until it returns 0; len, or -1 = unknown (chunked) */
};

/* What a request sends. A file body that ends early (the file shrank) or cannot be read
 * aborts the transfer with `shrank` or `read_errno` set. */
struct imgf_http_body {
	enum imgf_http_body_kind kind;
	const void *data;
	int fd;
	uint64_t off;
	int64_t len;
	/* READER: the bytes put in buf, 0 at the end, CURL_READFUNC_ABORT to fail */
	size_t (*read)(void *arg, char *buf, size_t len);
	void *arg;
	/* FILE: told every range read, as it is read (an upload hashing what it sends) */
	void (*seen)(void *arg, uint64_t at, const char *buf, size_t n);
	/* results of the last attempt */
	uint64_t pos; /* bytes handed to the transport */
	int read_errno;
	bool shrank;
};

enum imgf_http_sink_kind {
	IMGF_HTTP_SINK_DISCARD,
	IMGF_HTTP_SINK_MEMORY,	 /* into buf, capped by buf->max */
	IMGF_HTTP_SINK_FILE,	 /* written to fd at its offset, at most max bytes (0 = no cap) */
	IMGF_HTTP_SINK_CALLBACK, /* write() returns len to go on, anything else fails */
};

/*
 * Where the reply body goes. Past the cap the transfer fails (CURLE_WRITE_ERROR) with
 * `overflow` set; a failed write sets `write_errno`. `tee` sees every byte the sink takes (a
 * digest of a download). With `errbody` set, the body of a reply that is not 2xx goes there
 * instead, its first errbody_max bytes: the status says what happened, the body only adds
 * the server's words, so an endless one is not read to its end (`errbody_cut`, and the
 * attempt still counts as an exchange, rc CURLE_OK).
 */
struct imgf_http_sink {
	enum imgf_http_sink_kind kind;
	struct strbuf *buf;
	int fd;
	uint64_t max;
	size_t (*write)(void *arg, const char *data, size_t len);
	void *arg;
	void (*tee)(void *arg, const char *data, size_t len);
	void *tee_arg;
	struct strbuf *errbody;
	size_t errbody_max;
	/* results of the last attempt */
	uint64_t written;
	bool overflow;
	bool errbody_cut;
	int write_errno;
};

struct imgf_http_req;

/* The outcome of a request: the last attempt's transfer result and status. */
struct imgf_http_resp {
	CURLcode rc;
	long status;
	int attempts;		   /* the policy counted (an answered challenge is not one) */
	bool exhausted;		   /* the last failure was worth a retry but none was left */
	bool interrupted;	   /* SIGINT/SIGTERM stopped it (rc CURLE_ABORTED_BY_CALLBACK) */
	bool deadline_passed;	   /* the request's deadline came first */
	uint64_t sent;		   /* body bytes given to the transport (never less than curl's) */
	curl_off_t content_length; /* of the reply, -1 unknown */
	char errbuf[CURL_ERROR_SIZE];
};

/* What an `after` hook says of an attempt. */
enum imgf_http_verdict {
	IMGF_HTTP_POLICY = 0, /* let the retry policy decide */
	IMGF_HTTP_AGAIN = 1,  /* once more, and it does not count (a challenge was answered) */
	IMGF_HTTP_DONE = 2,   /* no more attempts */
};

/*
 * One request: method (NULL = GET; HEAD asks for no body), URL, the caller's header list,
 * a body, a sink, the reply headers wanted, the shared options, and the retry policy.
 * `what` names it in retry warnings ("METHOD 'what'"; NULL = the URL).
 */
struct imgf_http_req {
	const char *method;
	const char *url;
	const char *what;
	struct curl_slist *headers;
	struct imgf_http_body body;
	struct imgf_http_sink sink;
	struct imgf_http_headers *reply_headers;
	struct imgf_http_opts opts;
	long upload_buffer; /* CURLOPT_UPLOAD_BUFFERSIZE, 0 = curl's */
	/* Retries (imgf_http_do): none when NULL. Only idempotent methods (GET, HEAD, PUT,
	 * DELETE) are retried unless retry_unsafe says resending is harmless. */
	const struct imgf_http_retry *retry;
	bool retry_unsafe;
	/* A monotonic end (imgf_http_mono_ms) for all attempts and the waits between them;
	 * 0 = none. Each attempt's timeout is what is left; a wait that would end past it is
	 * not begun. */
	int64_t deadline_ms;
	/* Hooks, all optional. before: ready an attempt (a fresh token in the headers); -1 stops
	 * with *err. after: an attempt's verdict, or -1 with *err. why: the retry warning's words
	 * for a status (NULL: "HTTP N"); transport failures get curl's. */
	int (*before)(struct imgf_http_req *q, void *arg, struct imgf_error **err);
	int (*after)(struct imgf_http_req *q, struct imgf_http_resp *r, void *arg,
		     struct imgf_error **err);
	char *(*why)(struct imgf_http_req *q, struct imgf_http_resp *r, void *arg);
	void *hook_arg;
	CURL *curl; /* the running attempt's handle (for the callbacks) */
};

/* The monotonic clock, in milliseconds. */
int64_t imgf_http_mono_ms(void);
/* NOPROXY for clients that speak to loopback servers: the environment's no_proxy (or
 * NO_PROXY) plus localhost, 127.0.0.0/8 and ::1, which never go through a proxy. */
char *imgf_http_no_proxy_loopback(void);

/* Append "NAME: VALUE" (printf-style) to a header list. */
void imgf_http_header_add(struct curl_slist **list, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Ready handle h (fresh, or reused: it is reset) for one attempt of q: the shared options,
 * method, body, sink and reply headers. For callers that drive the transfer themselves
 * (curl multi); imgf_http_finish then reads the outcome.
 */
void imgf_http_prepare(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r);
/* The outcome of an attempt that ended with rc: status, bytes sent, reply length. */
void imgf_http_finish(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r, CURLcode rc);
/* One attempt on h (NULL: a handle of its own). -1 only when `before` failed; the outcome of
 * the exchange is in *r. */
int imgf_http_perform(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r,
		      struct imgf_error **err);
/*
 * The request with its retry policy: transport failures and 408/429/5xx are retried with
 * backoff (Retry-After honoured when the reply headers include it), each retry warned
 * about. Returns 0 with the final outcome in *r (the caller decides which statuses are
 * errors and words them), -1 when a hook failed.
 */
int imgf_http_do(CURL *h, struct imgf_http_req *q, struct imgf_http_resp *r,
		 struct imgf_error **err);
/* curl's words for r's transport failure (see imgf_http_curl_reason), newly allocated. */
char *imgf_http_resp_reason(const struct imgf_http_resp *r);

#endif
