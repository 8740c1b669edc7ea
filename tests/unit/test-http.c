/*
 * The HTTP layer (src/net/http.c) against the test server (httpd.h) on loopback: the shared
 * options, the capped body, header capture, the retry policy, the stall limit and the
 * overall timeout, allowed protocols, and SIGINT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "http.h"
#include "strbuf.h"
#include "util.h"

#include "httpd.h"
#include "test.h"

static struct {
	struct test_httpd httpd;
	char *root;
} srv;

static void server_stop(void)
{
	test_httpd_stop(&srv.httpd);
	if (srv.root)
		rm_rf(srv.root, NULL);
	free(srv.root);
	memset(&srv, 0, sizeof(srv));
}

static int server_start(void)
{
	if (srv.httpd.port)
		return 0;
	if (make_temp_dir("test-http", &srv.root, NULL) < 0)
		return -1;
	_cleanup_free_ char *www = path_join(srv.root, "www");
	if (mkdir(www, 0755) < 0)
		return -1;
	_cleanup_free_ char *big = path_join(www, "big.bin");
	_cleanup_free_ char *data = xmalloc(100000);
	memset(data, 'x', 100000);
	if (write_file_atomic(big, data, 100000, 0644, NULL) < 0)
		return -1;
	atexit(server_stop);
	return test_httpd_start(&srv.httpd, www, NULL, NULL);
}

#define SETUP()                                        \
	do {                                           \
		if (server_start() < 0) {              \
			CHECK(!"test server started"); \
			return;                        \
		}                                      \
	} while (0)

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* GET base+path (or an absolute URL) with the shared setup; body into `body`, the headers
 * into `h` (may be NULL), the status into *status. */
static CURLcode get(const char *path, const struct imgf_http_opts *o, struct strbuf *body,
		    struct imgf_http_headers *h, long *status)
{
	struct imgf_error *err = NULL;
	CURL *c = imgf_http_easy_new(o, &err);
	CHECK(c != NULL);
	if (!c) {
		imgf_error_free(err);
		return CURLE_FAILED_INIT;
	}
	_cleanup_free_ char *url =
		strstr(path, "://") ? xstrdup(path) : xasprintf("%s%s", srv.httpd.base, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, imgf_http_write_strbuf);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	if (h) {
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, imgf_http_on_header);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
	}
	CURLcode rc = curl_easy_perform(c);
	*status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	return rc;
}

TEST(every_request_says_who_it_is)
{
	SETUP();
	struct strbuf body = STRBUF_INIT;
	long status;
	CHECK(get("/x?echo=1", NULL, &body, NULL, &status) == CURLE_OK);
	CHECK(status == 200);
	CHECK(body.buf && strstr(body.buf, "User-Agent: imgforge/"));
	strbuf_release(&body);
}

TEST(a_body_past_its_cap_fails_the_transfer)
{
	SETUP();
	struct strbuf body = STRBUF_INIT;
	body.max = 1000;
	long status;
	CHECK(get("/big.bin", NULL, &body, NULL, &status) == CURLE_WRITE_ERROR);
	CHECK(body.overflow);
	CHECK(body.len <= 1000);
	strbuf_release(&body);

	struct strbuf fits = STRBUF_INIT;
	fits.max = 100000;
	CHECK(get("/big.bin", NULL, &fits, NULL, &status) == CURLE_OK);
	CHECK(!fits.overflow);
	CHECK(fits.len == 100000);
	strbuf_release(&fits);
}

TEST(headers_are_the_final_responses_and_the_first_of_repeats_wins)
{
	SETUP();
	struct imgf_http_headers h = {.names = {"Location", "X-Test", "Content-Length"}};
	struct strbuf body = STRBUF_INIT;
	long status;
	/* Not following: the 302 and its Location. */
	CHECK(get("/a?redirect=/b%3Fecho%3D1", NULL, &body, &h, &status) == CURLE_OK);
	CHECK(status == 302);
	CHECK_STR(imgf_http_header_get(&h, "location"), "/b?echo=1");
	CHECK_STR(h.reason, "found");
	/* Following: the redirect's headers are forgotten. */
	struct imgf_http_opts o = {.redir_protocols = "http,https"};
	strbuf_reset(&body);
	CHECK(get("/a?redirect=/b%3Fecho%3D1", &o, &body, &h, &status) == CURLE_OK);
	CHECK(status == 200);
	CHECK(imgf_http_header_get(&h, "Location") == NULL);
	CHECK_STR(imgf_http_header_get(&h, "X-Test"), "one");
	CHECK_STR(h.reason, "ok");
	CHECK(imgf_http_header_get(&h, "Retry-After") == NULL); /* not asked for */
	imgf_http_headers_reset(&h);
	strbuf_release(&body);
}

TEST(retry_after_and_the_reason_phrase_of_a_refusal)
{
	SETUP();
	struct imgf_http_headers h = {.names = {"Retry-After"}};
	struct strbuf body = STRBUF_INIT;
	long status;
	CHECK(get("/big.bin?fail=503&times=1000&retry_after=7", NULL, &body, &h, &status) ==
	      CURLE_OK);
	CHECK(status == 503);
	CHECK(imgf_http_retry_after(&h) == 7);
	CHECK_STR(h.reason, "service unavailable");
	imgf_http_headers_reset(&h);
	CHECK(imgf_http_retry_after(&h) == -1);
	strbuf_release(&body);
}

TEST(the_retry_policy)
{
	struct imgf_http_retry p = {.max_attempts = 3, .base_ms = 100};
	CHECK(imgf_http_retry_worth(&p, 1, CURLE_OK, 503));
	CHECK(imgf_http_retry_worth(&p, 2, CURLE_OK, 429));
	CHECK(!imgf_http_retry_worth(&p, 3, CURLE_OK, 503)); /* no attempts left */
	CHECK(!imgf_http_retry_worth(&p, 1, CURLE_OK, 404));
	CHECK(imgf_http_retry_worth(&p, 1, CURLE_OPERATION_TIMEDOUT, 0));
	CHECK(imgf_http_retry_worth(&p, 1, CURLE_COULDNT_CONNECT, 0));
	CHECK(!imgf_http_retry_worth(&p, 1, CURLE_COULDNT_RESOLVE_HOST, 0));
	long d = imgf_http_retry_delay(&p, 2, -1); /* 200 ms +-50% */
	CHECK(d >= 100 && d <= 300);
	CHECK(imgf_http_retry_delay(&p, 1, 2) == 2000); /* Retry-After wins */
	CHECK(imgf_http_retry_delay(&p, 1, 3600) == IMGF_RETRY_DELAY_CAP_MS);
}

/* What a loop of its own (the downloader's timers, a resumable upload's chunks) asks. */
TEST(the_retry_policy_next_attempt)
{
	struct imgf_http_retry p = {.max_attempts = 3, .base_ms = 100};
	long d = -1;
	CHECK(imgf_http_retry_failure(CURLE_OK, 503) &&
	      imgf_http_retry_failure(CURLE_RECV_ERROR, 0));
	CHECK(!imgf_http_retry_failure(CURLE_OK, 404) && !imgf_http_retry_failure(CURLE_OK, 308));
	CHECK(imgf_http_retry_left(&p, 2) && !imgf_http_retry_left(&p, 3));
	CHECK(imgf_http_retry_next(&p, 1, -1, 0, &d) == IMGF_HTTP_RETRY_WAIT);
	CHECK(d >= 50 && d <= 150);
	CHECK(imgf_http_retry_next(&p, 2, 4, 0, &d) == IMGF_HTTP_RETRY_WAIT && d == 4000);
	CHECK(imgf_http_retry_next(&p, 3, -1, 0, &d) == IMGF_HTTP_RETRY_EXHAUSTED && d == 0);
	/* a wait that would end past the deadline is not begun */
	CHECK(imgf_http_retry_next(&p, 1, 5, imgf_http_mono_ms() + 1000, &d) ==
	      IMGF_HTTP_RETRY_DEADLINE);
	CHECK(imgf_http_retry_next(&p, 1, 5, imgf_http_mono_ms() + 60000, &d) ==
	      IMGF_HTTP_RETRY_WAIT);
}

TEST(a_stalled_transfer_fails_after_stall_s)
{
	SETUP();
	struct imgf_http_opts o = {.stall_s = 1};
	struct strbuf body = STRBUF_INIT;
	long status;
	int64_t t0 = mono_ms();
	CHECK(get("/big.bin?stall=30", &o, &body, NULL, &status) == CURLE_OPERATION_TIMEDOUT);
	int64_t took = mono_ms() - t0;
	CHECK(took >= 900 && took < 10000);
	strbuf_release(&body);
}

TEST(a_trickle_is_no_stall_but_meets_the_timeout)
{
	SETUP();
	struct imgf_http_opts o = {.stall_s = 1, .timeout_ms = 2500};
	struct strbuf body = STRBUF_INIT;
	long status;
	int64_t t0 = mono_ms();
	CHECK(get("/x?endless=1&rate=4096", &o, &body, NULL, &status) == CURLE_OPERATION_TIMEDOUT);
	int64_t took = mono_ms() - t0;
	CHECK(took >= 2400 && took < 10000);
	CHECK(body.len > 4096); /* it did flow, faster than the stall limit */
	strbuf_release(&body);
}

TEST(only_the_allowed_protocols)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("test-http-file", &dir, NULL) == 0);
	_cleanup_free_ char *path = path_join(dir, "f");
	CHECK(write_file_atomic(path, "hi", 2, 0644, NULL) == 0);
	_cleanup_free_ char *url = xasprintf("file://%s", path);
	struct strbuf body = STRBUF_INIT;
	long status;
	CHECK(get(url, NULL, &body, NULL, &status) == CURLE_UNSUPPORTED_PROTOCOL);
	struct imgf_http_opts o = {.protocols = "http,https,file"};
	CHECK(get(url, &o, &body, NULL, &status) == CURLE_OK);
	CHECK_STR(body.buf, "hi");
	strbuf_release(&body);
	rm_rf(dir, NULL);
}

TEST(sigint_aborts_a_transfer_unless_it_must_finish)
{
	SETUP();
	struct strbuf body = STRBUF_INIT;
	long status;
	imgf_interrupted = 1;
	int64_t t0 = mono_ms();
	CHECK(get("/big.bin?stall=5", NULL, &body, NULL, &status) == CURLE_ABORTED_BY_CALLBACK);
	CHECK(mono_ms() - t0 < 4000);
	struct imgf_http_progress p = {.uninterruptible = true};
	struct imgf_http_opts o = {.progress = &p};
	strbuf_reset(&body);
	CHECK(get("/big.bin", &o, &body, NULL, &status) == CURLE_OK);
	CHECK(body.len == 100000);
	imgf_interrupted = 0;
	strbuf_release(&body);
}

TEST(init_is_once_and_a_handle_comes_ready)
{
	CHECK(imgf_http_init(NULL) == 0);
	CHECK(imgf_http_init(NULL) == 0);
	struct imgf_error *err = NULL;
	CURL *c = imgf_http_easy_new(NULL, &err);
	CHECK(c != NULL);
	CHECK(err == NULL);
	curl_easy_cleanup(c);
}
