/*
 * The registry client against the test server (httpd.h) on loopback: a registry that answers with
 * an endless error body, one that stalls, and one that trickles forever are given up on
 * within bounds instead of hanging the build.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "registry.h"
#include "util.h"

#include "httpd.h"
#include "test.h"

static struct {
	struct test_httpd httpd;
	int port;
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

/* A manifest file for repository `repo`, tag 1, so the faults have something to serve. */
static void put_manifest(const char *www, const char *repo)
{
	_cleanup_free_ char *dir = xasprintf("%s/v2/%s/manifests", www, repo);
	_cleanup_free_ char *path = path_join(dir, "1");
	CHECK(mkdir_p(dir, 0755, NULL) == 0);
	const char *m = "{\"schemaVersion\": 2}";
	CHECK(write_file_atomic(path, m, strlen(m), 0644, NULL) == 0);
}

static int server_start(void)
{
	if (srv.port)
		return 0;
	if (make_temp_dir("test-registry-http", &srv.root, NULL) < 0)
		return -1;
	_cleanup_free_ char *www = path_join(srv.root, "www");
	put_manifest(www, "stall/img");
	put_manifest(www, "slow/img");
	put_manifest(www, "token/img");
	_cleanup_free_ char *token = path_join(www, "token");
	CHECK(write_file_atomic(token, "{\"token\": \"t\"}", 14, 0644, NULL) == 0);
	static const char *const faults[] = {
		"--fault", "/v2/errbody/img/manifests/1=endless=1&status=404",
		"--fault", "/v2/stall/img/manifests/1=stall=600",
		"--fault", "/v2/slow/img/manifests/1=endless=1&rate=4096",
		"--fault", "/v2/token/img/manifests/1=bearer=http://auth.invalid/token",
		NULL,
	};
	atexit(server_stop);
	if (test_httpd_start(&srv.httpd, www, NULL, faults) < 0)
		return -1;
	srv.port = srv.httpd.port;
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Pull 127.0.0.1:PORT/REPO:1; returns the error and how long it took. */
static struct imgf_error *pull_err(const char *repo, const struct imgf_fetch_opts *o,
				   int64_t *took_ms)
{
	_cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/%s:1", srv.port, repo);
	_cleanup_free_ char *tar = path_join(srv.root, "out.tar");
	char digest[72];
	struct imgf_error *err = NULL;
	alarm(120); /* a hang is a failure, not a stuck test run */
	int64_t t0 = mono_ms();
	CHECK(imgf_registry_pull_oci(ref, NULL, "amd64", o, tar, digest, &err) < 0);
	*took_ms = mono_ms() - t0;
	alarm(0);
	return err;
}

#define SETUP(o)                                                    \
	struct imgf_fetch_opts o;                                   \
	if (server_start() < 0) {                                   \
		CHECK(!"test server started");                      \
		return;                                             \
	}                                                           \
	_cleanup_free_ char *cache_ = path_join(srv.root, "cache"); \
	imgf_fetch_opts_default(&o, cache_);                        \
	o.retry_base_ms = 10

TEST(an_endless_error_body_is_cut_at_the_error_cap)
{
	SETUP(o);
	int64_t took;
	struct imgf_error *err = pull_err("errbody/img", &o, &took);
	CHECK(took < 10000);
	CHECK_ERR(err, "/v2/errbody/img/manifests/1': HTTP 404");
	imgf_error_free(err);
}

TEST(a_stalled_registry_is_a_failed_attempt_after_stall_s)
{
	SETUP(o);
	o.stall_s = 1;
	o.max_attempts = 2;
	int64_t took;
	struct imgf_error *err = pull_err("stall/img", &o, &took);
	CHECK(took >= 1900 && took < 15000);
	CHECK_ERR(err, "/v2/stall/img/manifests/1': ");
	CHECK_ERR(err, "(after retries)");
	imgf_error_free(err);
}

TEST(a_trickling_registry_meets_the_pull_deadline)
{
	SETUP(o);
	o.timeout_s = 2; /* 4 KiB/s is no stall: only the deadline ends it */
	int64_t took;
	struct imgf_error *err = pull_err("slow/img", &o, &took);
	CHECK(took >= 1900 && took < 8000);
	CHECK_ERR(err, "the pull was not done within 2 s (variable 'download_timeout')");
	imgf_error_free(err);
}

/* stderr into a file while fn runs; returns what was written (caller frees). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	_cleanup_free_ char *path = path_join(srv.root, "stderr.txt");
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	FILE *f = fopen(path, "w");
	dup2(fileno(f), STDERR_FILENO);
	fn(arg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	fclose(f);
	char *text = NULL;
	CHECK(read_file(path, 0, &text, NULL, NULL) == 0);
	return text;
}

static void pull_token_img(void *arg)
{
	int64_t took;
	imgf_error_free(pull_err("token/img", arg, &took));
}

TEST(a_plain_http_token_endpoint_is_warned_about)
{
	SETUP(o);
	/* The realm is not loopback: reach it through the test server as an HTTP proxy. */
	_cleanup_free_ char *proxy = xasprintf("http://127.0.0.1:%d", srv.port);
	setenv("http_proxy", proxy, 1);
	_cleanup_free_ char *text = capture_stderr(pull_token_img, &o);
	unsetenv("http_proxy");
	CHECK(text && strstr(text, "registry token endpoint 'http://auth.invalid/token' is plain "
				   "http: the token and what it grants rest on an unauthenticated "
				   "connection"));
}

TEST(which_urls_are_unauthenticated)
{
	CHECK(imgf_url_unauthenticated("http://mirror.example/SHA256SUMS"));
	CHECK(imgf_url_unauthenticated("HTTP://10.0.0.1:8080/x"));
	CHECK(!imgf_url_unauthenticated("https://mirror.example/SHA256SUMS"));
	CHECK(!imgf_url_unauthenticated("http://127.0.0.1:5000/x"));
	CHECK(!imgf_url_unauthenticated("http://127.8.9.10/x"));
	CHECK(!imgf_url_unauthenticated("http://localhost/x"));
	CHECK(!imgf_url_unauthenticated("http://[::1]:80/x"));
	CHECK(!imgf_url_unauthenticated("file:///srv/SHA256SUMS"));
	CHECK(!imgf_url_unauthenticated(NULL));
}
