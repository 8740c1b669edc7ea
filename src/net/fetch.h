/*
 * Downloads over libcurl into a content-addressed cache, each verified against its checksum
 * before anyone may use it: CACHE/downloads/ALG/HEX. Retries 408/429/5xx and timeouts with
 * exponential backoff and jitter, resumes partial downloads with Range, runs transfers in
 * parallel (curl multi), draws a progress bar on a TTY.
 *
 * Cache layout: CACHE/downloads/ALG/HEX (verified, mode 0444) and, while downloading,
 * CACHE/downloads/partial/<sha256 of the URL>.part (locked with flock, so processes sharing
 * a cache wait for each other instead of writing the same file).
 *
 * Environment:
 *   IMGFORGE_CACHE_DIR       the cache (else $XDG_CACHE_HOME/imgforge, else ~/.cache/imgforge)
 *   IMGFORGE_RETRY_BASE_MS   the default retry_base_ms of imgf_fetch_opts_default (tests use
 *                            a few ms so retries do not slow them down)
 */
#ifndef IMGF_FETCH_H
#define IMGF_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct imgf_error;
struct strbuf;

struct imgf_input {
	/* set by the caller */
	char *name;	/* label for logs and the manifest, e.g. "containerd" */
	char *url;	/* http(s):// or file:// */
	char *checksum; /* a checksum spec, see checksum.h */
	char *origin;	/* where the URL came from, for errors, e.g. "variable 'containerd_url'" */
	char *checksum_origin; /* likewise for a checksum list's URL (NULL = same as origin) */
	uint64_t max_size;     /* the most bytes it may have; 0 = imgf_fetch_opts.max_size */
	bool own_record;       /* the step records it in the manifest itself (a locked .deb:
				  kind "deb"), not the engine as a downloaded file */
	/* filled by imgf_fetch_all */
	char *path; /* the verified file in the cache (read-only for users) */
	char sha256[65];
	enum imgf_digest_alg alg; /* the algorithm of the checksum that was verified */
	char hex[IMGF_DIGEST_HEX_MAX];
	uint64_t size;
};

struct imgf_fetch_opts {
	const char *cache_dir; /* IMGFORGE_CACHE_DIR or $XDG_CACHE_HOME/imgforge */
	int max_attempts;      /* per URL, default 5 */
	long retry_base_ms;    /* first backoff, default 1000, doubled each time, +-50% jitter */
	int parallel;	       /* concurrent transfers, default 4 */
	uint64_t max_size;     /* an input's cap unless it sets its own, default 4 GiB: a body
				  past it (or a Content-Length over it) fails and is removed */
	long timeout_s;	       /* one imgf_fetch_all or imgf_fetch_to_buffer call, retries and
				  all, default 3600; 0 = none */
	long stall_s;	       /* a transfer under 1 KiB/s this long is a failed attempt,
				  default 60 */
};

#define IMGF_FETCH_MAX_SIZE_DEFAULT (4ull << 30)
#define IMGF_FETCH_TIMEOUT_DEFAULT 3600L

void imgf_fetch_opts_default(struct imgf_fetch_opts *o, const char *cache_dir);
/* The default cache directory from the environment (newly allocated). */
char *imgf_cache_dir_default(void);

/*
 * Resolve every input's checksum (fetching checksum lists), then download what the cache
 * lacks, in parallel, and verify. On failure nothing unverified is left in the cache and
 * the error names the input, its URL, its origin and, for a mismatch, both digests.
 */
int imgf_fetch_all(struct imgf_input *inputs, size_t n, const struct imgf_fetch_opts *o,
		   struct imgf_error **err);
/* A small document (checksum list, token reply) into memory, capped at `max` bytes. */
int imgf_fetch_to_buffer(const char *url, size_t max, const struct imgf_fetch_opts *o,
			 struct strbuf *out, struct imgf_error **err);
/* The checksum list `url` of input `in` into memory, capped at `max`; a failure names the
 * input and where the list's URL came from. */
int imgf_fetch_checksum_list(const struct imgf_input *in, const char *url, size_t max,
			     const struct imgf_fetch_opts *o, struct strbuf *out,
			     struct imgf_error **err);
void imgf_input_release(struct imgf_input *in);

/*
 * Whether `url` is plain http:// to a host other than loopback (127.0.0.0/8, localhost,
 * ::1): anyone on the way can change what it says. Checksum lists and token endpoints on
 * such URLs are warned about, since everything they vouch for rests on them.
 */
bool imgf_url_unauthenticated(const char *url);

#endif
