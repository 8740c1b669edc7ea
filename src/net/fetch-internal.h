/*
 * What the parts of the downloader share: fetch.c (the public calls: options, one URL into a
 * buffer, and imgf_fetch_all with its checksum lists and cache placement), fetch-loop.c (the
 * parallel loop over the transfers, on a curl multi handle) and fetch-xfer.c (one transfer:
 * its attempts, the curl callbacks, the partial file, verification and messages). Not for
 * other users.
 */
#ifndef IMGF_FETCH_INTERNAL_H
#define IMGF_FETCH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "digest.h"
#include "fetch.h"
#include "http.h"

struct imgf_error;
struct strbuf;

enum xfer_state {
	XFER_PENDING, /* not started, or due to start over */
	XFER_RUNNING, /* its easy handle is in the multi */
	XFER_WAITING, /* backing off, or waiting for another process's lock */
	XFER_DONE,
	XFER_FAILED,
};

/* Why a callback stopped a transfer (curl only reports CURLE_WRITE_ERROR). */
enum xfer_abort {
	ABORT_NONE,
	ABORT_HTTP,	 /* status >= 400: classify by the status */
	ABORT_WRITE,	 /* local I/O failed, write_errno says why */
	ABORT_TOO_LARGE, /* the body went (or its Content-Length would go) past the cap */
	ABORT_BAD_RANGE, /* 206 for a different range than asked */
};

/* One URL being fetched, into the cache (in != NULL) or into a buffer. */
struct xfer {
	struct imgf_input *in;
	const char *url;
	const char *label;
	struct strbuf *buf;
	size_t buf_max;
	uint64_t max; /* for a cache transfer: the input's cap */

	char *part_path;
	char *final_path;
	int fd;
	uint64_t file_size; /* bytes in the partial file, every one of them hashed */
	struct imgf_digest d_alg;
	struct imgf_digest d_sha256; /* only when the checksum is not sha256 */
	bool hashing;
	bool resumed;	/* bytes from an earlier request were kept */
	bool restarted; /* already started over from byte 0 once */
	bool lock_wait_logged;

	enum xfer_state state;
	CURL *easy;
	bool in_multi;
	int attempt; /* attempts started */
	int64_t next_at_ms;

	/* per attempt */
	uint64_t range_from;
	bool body_started;
	struct imgf_http_headers hdrs; /* Retry-After, Content-Range, the reason phrase */
	enum xfer_abort abort;
	int write_errno;
	uint64_t expect_total;	    /* 0 = unknown */
	uint64_t announced;	    /* a Content-Length past the cap, else 0 */
	struct imgf_http_req req;   /* the request of every attempt: into on_write */
	struct imgf_http_resp resp; /* the last attempt's outcome, and curl's words */
};

struct fetch {
	const struct imgf_fetch_opts *o;
	CURLM *multi;
	struct xfer **xfers;
	size_t n, alloc;
	struct imgf_error *err; /* the first failure; stops the rest */
	int64_t last_progress_ms;
	int64_t deadline_ms;	      /* monotonic; 0 = none */
	struct imgf_http_retry retry; /* the policy's numbers: o->max_attempts, o->retry_base_ms */
};

/* ---- the loop (fetch-loop.c) ------------------------------------------------------------- */

/* f with the options o, corrected into *fixed (which f then points to). */
void imgf_fetch_init(struct fetch *f, const struct imgf_fetch_opts *o,
		     struct imgf_fetch_opts *fixed);

/* A transfer of url into f (pending; the caller sets where it goes). */
struct xfer *imgf_fetch_xfer_new(struct fetch *f, const char *url, const char *label);

/* Run f's transfers to the end, at most o->parallel at a time: 0 when all are done, -1 on
 * the first failure (in f->err), an interrupt or the deadline. */
int imgf_fetch_run(struct fetch *f);

/* Hand the fetch's first error to the caller's err (which keeps an error it already has). */
void imgf_fetch_take_error(struct fetch *f, struct imgf_error **err);
void imgf_fetch_release(struct fetch *f);

/* ---- one transfer (fetch-xfer.c) --------------------------------------------------------- */

/* The monotonic clock in milliseconds. */
int64_t imgf_fetch_now_ms(void);

/* x's request, its body into on_write. */
void imgf_fetch_req_setup(struct xfer *x, long stall_s);

/* The next attempt of x (for a cache transfer the partial file locked first). */
void imgf_fetch_xfer_start(struct fetch *f, struct xfer *x);

/* An attempt of x ended with rc: done, failed, or due again. */
void imgf_fetch_xfer_done(struct fetch *f, struct xfer *x, CURLcode rc);

/* Record x's failure; the first one becomes the fetch's error. */
__attribute__((format(printf, 4, 5))) void imgf_fetch_xfer_fail(struct fetch *f, struct xfer *x,
								int status, const char *fmt, ...);

void imgf_fetch_xfer_digests_release(struct xfer *x);

/* The partial file closed (and removed when `remove`, or when it is empty). */
void imgf_fetch_xfer_close_partial(struct xfer *x, bool remove);

/* Verify an existing cache entry: 1 when it holds what `in` wants (and fill in), 0 when it is
 * missing or corrupt (a corrupt one is deleted), -1 on error. */
int imgf_fetch_cache_entry_check(struct imgf_input *in, const char *final_path,
				 struct imgf_error **err);

/* The "fetch" event for in: downloaded and verified, or found in the cache. */
void imgf_fetch_event_fetched(const struct imgf_input *in, bool cached);

#endif
