/*
 * One transfer of the downloader: an attempt set up and started, the body checked as it
 * starts and written to the buffer or to the locked partial file (hashed as it comes,
 * resumed with Range), then verified and moved into the cache, or retried per the retry
 * policy, or failed with a message that says where the URL came from. The loop that runs
 * the transfers is in fetch-loop.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "digest.h"
#include "dlcache.h"
#include "error.h"
#include "fetch.h"
#include "fetch-internal.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"

#define LOCK_POLL_MS 500 /* how often to look whether another process is done */

int64_t imgf_fetch_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- messages ---- */

static char *origin_suffix(const struct xfer *x)
{
	if (!x->in || !x->in->origin || !*x->in->origin)
		return xstrdup("");
	return xasprintf(" (URL from %s; point it at a mirror with --var)", x->in->origin);
}

__attribute__((format(printf, 4, 5))) void imgf_fetch_xfer_fail(struct fetch *f, struct xfer *x,
								int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *reason = xvasprintf(fmt, ap);
	va_end(ap);
	/* An interrupt is no reason to look at where the URL came from. */
	_cleanup_free_ char *origin =
		status == IMGF_EXIT_INTERRUPTED ? xstrdup("") : origin_suffix(x);
	x->state = XFER_FAILED;
	if (x->in)
		imgf_error_set(&f->err, status, "fetch '%s' from '%s': %s%s", x->in->name, x->url,
			       reason, origin);
	else
		imgf_error_set(&f->err, status, "fetch '%s': %s", x->url, reason);
}

/* curl's own words for a failure, lowercased to read like ours. */
static char *curl_reason(struct xfer *x, CURLcode rc)
{
	if (rc == CURLE_COULDNT_RESOLVE_HOST) {
		char *eff = NULL, *host = NULL;
		curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &eff);
		CURLU *u = curl_url();
		if (u && curl_url_set(u, CURLUPART_URL, eff ? eff : x->url, 0) == CURLUE_OK &&
		    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
			char *r = xasprintf("could not resolve host '%s'", host);
			curl_free(host);
			curl_url_cleanup(u);
			return r;
		}
		curl_url_cleanup(u);
	}
	return imgf_http_curl_reason(x->resp.errbuf, rc);
}

/* ---- curl callbacks ---- */

/* The first body bytes of an attempt: decide what the response means before keeping any. */
static int body_start(struct xfer *x)
{
	long code = 0;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 400) {
		x->abort = ABORT_HTTP;
		return -1;
	}
	curl_off_t cl = -1;
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (x->buf) {
		if (cl > 0 && (uint64_t)cl > x->buf_max) {
			x->abort = ABORT_TOO_LARGE;
			return -1;
		}
		return 0;
	}
	/* curl itself fails a 200 answer to a Range request (CURLE_RANGE_ERROR). */
	if (x->range_from > 0) {
		const char *cr = imgf_http_header_get(&x->hdrs, "Content-Range");
		bool has_start =
			cr && strncasecmp(cr, "bytes ", 6) == 0 && cr[6] >= '0' && cr[6] <= '9';
		if (code == 206 && has_start && strtoull(cr + 6, NULL, 10) != x->range_from) {
			x->abort = ABORT_BAD_RANGE;
			return -1;
		}
		x->resumed = true;
	}
	x->expect_total = cl > 0 ? x->range_from + (uint64_t)cl : 0;
	if (x->expect_total > x->max) {
		x->announced = x->expect_total;
		x->abort = ABORT_TOO_LARGE;
		return -1;
	}
	return 0;
}

/* The requests' sink: the body into the buffer or the partial file, hashed as it comes. */
static size_t on_write(void *userp, const char *data, size_t n)
{
	struct xfer *x = userp;
	if (!x->body_started) {
		x->body_started = true;
		if (body_start(x) < 0)
			return 0;
	}
	if (x->buf) {
		strbuf_add(x->buf, data, n);
		if (x->buf->overflow) {
			x->abort = ABORT_TOO_LARGE;
			return 0;
		}
		return n;
	}
	if (x->file_size + n > x->max) {
		x->abort = ABORT_TOO_LARGE;
		return 0;
	}
	for (size_t done = 0; done < n;) {
		ssize_t w = pwrite(x->fd, data + done, n - done, (off_t)(x->file_size + done));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			x->write_errno = errno;
			x->abort = ABORT_WRITE;
			return 0;
		}
		done += (size_t)w;
	}
	imgf_digest_update(&x->d_alg, data, n);
	if (x->d_sha256.ctx)
		imgf_digest_update(&x->d_sha256, data, n);
	x->file_size += n;
	return n;
}

/* ---- the partial file ---- */

static void xfer_digests_init(struct xfer *x)
{
	imgf_digest_init(&x->d_alg, x->in->alg);
	if (x->in->alg != IMGF_SHA256)
		imgf_digest_init(&x->d_sha256, IMGF_SHA256);
	x->hashing = true;
}

void imgf_fetch_xfer_digests_release(struct xfer *x)
{
	imgf_digest_release(&x->d_alg);
	imgf_digest_release(&x->d_sha256);
	x->hashing = false;
}

/* Back to byte 0: the partial's bytes are not part of what we are getting. */
static int xfer_restart_file(struct xfer *x)
{
	if (ftruncate(x->fd, 0) < 0) {
		x->write_errno = errno;
		x->abort = ABORT_WRITE;
		return -1;
	}
	imgf_fetch_xfer_digests_release(x);
	xfer_digests_init(x);
	x->file_size = 0;
	x->resumed = false;
	return 0;
}

/*
 * Open and lock the partial file, so two imgforge processes sharing a cache never write the
 * same one. Returns 0 when locked, 1 when another process holds it, -1 on error.
 */
static int partial_open_locked(struct xfer *x, struct imgf_error **err)
{
	for (int tries = 0; tries < 10; tries++) {
		int fd = open(x->part_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			return imgf_error_errno(err, errno, "open '%s'", x->part_path);
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e = errno;
			close(fd);
			if (e == EWOULDBLOCK)
				return 1;
			return imgf_error_errno(err, e, "lock '%s'", x->part_path);
		}
		/* The holder may have renamed or removed it meanwhile: then ours is stale. */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && stat(x->part_path, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			x->fd = fd;
			return 0;
		}
		close(fd);
	}
	return imgf_error_set(err, IMGF_EXIT_FAIL, "lock '%s': it keeps changing", x->part_path);
}

void imgf_fetch_xfer_close_partial(struct xfer *x, bool remove)
{
	if (x->fd < 0)
		return;
	struct stat st;
	if (remove || (fstat(x->fd, &st) == 0 && st.st_size == 0))
		unlink(x->part_path);
	close(x->fd);
	x->fd = -1;
}

int imgf_fetch_cache_entry_check(struct imgf_input *in, const char *final_path,
				 struct imgf_error **err)
{
	_cleanup_free_ char *what = xasprintf("fetch '%s'", in->name);
	uint64_t size = 0;
	int r = imgf_dlcache_check(final_path, in->alg, in->hex, UINT64_MAX, what, in->sha256,
				   &size, err);
	if (r == 1) {
		free(in->path);
		in->path = xstrdup(final_path);
		in->size = size;
	}
	return r;
}

void imgf_fetch_event_fetched(const struct imgf_input *in, bool cached)
{
	_cleanup_free_ char *human =
		cached ? xasprintf("fetch '%s': cached", in->name)
		       : xasprintf("fetch '%s': %llu bytes, %s verified", in->name,
				   (unsigned long long)in->size, imgf_digest_alg_name(in->alg));
	imgf_event("fetch",
		   json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "name", in->name, "url", in->url, "path",
			     in->path, "sha256", in->sha256, "size", (json_int_t)in->size, "cached",
			     cached),
		   human);
}

/* ---- attempts ---- */

void imgf_fetch_req_setup(struct xfer *x, long stall_s)
{
	/* Never let a redirect reach file:// (or anything but http). */
	x->req = (struct imgf_http_req){
		.url = x->url,
		.sink = {.kind = IMGF_HTTP_SINK_CALLBACK, .write = on_write, .arg = x},
		.reply_headers = &x->hdrs,
		.opts = {.protocols = "http,https,file",
			 .redir_protocols = "http,https",
			 .stall_s = stall_s},
	};
}

static void xfer_succeed(struct xfer *x)
{
	x->state = XFER_DONE;
	if (x->in)
		imgf_fetch_event_fetched(x->in, false);
}

/* A cache transfer's first step: the lock, a finished entry someone else left, old bytes. */
static int xfer_open(struct fetch *f, struct xfer *x)
{
	struct imgf_error *e = NULL;
	int r = partial_open_locked(x, &e);
	if (r == 1) {
		if (!x->lock_wait_logged)
			log_info("fetch '%s': waiting for another imgforge downloading '%s'",
				 x->label, x->url);
		x->lock_wait_logged = true;
		x->state = XFER_WAITING;
		x->next_at_ms = imgf_fetch_now_ms() + LOCK_POLL_MS;
		return 0;
	}
	/* Another process may have finished it while we waited for the lock. */
	if (r == 0)
		r = imgf_fetch_cache_entry_check(x->in, x->final_path, &e);
	if (r == 1) {
		imgf_fetch_xfer_close_partial(x, true);
		x->state = XFER_DONE;
		imgf_fetch_event_fetched(x->in, true);
		return 0;
	}
	/* A partial past the cap (from an earlier run, or a lower cap now) is dropped. */
	struct stat st;
	if (r == 0 && fstat(x->fd, &st) == 0 && (uint64_t)st.st_size > x->max) {
		log_warn("fetch '%s': dropping a partial download of %llu bytes, over the cap of "
			 "%llu",
			 x->label, (unsigned long long)st.st_size, (unsigned long long)x->max);
		if (ftruncate(x->fd, 0) < 0)
			r = imgf_error_errno(&e, errno, "truncate '%s'", x->part_path);
	}
	if (r == 0) {
		xfer_digests_init(x);
		uint64_t size = 0;
		r = imgf_dlcache_hash_fd(x->part_path, x->fd, x->in->alg, &x->d_alg, &x->d_sha256,
					 &size, &e);
		x->file_size = size;
		if (r == 0 && size > 0)
			log_debug("fetch '%s': resuming after %llu bytes", x->label,
				  (unsigned long long)size);
	}
	if (r < 0) {
		imgf_fetch_xfer_fail(f, x, e->status, "%s", e->msg);
		imgf_error_free(e);
		return -1;
	}
	return 1;
}

void imgf_fetch_xfer_start(struct fetch *f, struct xfer *x)
{
	if (x->in && x->fd < 0) {
		if (xfer_open(f, x) <= 0)
			return;
	}
	if (x->attempt == 0 && x->in)
		log_info("fetch '%s' from '%s'", x->label, x->url);
	else if (x->attempt == 0)
		log_debug("fetch '%s'", x->url);
	x->attempt++;
	x->range_from = x->in ? x->file_size : 0;
	x->body_started = false;
	imgf_http_headers_reset(&x->hdrs);
	x->abort = ABORT_NONE;
	x->write_errno = 0;
	x->expect_total = 0;
	x->announced = 0;
	if (x->buf)
		strbuf_reset(x->buf);
	imgf_http_prepare(x->easy, &x->req, &x->resp);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->range_from);
	CURLMcode mc = curl_multi_add_handle(f->multi, x->easy);
	if (mc != CURLM_OK) {
		imgf_fetch_xfer_fail(f, x, IMGF_EXIT_FAIL, "%s", curl_multi_strerror(mc));
		return;
	}
	x->in_multi = true;
	x->state = XFER_RUNNING;
}

/* Start over from byte 0, once, when resumed bytes turned out not to fit. */
static bool xfer_try_restart(struct fetch *f, struct xfer *x, const char *why)
{
	if (x->restarted || !x->in)
		return false;
	log_warn("fetch '%s': %s, downloading '%s' again from the start", x->label, why, x->url);
	x->abort = ABORT_NONE;
	if (xfer_restart_file(x) < 0) {
		imgf_fetch_xfer_fail(f, x, IMGF_EXIT_FAIL, "truncate '%s': %s", x->part_path,
				     strerror(x->write_errno));
		return true;
	}
	x->restarted = true;
	x->attempt = 0;
	x->state = XFER_PENDING;
	return true;
}

/* All bytes are in: compare digests, then move the file into the cache. */
static void xfer_verify(struct fetch *f, struct xfer *x)
{
	struct imgf_input *in = x->in;
	char got[IMGF_DIGEST_HEX_MAX], got256[IMGF_DIGEST_HEX_MAX];
	imgf_digest_final_hex(&x->d_alg, got);
	if (in->alg != IMGF_SHA256)
		imgf_digest_final_hex(&x->d_sha256, got256);
	else
		memcpy(got256, got, sizeof(got256));
	x->hashing = false;
	const char *alg = imgf_digest_alg_name(in->alg);

	if (strcmp(got, in->hex) != 0) {
		if (x->resumed) {
			_cleanup_free_ char *why = xasprintf("%s mismatch after resuming", alg);
			if (xfer_try_restart(f, x, why))
				return;
		}
		imgf_fetch_xfer_close_partial(x, true);
		_cleanup_free_ char *origin = origin_suffix(x);
		x->state = XFER_FAILED;
		imgf_error_set(&f->err, IMGF_EXIT_FAIL,
			       "'%s': %s mismatch for '%s': want %s, got %s%s", in->name, alg,
			       x->url, in->hex, got, origin);
		return;
	}

	struct imgf_error *e = NULL;
	if (imgf_dlcache_commit(x->fd, x->part_path, x->final_path, &e) < 0) {
		imgf_fetch_xfer_close_partial(x, true);
		imgf_fetch_xfer_fail(f, x, e->status, "%s", e->msg);
		imgf_error_free(e);
		return;
	}
	close(x->fd);
	x->fd = -1;
	free(in->path);
	in->path = xstrdup(x->final_path);
	memcpy(in->sha256, got256, sizeof(in->sha256));
	in->size = x->file_size;
	xfer_succeed(x);
}

void imgf_fetch_xfer_done(struct fetch *f, struct xfer *x, CURLcode rc)
{
	imgf_http_finish(x->easy, &x->req, &x->resp, rc);
	long code = x->resp.status;
	x->state = XFER_WAITING;

	if (x->abort == ABORT_WRITE) {
		imgf_fetch_xfer_fail(f, x, IMGF_EXIT_FAIL, "write '%s': %s", x->part_path,
				     strerror(x->write_errno));
		return;
	}
	if (x->abort == ABORT_TOO_LARGE && x->buf) {
		imgf_fetch_xfer_fail(f, x, IMGF_EXIT_FAIL, "larger than %zu bytes", x->buf_max);
		return;
	}
	if (x->abort == ABORT_TOO_LARGE) {
		/* Nothing past the cap is kept: the partial would only grow again next time. */
		imgf_fetch_xfer_close_partial(x, true);
		_cleanup_free_ char *said = x->announced
						    ? xasprintf(" (the server announced %llu)",
								(unsigned long long)x->announced)
						    : xstrdup("");
		imgf_fetch_xfer_fail(
			f, x, IMGF_EXIT_FAIL,
			"larger than the cap of %llu bytes%s; raise it with the step's "
			"'max_size' or variable 'download_max_size'",
			(unsigned long long)x->max, said);
		return;
	}
	if (rc == CURLE_ABORTED_BY_CALLBACK && imgf_interrupted) {
		imgf_fetch_xfer_fail(f, x, IMGF_EXIT_INTERRUPTED, "interrupted");
		return;
	}
	/* Past the end: the partial may be complete already (a crash before the rename). */
	if (x->in && x->range_from > 0 && !x->restarted &&
	    (code == 416 || rc == CURLE_BAD_DOWNLOAD_RESUME)) {
		x->resumed = true;
		xfer_verify(f, x);
		return;
	}
	/* No resuming from this server (200 instead of 206, or another range): from byte 0. */
	if (x->in && x->range_from > 0 &&
	    (rc == CURLE_RANGE_ERROR || x->abort == ABORT_BAD_RANGE)) {
		if (xfer_restart_file(x) < 0) {
			imgf_fetch_xfer_fail(f, x, IMGF_EXIT_FAIL, "truncate '%s': %s",
					     x->part_path, strerror(x->write_errno));
		} else if (imgf_http_retry_left(&f->retry, x->attempt)) {
			log_debug("fetch '%s': the server cannot resume, starting over", x->label);
			x->state = XFER_PENDING;
		} else {
			imgf_fetch_xfer_fail(
				f, x, IMGF_EXIT_FAIL,
				"the server cannot resume a download (gave up after %d attempts)",
				x->attempt);
		}
		return;
	}
	if (rc == CURLE_OK && code < 400) {
		if (x->in)
			xfer_verify(f, x);
		else
			xfer_succeed(x);
		return;
	}

	bool by_status = code >= 400 && (rc == CURLE_OK || x->abort == ABORT_HTTP);
	_cleanup_free_ char *reason = NULL;
	if (!by_status)
		reason = curl_reason(x, rc);
	else if (x->hdrs.reason[0])
		reason = xasprintf("http %ld %s", code, x->hdrs.reason);
	else
		reason = xasprintf("http %ld", code);
	/* The retry policy decides; the wait is this transfer's timer in the loop, which fails
	 * everything at the fetch's deadline. */
	long delay = 0;
	if (!imgf_http_retry_failure(by_status ? CURLE_OK : rc, code) ||
	    imgf_http_retry_next(&f->retry, x->attempt, imgf_http_retry_after(&x->hdrs), 0,
				 &delay) != IMGF_HTTP_RETRY_WAIT) {
		if (x->attempt > 1)
			imgf_fetch_xfer_fail(f, x, IMGF_EXIT_FAIL, "%s (gave up after %d attempts)",
					     reason, x->attempt);
		else
			imgf_fetch_xfer_fail(f, x, IMGF_EXIT_FAIL, "%s", reason);
		return;
	}
	_cleanup_free_ char *prefix = xasprintf("fetch '%s'", x->label);
	imgf_http_retry_log(&f->retry, x->attempt, delay, prefix, reason);
	x->next_at_ms = imgf_fetch_now_ms() + delay;
}
