/*
 * The downloader's loop: the transfers of one call on a curl multi handle, at most
 * `parallel` running at once, started again when their backoff or another process's lock
 * is over, with a progress bar on a TTY, until all are done, one fails, an interrupt
 * arrives or the deadline passes. One transfer's steps are in fetch-xfer.c.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "error.h"
#include "fetch.h"
#include "fetch-internal.h"
#include "http.h"
#include "log.h"
#include "util.h"

#define PROGRESS_INTERVAL_MS 100
#define POLL_MAX_MS 100 /* so imgf_interrupted is noticed promptly */

/* ---- the loop ---- */

static void draw_progress(struct fetch *f)
{
	int64_t now = imgf_fetch_now_ms();
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

int imgf_fetch_run(struct fetch *f)
{
	bool progress = imgf_log_progress_enabled();
	for (;;) {
		if (imgf_interrupted) {
			for (size_t i = 0; i < f->n; i++)
				if (f->xfers[i]->state != XFER_DONE)
					imgf_fetch_xfer_fail(f, f->xfers[i], IMGF_EXIT_INTERRUPTED,
							     "interrupted");
		}
		if (f->err)
			break;
		if (f->deadline_ms && imgf_fetch_now_ms() >= f->deadline_ms) {
			for (size_t i = 0; i < f->n; i++)
				if (f->xfers[i]->state != XFER_DONE)
					imgf_fetch_xfer_fail(f, f->xfers[i], IMGF_EXIT_FAIL,
							     "not done within %ld s (variable "
							     "'download_timeout')",
							     f->o->timeout_s);
			break;
		}

		int64_t now = imgf_fetch_now_ms();
		int running = 0;
		for (size_t i = 0; i < f->n; i++)
			running += f->xfers[i]->state == XFER_RUNNING;
		for (size_t i = 0; i < f->n && running < f->o->parallel && !f->err; i++) {
			struct xfer *x = f->xfers[i];
			if (x->state == XFER_PENDING ||
			    (x->state == XFER_WAITING && now >= x->next_at_ms)) {
				imgf_fetch_xfer_start(f, x);
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
			imgf_fetch_xfer_done(f, x, rc);
		}
		if (f->err)
			break;

		bool busy = false, pending = false;
		int64_t wait = POLL_MAX_MS;
		now = imgf_fetch_now_ms();
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

void imgf_fetch_init(struct fetch *f, const struct imgf_fetch_opts *o,
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
	f->retry = (struct imgf_http_retry){fixed->max_attempts, fixed->retry_base_ms};
	if (fixed->timeout_s > 0)
		f->deadline_ms = imgf_fetch_now_ms() + fixed->timeout_s * 1000;
}

struct xfer *imgf_fetch_xfer_new(struct fetch *f, const char *url, const char *label)
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
	imgf_fetch_req_setup(x, f->o->stall_s);
	ALLOC_GROW(f->xfers, f->n + 1, f->alloc);
	f->xfers[f->n++] = x;
	return x;
}

static void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (x->hashing)
		imgf_fetch_xfer_digests_release(x);
	imgf_fetch_xfer_close_partial(x, false);
	curl_easy_cleanup(x->easy);
	imgf_http_headers_reset(&x->hdrs);
	free(x->part_path);
	free(x->final_path);
	free(x);
}

void imgf_fetch_take_error(struct fetch *f, struct imgf_error **err)
{
	if (err && !*err)
		*err = STEAL_POINTER(&f->err);
}

void imgf_fetch_release(struct fetch *f)
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
