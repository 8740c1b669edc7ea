/*
 * Whole requests (imgf_http_do in src/net/http.c) against the test server (httpd.h): bodies from
 * memory, a file range or a reader, sinks into capped memory, a file or a callback, reply
 * headers, and the retry policy applied inside.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
	char *log;
} srv;

static void server_stop(void)
{
	test_httpd_stop(&srv.httpd);
	if (srv.root)
		rm_rf(srv.root, NULL);
	free(srv.root);
	free(srv.log);
	memset(&srv, 0, sizeof(srv));
}

static int server_start(void)
{
	if (srv.httpd.port)
		return 0;
	if (make_temp_dir("test-http-req", &srv.root, NULL) < 0)
		return -1;
	_cleanup_free_ char *www = path_join(srv.root, "www");
	if (mkdir(www, 0755) < 0)
		return -1;
	_cleanup_free_ char *big = path_join(www, "big.bin");
	_cleanup_free_ char *data = xmalloc(100000);
	memset(data, 'x', 100000);
	if (write_file_atomic(big, data, 100000, 0644, NULL) < 0)
		return -1;
	srv.log = path_join(srv.root, "log");
	atexit(server_stop);
	return test_httpd_start(&srv.httpd, www, srv.log, NULL);
}

#define SETUP()                                        \
	do {                                           \
		if (server_start() < 0) {              \
			CHECK(!"test server started"); \
			return;                        \
		}                                      \
	} while (0)

/* How many requests the server logged with `needle` in their line. */
static int logged(const char *needle)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (read_file(srv.log, 1u << 20, &text, &len, NULL) < 0)
		return -1;
	int n = 0;
	for (const char *p = text; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static char *url(const char *path)
{
	return xasprintf("%s%s", srv.httpd.base, path);
}

TEST(a_capped_memory_sink_refuses_the_byte_past_its_cap)
{
	SETUP();
	_cleanup_free_ char *u = url("/big.bin");
	struct strbuf body = STRBUF_INIT;
	body.max = 1000;
	struct imgf_http_req q = {.url = u, .sink = {.kind = IMGF_HTTP_SINK_MEMORY, .buf = &body}};
	struct imgf_http_resp r = {0};
	struct imgf_error *err = NULL;
	CHECK(imgf_http_do(NULL, &q, &r, &err) == 0);
	CHECK(r.rc == CURLE_WRITE_ERROR);
	CHECK(q.sink.overflow);
	CHECK(body.len <= 1000);

	body.max = 100000;
	CHECK(imgf_http_do(NULL, &q, &r, &err) == 0);
	CHECK(r.rc == CURLE_OK && r.status == 200);
	CHECK(!q.sink.overflow);
	CHECK(body.len == 100000 && q.sink.written == 100000);
	CHECK(r.content_length == 100000);
	strbuf_release(&body);
}

static size_t count_bytes(void *arg, const char *data, size_t len)
{
	(void)data;
	*(size_t *)arg += len;
	return *(size_t *)arg > 50000 ? 0 : len;
}

TEST(a_file_sink_with_a_cap_and_a_callback_sink_that_stops)
{
	SETUP();
	_cleanup_free_ char *u = url("/big.bin");
	_cleanup_free_ char *path = path_join(srv.root, "out");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	struct imgf_http_req q = {.url = u, .sink = {.kind = IMGF_HTTP_SINK_FILE, .fd = fd}};
	struct imgf_http_resp r = {0};
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_OK && q.sink.written == 100000);
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && st.st_size == 100000);
	q.sink.max = 99999;
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_WRITE_ERROR && q.sink.overflow);
	close(fd);

	size_t seen = 0;
	struct imgf_http_req c = {
		.url = u,
		.sink = {.kind = IMGF_HTTP_SINK_CALLBACK, .write = count_bytes, .arg = &seen}};
	CHECK(imgf_http_do(NULL, &c, &r, NULL) == 0);
	CHECK(r.rc == CURLE_WRITE_ERROR && !c.sink.overflow);
	CHECK(seen > 50000);
}

TEST(a_file_range_body_sends_just_its_range)
{
	SETUP();
	_cleanup_free_ char *path = path_join(srv.root, "in");
	CHECK(write_file_atomic(path, "0123456789", 10, 0644, NULL) == 0);
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	_cleanup_free_ char *u = url("/up?echo_body=1");
	struct strbuf body = STRBUF_INIT;
	struct imgf_http_req q = {
		.method = "PUT",
		.url = u,
		.body = {.kind = IMGF_HTTP_BODY_FILE, .fd = fd, .off = 3, .len = 4},
		.sink = {.kind = IMGF_HTTP_SINK_MEMORY, .buf = &body},
	};
	struct imgf_http_resp r = {0};
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_OK && r.status == 200);
	CHECK_STR(body.buf, "3456");
	CHECK(r.sent == 4);

	/* The file is shorter than the range: the transfer is aborted, never padded. */
	q.body.off = 8;
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc != CURLE_OK);
	CHECK(q.body.shrank);
	close(fd);
	strbuf_release(&body);
}

struct chunks {
	int left;
};

static size_t read_chunks(void *arg, char *buf, size_t len)
{
	struct chunks *c = arg;
	if (!c->left || len < 3)
		return 0;
	c->left--;
	memcpy(buf, "ab\n", 3);
	return 3;
}

TEST(memory_and_reader_bodies)
{
	SETUP();
	_cleanup_free_ char *u = url("/post?echo_body=1");
	struct strbuf body = STRBUF_INIT;
	struct curl_slist *hdrs = NULL;
	imgf_http_header_add(&hdrs, "Content-Type: %s", "application/json");
	struct imgf_http_req q = {
		.method = "POST",
		.url = u,
		.headers = hdrs,
		.body = {.kind = IMGF_HTTP_BODY_MEMORY, .data = "{\"a\":1}", .len = 7},
		.sink = {.kind = IMGF_HTTP_SINK_MEMORY, .buf = &body},
	};
	struct imgf_http_resp r = {0};
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_OK && r.status == 200);
	CHECK_STR(body.buf, "{\"a\":1}");

	/* A reader of unknown length: sent chunked. */
	struct chunks c = {.left = 3};
	q.body = (struct imgf_http_body){
		.kind = IMGF_HTTP_BODY_READER, .read = read_chunks, .arg = &c, .len = -1};
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_OK && r.status == 200);
	CHECK_STR(body.buf, "ab\nab\nab\n");
	CHECK(r.sent == 9);
	curl_slist_free_all(hdrs);
	strbuf_release(&body);
}

TEST(a_503_is_retried_then_succeeds)
{
	SETUP();
	_cleanup_free_ char *u = url("/big.bin?fail=503&times=2");
	struct strbuf body = STRBUF_INIT;
	struct imgf_http_retry p = {.max_attempts = 3, .base_ms = 10};
	struct imgf_http_headers h = {.names = {"Retry-After", "Content-Type"}};
	struct imgf_http_req q = {
		.url = u,
		.sink = {.kind = IMGF_HTTP_SINK_MEMORY, .buf = &body},
		.reply_headers = &h,
		.retry = &p,
	};
	struct imgf_http_resp r = {0};
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_OK && r.status == 200);
	CHECK(r.attempts == 3 && !r.exhausted);
	CHECK(body.len == 100000); /* the failures' bodies are gone */
	CHECK_STR(imgf_http_header_get(&h, "Content-Type"), "application/octet-stream");
	CHECK(logged("GET /big.bin?fail=503&times=2 -- 503") == 2);

	/* Out of attempts: the last reply, said to be exhausted. */
	_cleanup_free_ char *u2 = url("/big.bin?fail=503&times=5&retry_after=0");
	q.url = u2;
	p.max_attempts = 2;
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_OK && r.status == 503);
	CHECK(r.attempts == 2 && r.exhausted);
	imgf_http_headers_reset(&h);
	strbuf_release(&body);
}

TEST(no_retry_on_a_4xx_nor_of_a_post_unless_asked)
{
	SETUP();
	_cleanup_free_ char *u = url("/missing");
	struct imgf_http_retry p = {.max_attempts = 3, .base_ms = 10};
	struct imgf_http_req q = {.url = u, .retry = &p};
	struct imgf_http_resp r = {0};
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_OK && r.status == 404);
	CHECK(r.attempts == 1 && !r.exhausted);

	_cleanup_free_ char *u2 = url("/p?fail=503&times=1&echo_body=1");
	q.url = u2;
	q.method = "POST";
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.status == 503 && r.attempts == 1 && r.exhausted);
	q.retry_unsafe = true;
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.status == 200 && r.attempts == 1); /* the server's count had moved on */
	_cleanup_free_ char *u3 = url("/p?fail=503&times=1");
	q.url = u3;
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.status == 404 && r.attempts == 2);
}

static int answer_once(struct imgf_http_req *q, struct imgf_http_resp *r, void *arg,
		       struct imgf_error **err)
{
	(void)err;
	int *answered = arg;
	if (r->status == 401 && !*answered) {
		*answered = 1;
		imgf_http_header_add(&q->headers, "Authorization: Bearer t");
		return IMGF_HTTP_AGAIN;
	}
	return IMGF_HTTP_POLICY;
}

TEST(reply_headers_and_a_challenge_answered_by_a_hook)
{
	SETUP();
	_cleanup_free_ char *u = url("/big.bin?bearer=realm");
	struct imgf_http_headers h = {.names = {"WWW-Authenticate"}};
	int answered = 0;
	struct imgf_http_retry p = {.max_attempts = 1};
	struct imgf_http_req q = {
		.method = "HEAD",
		.url = u,
		.reply_headers = &h,
		.retry = &p,
		.after = answer_once,
		.hook_arg = &answered,
	};
	struct imgf_http_resp r = {0};
	CHECK(imgf_http_perform(NULL, &q, &r, NULL) == 0);
	CHECK(r.status == 401);
	CHECK_STR(imgf_http_header_get(&h, "www-authenticate"),
		  "Bearer realm=\"realm\",service=\"test\"");
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(answered && r.status == 200 && r.attempts == 1);
	CHECK(imgf_http_header_get(&h, "WWW-Authenticate") == NULL);
	CHECK(r.content_length == 100000);
	curl_slist_free_all(q.headers);
	imgf_http_headers_reset(&h);
}

TEST(a_transport_failure_is_worded_like_ours)
{
	struct imgf_http_retry p = {.max_attempts = 2, .base_ms = 1};
	struct imgf_http_req q = {.url = "http://127.0.0.1:1/", .retry = &p};
	struct imgf_http_resp r = {0};
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	CHECK(r.rc == CURLE_COULDNT_CONNECT && r.exhausted && r.attempts == 2);
	_cleanup_free_ char *why = imgf_http_resp_reason(&r);
	CHECK(why[0] >= 'a' && why[0] <= 'z');
	CHECK(why[strlen(why) - 1] != '.');
}

TEST(sigint_stops_before_an_attempt)
{
	struct imgf_http_req q = {.url = "http://127.0.0.1:1/"};
	struct imgf_http_resp r = {0};
	imgf_interrupted = 1;
	CHECK(imgf_http_do(NULL, &q, &r, NULL) == 0);
	imgf_interrupted = 0;
	CHECK(r.interrupted && r.rc == CURLE_ABORTED_BY_CALLBACK && r.attempts == 0);
}

TEST(one_escaper_and_one_policy)
{
	_cleanup_free_ char *e = imgf_http_escaped("a b/c~d:é");
	CHECK_STR(e, "a%20b%2Fc~d%3A%C3%A9");
	struct strbuf sb = STRBUF_INIT;
	imgf_http_escape(&sb, "dir/file name", true);
	CHECK_STR(sb.buf, "dir/file%20name");
	strbuf_release(&sb);
	setenv("IMGFORGE_RETRY_BASE_MS", "7", 1);
	struct imgf_http_retry p = imgf_http_retry_policy(4);
	CHECK(p.max_attempts == 4 && p.base_ms == 7);
	setenv("IMGFORGE_RETRY_BASE_MS", "junk", 1);
	CHECK(imgf_http_retry_policy(1).base_ms == 1000);
	unsetenv("IMGFORGE_RETRY_BASE_MS");
	CHECK(imgf_http_retry_policy(1).base_ms == 1000);
	/* a client's options: 0 is the default, which reads the variable too */
	setenv("IMGFORGE_RETRY_BASE_MS", "7", 1);
	p = imgf_http_retry_for(0, 0);
	CHECK(p.max_attempts == IMGF_HTTP_MAX_ATTEMPTS && p.base_ms == 7);
	p = imgf_http_retry_for(2, 30);
	CHECK(p.max_attempts == 2 && p.base_ms == 30);
	unsetenv("IMGFORGE_RETRY_BASE_MS");
	CHECK(imgf_http_retry_for(0, 0).base_ms == 1000);
}
