#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
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

#include "checksum.h"
#include "digest.h"
#include "dlcache.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"

/* With the default 5 attempts and 1 s base a URL gives up within a few minutes at worst:
 * see http.h for the bounds of one attempt. */
#define LIST_MAX (1024 * 1024) /* a checksum list is text; a bigger one is not a list */
#define LOCK_POLL_MS 500       /* how often to look whether another process is done */
#define PROGRESS_INTERVAL_MS 100
#define POLL_MAX_MS 100 /* so imgf_interrupted is noticed promptly */

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
	int64_t deadline_ms; /* monotonic; 0 = none */
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *imgf_cache_dir_default(void)
{
	const char *v = getenv("IMGFORGE_CACHE_DIR");
	if (v && *v)
		return xstrdup(v);
	v = getenv("XDG_CACHE_HOME");
	if (v && v[0] == '/') /* the XDG spec says to ignore relative paths */
		return path_join(v, "imgforge");
	v = getenv("HOME");
	if (!v || !*v) {
		struct passwd *pw = getpwuid(getuid());
		v = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/tmp";
	}
	return xasprintf("%s/.cache/imgforge", v);
}

void imgf_fetch_opts_default(struct imgf_fetch_opts *o, const char *cache_dir)
{
	o->cache_dir = cache_dir;
	o->max_attempts = 5;
	o->retry_base_ms = imgf_http_retry_policy(o->max_attempts).base_ms;
	o->parallel = 4;
	o->max_size = IMGF_FETCH_MAX_SIZE_DEFAULT;
	o->timeout_s = IMGF_FETCH_TIMEOUT_DEFAULT;
	o->stall_s = IMGF_HTTP_STALL_S_DEFAULT;
}

int imgf_fetch_checksum_list(const struct imgf_input *in, const char *url, size_t max,
			     const struct imgf_fetch_opts *o, struct strbuf *out,
			     struct imgf_error **err)
{
	if (imgf_fetch_to_buffer(url, max, o, out, err) == 0)
		return 0;
	const char *co = in->checksum_origin ? in->checksum_origin : in->origin;
	if (co && *err && (*err)->status != IMGF_EXIT_INTERRUPTED)
		imgf_error_suffix(err, " (URL from %s; point it at a mirror with --var)", co);
	return imgf_error_prefix(err, "'%s': checksum list", in->name);
}

void imgf_input_release(struct imgf_input *in)
{
	free(in->name);
	free(in->url);
	free(in->checksum);
	free(in->origin);
	free(in->checksum_origin);
	free(in->path);
	memset(in, 0, sizeof(*in));
}

/* ---- messages ---- */

static char *origin_suffix(const struct xfer *x)
{
	if (!x->in || !x->in->origin || !*x->in->origin)
		return xstrdup("");
	return xasprintf(" (URL from %s; point it at a mirror with --var)", x->in->origin);
}

/* Record x's failure; the first one becomes the fetch's error. */
__attribute__((format(printf, 4, 5))) static void xfer_fail(struct fetch *f, struct xfer *x,
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

static void xfer_digests_release(struct xfer *x)
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
	xfer_digests_release(x);
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

static void xfer_close_partial(struct xfer *x, bool remove)
{
	if (x->fd < 0)
		return;
	struct stat st;
	if (remove || (fstat(x->fd, &st) == 0 && st.st_size == 0))
		unlink(x->part_path);
	close(x->fd);
	x->fd = -1;
}

/* Verify an existing cache entry: 1 when it holds what `in` wants (and fill in), 0 when it is
 * missing or corrupt (a corrupt one is deleted), -1 on error. */
static int cache_entry_check(struct imgf_input *in, const char *final_path, struct imgf_error **err)
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

static void event_fetched(const struct imgf_input *in, bool cached)
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

static void req_setup(struct xfer *x, long stall_s)
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
		event_fetched(x->in, false);
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
		x->next_at_ms = now_ms() + LOCK_POLL_MS;
		return 0;
	}
	/* Another process may have finished it while we waited for the lock. */
	if (r == 0)
		r = cache_entry_check(x->in, x->final_path, &e);
	if (r == 1) {
		xfer_close_partial(x, true);
		x->state = XFER_DONE;
		event_fetched(x->in, true);
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
		xfer_fail(f, x, e->status, "%s", e->msg);
		imgf_error_free(e);
		return -1;
	}
	return 1;
}

static void xfer_start(struct fetch *f, struct xfer *x)
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
		xfer_fail(f, x, IMGF_EXIT_FAIL, "%s", curl_multi_strerror(mc));
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
		xfer_fail(f, x, IMGF_EXIT_FAIL, "truncate '%s': %s", x->part_path,
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
		xfer_close_partial(x, true);
		_cleanup_free_ char *origin = origin_suffix(x);
		x->state = XFER_FAILED;
		imgf_error_set(&f->err, IMGF_EXIT_FAIL,
			       "'%s': %s mismatch for '%s': want %s, got %s%s", in->name, alg,
			       x->url, in->hex, got, origin);
		return;
	}

	struct imgf_error *e = NULL;
	if (imgf_dlcache_commit(x->fd, x->part_path, x->final_path, &e) < 0) {
		xfer_close_partial(x, true);
		xfer_fail(f, x, e->status, "%s", e->msg);
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

static void xfer_done(struct fetch *f, struct xfer *x, CURLcode rc)
{
	imgf_http_finish(x->easy, &x->req, &x->resp, rc);
	long code = x->resp.status;
	x->state = XFER_WAITING;

	if (x->abort == ABORT_WRITE) {
		xfer_fail(f, x, IMGF_EXIT_FAIL, "write '%s': %s", x->part_path,
			  strerror(x->write_errno));
		return;
	}
	if (x->abort == ABORT_TOO_LARGE && x->buf) {
		xfer_fail(f, x, IMGF_EXIT_FAIL, "larger than %zu bytes", x->buf_max);
		return;
	}
	if (x->abort == ABORT_TOO_LARGE) {
		/* Nothing past the cap is kept: the partial would only grow again next time. */
		xfer_close_partial(x, true);
		_cleanup_free_ char *said = x->announced
						    ? xasprintf(" (the server announced %llu)",
								(unsigned long long)x->announced)
						    : xstrdup("");
		xfer_fail(f, x, IMGF_EXIT_FAIL,
			  "larger than the cap of %llu bytes%s; raise it with the step's "
			  "'max_size' or variable 'download_max_size'",
			  (unsigned long long)x->max, said);
		return;
	}
	if (rc == CURLE_ABORTED_BY_CALLBACK && imgf_interrupted) {
		xfer_fail(f, x, IMGF_EXIT_INTERRUPTED, "interrupted");
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
			xfer_fail(f, x, IMGF_EXIT_FAIL, "truncate '%s': %s", x->part_path,
				  strerror(x->write_errno));
		} else if (x->attempt < f->o->max_attempts) {
			log_debug("fetch '%s': the server cannot resume, starting over", x->label);
			x->state = XFER_PENDING;
		} else {
			xfer_fail(f, x, IMGF_EXIT_FAIL,
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

	struct imgf_http_retry policy = {f->o->max_attempts, f->o->retry_base_ms};
	bool by_status = code >= 400 && (rc == CURLE_OK || x->abort == ABORT_HTTP);
	_cleanup_free_ char *reason = NULL;
	if (!by_status)
		reason = curl_reason(x, rc);
	else if (x->hdrs.reason[0])
		reason = xasprintf("http %ld %s", code, x->hdrs.reason);
	else
		reason = xasprintf("http %ld", code);
	if (!imgf_http_retry_worth(&policy, x->attempt, by_status ? CURLE_OK : rc, code)) {
		if (x->attempt > 1)
			xfer_fail(f, x, IMGF_EXIT_FAIL, "%s (gave up after %d attempts)", reason,
				  x->attempt);
		else
			xfer_fail(f, x, IMGF_EXIT_FAIL, "%s", reason);
		return;
	}
	long delay = imgf_http_retry_delay(&policy, x->attempt, imgf_http_retry_after(&x->hdrs));
	_cleanup_free_ char *prefix = xasprintf("fetch '%s'", x->label);
	imgf_http_retry_log(&policy, x->attempt, delay, prefix, reason);
	x->next_at_ms = now_ms() + delay;
}

/* ---- the loop ---- */

static void draw_progress(struct fetch *f)
{
	int64_t now = now_ms();
	if (now - f->last_progress_ms < PROGRESS_INTERVAL_MS)
		return;
	f->last_progress_ms = now;
	uint64_t done = 0, total = 0;
	size_t active = 0;
	const char *label = NULL;
	bool total_known = true;
	for (size_t i = 0; i < f->n; i++) {
		struct xfer *x = f->xfers[i];
		if (!x->in || (x->state != XFER_RUNNING && x->state != XFER_WAITING))
			continue;
		active++;
		label = x->label;
		done += x->file_size;
		if (x->expect_total)
			total += x->expect_total;
		else
			total_known = false;
	}
	if (!active)
		return;
	_cleanup_free_ char *many = active > 1 ? xasprintf("downloading %zu files", active) : NULL;
	imgf_progress(many ? many : label, done, total_known ? total : 0);
}

static void xfer_remove(struct fetch *f, struct xfer *x)
{
	if (x->in_multi)
		curl_multi_remove_handle(f->multi, x->easy);
	x->in_multi = false;
}

static void fetch_abort_running(struct fetch *f)
{
	for (size_t i = 0; i < f->n; i++)
		xfer_remove(f, f->xfers[i]);
}

static int fetch_run(struct fetch *f)
{
	bool progress = imgf_log_progress_enabled();
	for (;;) {
		if (imgf_interrupted) {
			for (size_t i = 0; i < f->n; i++)
				if (f->xfers[i]->state != XFER_DONE)
					xfer_fail(f, f->xfers[i], IMGF_EXIT_INTERRUPTED,
						  "interrupted");
		}
		if (f->err)
			break;
		if (f->deadline_ms && now_ms() >= f->deadline_ms) {
			for (size_t i = 0; i < f->n; i++)
				if (f->xfers[i]->state != XFER_DONE)
					xfer_fail(f, f->xfers[i], IMGF_EXIT_FAIL,
						  "not done within %ld s (variable "
						  "'download_timeout')",
						  f->o->timeout_s);
			break;
		}

		int64_t now = now_ms();
		int running = 0;
		for (size_t i = 0; i < f->n; i++)
			running += f->xfers[i]->state == XFER_RUNNING;
		for (size_t i = 0; i < f->n && running < f->o->parallel && !f->err; i++) {
			struct xfer *x = f->xfers[i];
			if (x->state == XFER_PENDING ||
			    (x->state == XFER_WAITING && now >= x->next_at_ms)) {
				xfer_start(f, x);
				running += x->state == XFER_RUNNING;
			}
		}
		if (f->err)
			break;

		int still = 0;
		CURLMcode mc = curl_multi_perform(f->multi, &still);
		if (mc != CURLM_OK) {
			imgf_error_set(&f->err, IMGF_EXIT_FAIL, "fetch: %s",
				       curl_multi_strerror(mc));
			break;
		}
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(f->multi, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct xfer *x = NULL;
			CURLcode rc = msg->data.result;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			xfer_remove(f, x);
			xfer_done(f, x, rc);
		}
		if (f->err)
			break;

		bool busy = false, pending = false;
		int64_t wait = POLL_MAX_MS;
		now = now_ms();
		running = 0;
		for (size_t i = 0; i < f->n; i++) {
			struct xfer *x = f->xfers[i];
			if (x->state == XFER_PENDING || x->state == XFER_RUNNING)
				busy = true;
			running += x->state == XFER_RUNNING;
			pending |= x->state == XFER_PENDING;
			if (x->state == XFER_WAITING) {
				busy = true;
				if (x->next_at_ms - now < wait)
					wait = x->next_at_ms - now > 0 ? x->next_at_ms - now : 0;
			}
		}
		if (!busy)
			break;
		if (running >= f->o->parallel)
			wait = POLL_MAX_MS; /* no free slot: only a running transfer can change that
					     */
		else if (pending)
			wait = 0; /* a restart is ready to go now */
		if (progress)
			draw_progress(f);
		if (wait > 0)
			curl_multi_poll(f->multi, NULL, 0, (int)wait, NULL);
	}
	fetch_abort_running(f);
	if (progress)
		imgf_progress_done();
	return f->err ? -1 : 0;
}

static void fetch_init(struct fetch *f, const struct imgf_fetch_opts *o,
		       struct imgf_fetch_opts *fixed)
{
	*fixed = *o;
	if (fixed->max_attempts < 1)
		fixed->max_attempts = 1;
	if (fixed->parallel < 1)
		fixed->parallel = 1;
	if (fixed->parallel > 64)
		fixed->parallel = 64;
	if (fixed->retry_base_ms < 0)
		fixed->retry_base_ms = 0;
	if (fixed->max_size == 0)
		fixed->max_size = IMGF_FETCH_MAX_SIZE_DEFAULT;
	if (fixed->stall_s <= 0)
		fixed->stall_s = IMGF_HTTP_STALL_S_DEFAULT;
	memset(f, 0, sizeof(*f));
	f->o = fixed;
	if (fixed->timeout_s > 0)
		f->deadline_ms = now_ms() + fixed->timeout_s * 1000;
}

static struct xfer *xfer_new(struct fetch *f, const char *url, const char *label)
{
	struct xfer *x = xcalloc(1, sizeof(*x));
	x->url = url;
	x->label = label;
	x->fd = -1;
	x->state = XFER_PENDING;
	x->max = f->o->max_size;
	x->hdrs = (struct imgf_http_headers){.names = {"Retry-After", "Content-Range"}};
	x->easy = curl_easy_init();
	if (!x->easy) {
		fputs("imgforge: curl_easy_init failed\n", stderr);
		abort();
	}
	req_setup(x, f->o->stall_s);
	ALLOC_GROW(f->xfers, f->n + 1, f->alloc);
	f->xfers[f->n++] = x;
	return x;
}

static void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (x->hashing)
		xfer_digests_release(x);
	xfer_close_partial(x, false);
	curl_easy_cleanup(x->easy);
	imgf_http_headers_reset(&x->hdrs);
	free(x->part_path);
	free(x->final_path);
	free(x);
}

/* Hand the fetch's first error to the caller's err (which keeps an error it already has). */
static void fetch_take_error(struct fetch *f, struct imgf_error **err)
{
	if (err && !*err)
		*err = STEAL_POINTER(&f->err);
}

static void fetch_release(struct fetch *f)
{
	fetch_abort_running(f);
	for (size_t i = 0; i < f->n; i++)
		xfer_free(f->xfers[i]);
	free(f->xfers);
	if (f->multi)
		curl_multi_cleanup(f->multi);
	imgf_error_free(f->err);
	memset(f, 0, sizeof(*f));
}

int imgf_fetch_to_buffer(const char *url, size_t max, const struct imgf_fetch_opts *o,
			 struct strbuf *out, struct imgf_error **err)
{
	struct imgf_fetch_opts defaults, fixed;
	if (!o) {
		imgf_fetch_opts_default(&defaults, NULL);
		o = &defaults;
	}
	if (imgf_http_init(err) < 0)
		return -1;
	struct fetch f;
	fetch_init(&f, o, &fixed);
	f.multi = curl_multi_init();
	struct xfer *x = xfer_new(&f, url, url);
	size_t saved_max = out->max;
	x->buf = out;
	x->buf_max = max;
	out->max = max;
	int r = fetch_run(&f);
	out->max = saved_max;
	out->overflow = 0;
	if (r < 0) {
		strbuf_reset(out);
		fetch_take_error(&f, err);
	}
	fetch_release(&f);
	return r;
}

bool imgf_url_unauthenticated(const char *url)
{
	if (!url || strncasecmp(url, "http://", 7) != 0)
		return false;
	CURLU *u = curl_url();
	char *host = NULL;
	bool remote = true;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		struct in_addr a4;
		remote = !(!strcasecmp(host, "localhost") || !strcmp(host, "[::1]") ||
			   (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127));
	}
	curl_free(host);
	curl_url_cleanup(u);
	return remote;
}

/* ---- imgf_fetch_all ---- */

/* Checksum lists already read in this call: many inputs share one SHA256SUMS. */
struct list_cache {
	char *url;
	struct strbuf text;
};

/* The file name a checksum list knows the URL's file by: its last path component. */
static char *url_file_name(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t len = strcspn(p, "?#");
	const char *slash = memrchr(p, '/', len);
	const char *base = slash ? slash + 1 : p + len; /* no path at all: host only */
	size_t blen = (size_t)(p + len - base);
	char *name = xstrndup(base, blen);
	if (strchr(name, '%')) {
		int out = 0;
		char *u = curl_easy_unescape(NULL, name, (int)blen, &out);
		if (u && out > 0 && (size_t)out == strlen(u) && !strchr(u, '/')) {
			free(name);
			name = xstrdup(u);
		}
		curl_free(u);
	}
	return name;
}

static int resolve_checksum(struct imgf_input *in, const struct imgf_fetch_opts *o,
			    struct list_cache **lists, size_t *nlists, size_t *alloc,
			    struct imgf_error **err)
{
	struct imgf_checksum c;
	if (imgf_checksum_parse(in->checksum, &c, err) < 0)
		return imgf_error_prefix(err, "fetch '%s'", in->name);
	if (c.is_list) {
		struct list_cache *l = NULL;
		for (size_t i = 0; i < *nlists && !l; i++)
			if (strcmp((*lists)[i].url, c.url) == 0)
				l = &(*lists)[i];
		if (!l) {
			struct strbuf text = STRBUF_INIT;
			if (imgf_fetch_checksum_list(in, c.url, LIST_MAX, o, &text, err) < 0) {
				strbuf_release(&text);
				imgf_checksum_release(&c);
				return -1;
			}
			if (imgf_url_unauthenticated(c.url))
				log_warn("'%s': checksum list '%s' comes over plain http: the "
					 "download's integrity rests on an unauthenticated "
					 "connection (serve it over https)",
					 in->name, c.url);
			ALLOC_GROW(*lists, *nlists + 1, *alloc);
			l = &(*lists)[(*nlists)++];
			l->url = xstrdup(c.url);
			l->text = text;
		}
		_cleanup_free_ char *file = url_file_name(in->url);
		int r;
		if (!*file)
			r = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"'%s': URL '%s' names no file to look up in checksum list "
				"'%s'",
				in->name, in->url, c.url);
		else if ((r = imgf_checksum_list_lookup(&c, l->text.buf, l->text.len, file, err)) <
			 0)
			imgf_error_prefix(err, "'%s'", in->name);
		if (r < 0) {
			imgf_checksum_release(&c);
			return -1;
		}
	}
	in->alg = c.alg;
	memcpy(in->hex, c.hex, sizeof(in->hex));
	imgf_checksum_release(&c);
	return 0;
}

static void list_cache_free(struct list_cache *lists, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lists[i].url);
		strbuf_release(&lists[i].text);
	}
	free(lists);
}

int imgf_fetch_all(struct imgf_input *inputs, size_t n, const struct imgf_fetch_opts *o,
		   struct imgf_error **err)
{
	struct imgf_fetch_opts defaults, fixed;
	if (!o) {
		imgf_fetch_opts_default(&defaults, NULL);
		o = &defaults;
	}
	if (n == 0)
		return 0;
	if (imgf_http_init(err) < 0)
		return -1;
	_cleanup_free_ char *default_dir = o->cache_dir ? NULL : imgf_cache_dir_default();
	const char *cache = o->cache_dir ? o->cache_dir : default_dir;

	/* 1. Every checksum, so a bad one fails before anything is downloaded. */
	struct list_cache *lists = NULL;
	size_t nlists = 0, lists_alloc = 0;
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (!inputs[i].name || !inputs[i].url || !inputs[i].checksum)
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "fetch '%s': input needs a name, a URL and a checksum",
					   inputs[i].name ? inputs[i].name : "(unnamed)");
		else
			r = resolve_checksum(&inputs[i], o, &lists, &nlists, &lists_alloc, err);
	}
	list_cache_free(lists, nlists);
	if (r < 0)
		return -1;

	/* 2. What the cache has, verified; the rest becomes transfers. */
	_cleanup_free_ char *partial = imgf_dlcache_partial_dir(cache);
	if (mkdir_p(partial, 0755, err) < 0)
		return imgf_error_prefix(err, "cache '%s'", cache);
	struct fetch f;
	fetch_init(&f, o, &fixed);
	f.multi = curl_multi_init();
	_cleanup_free_ struct xfer **owner =
		xcalloc(n, sizeof(*owner)); /* the transfer per input */
	for (size_t i = 0; i < n && r == 0; i++) {
		struct imgf_input *in = &inputs[i];
		_cleanup_free_ char *final = imgf_dlcache_entry(cache, in->alg, in->hex);
		for (size_t j = 0; j < i && r == 0; j++) {
			if (strcmp(inputs[j].url, in->url) == 0 &&
			    (inputs[j].alg != in->alg || strcmp(inputs[j].hex, in->hex) != 0))
				r = imgf_error_set(err, IMGF_EXIT_FAIL,
						   "inputs '%s' and '%s' fetch '%s' with different "
						   "checksums",
						   inputs[j].name, in->name, in->url);
			else if (!owner[i] && owner[j] && strcmp(owner[j]->final_path, final) == 0)
				owner[i] = owner[j]; /* the same file: download it once */
		}
		if (owner[i] || r < 0)
			continue;
		r = cache_entry_check(in, final, err);
		if (r < 0) {
			imgf_error_prefix(err, "fetch '%s'", in->name);
			break;
		}
		if (r == 1) {
			event_fetched(in, true);
			r = 0;
			continue;
		}
		_cleanup_free_ char *dir = path_dirname(final);
		if (mkdir_p(dir, 0755, err) < 0) {
			r = imgf_error_prefix(err, "cache '%s'", cache);
			break;
		}
		char url_hash[IMGF_DIGEST_HEX_MAX];
		imgf_digest_buffer(IMGF_SHA256, in->url, strlen(in->url), url_hash);
		struct xfer *x = xfer_new(&f, in->url, in->name);
		x->in = in;
		if (in->max_size)
			x->max = in->max_size;
		x->final_path = STEAL_POINTER(&final);
		x->part_path = xasprintf("%s/%s.part", partial, url_hash);
		owner[i] = x;
	}

	/* 3. Download, in parallel, verifying as the bytes arrive. */
	if (r == 0)
		r = fetch_run(&f);
	if (r == 0) {
		for (size_t i = 0; i < n; i++) {
			struct imgf_input *in = &inputs[i];
			const struct imgf_input *src = owner[i] ? owner[i]->in : NULL;
			if (!src || src == in)
				continue;
			free(in->path);
			in->path = xstrdup(src->path);
			memcpy(in->sha256, src->sha256, sizeof(in->sha256));
			in->size = src->size;
		}
	} else {
		fetch_take_error(&f, err);
	}
	fetch_release(&f);
	return r;
}
