/*
 * The docker builder's Engine API client (builders/docker-engine.c) against the test server
 * (httpd.h) standing in for an engine at DOCKER_HOST=tcp://: a call that freezes the
 * container is tried again when the engine could not freeze it, and only then.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "util.h"
#include "builders/docker-internal.h"

#include "httpd.h"
#include "test.h"

#define FREEZE "/v1.41/containers/c1/pause"
#define OTHER "/v1.41/containers/c2/pause"
#define PLAIN "/v1.41/containers/c3/pause"
#define NOFREEZE_MSG "message=OCI runtime pause failed: unable to freeze: unknown"

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

static int put(const char *www, const char *rel, const char *text)
{
	_cleanup_free_ char *p = path_join(www, rel);
	_cleanup_free_ char *dir = xstrdup(p);
	*strrchr(dir, '/') = '\0';
	if (mkdir_p(dir, 0755, NULL) < 0)
		return -1;
	return write_file_atomic(p, text, strlen(text), 0644, NULL);
}

static int server_start(void)
{
	if (srv.httpd.port)
		return 0;
	if (make_temp_dir("test-docker-engine", &srv.root, NULL) < 0)
		return -1;
	_cleanup_free_ char *www = path_join(srv.root, "www");
	if (put(www, "version", "{\"ApiVersion\":\"1.41\",\"MinAPIVersion\":\"1.12\"}") < 0 ||
	    put(www, &FREEZE[1], "") < 0 || put(www, &OTHER[1], "") < 0 ||
	    put(www, &PLAIN[1], "") < 0)
		return -1;
	srv.log = path_join(srv.root, "log");
	atexit(server_stop);
	const char *faults[] = {"--fault", FREEZE "=fail=500&times=2&" NOFREEZE_MSG,
				"--fault", OTHER "=fail=500&times=1&message=no such container",
				"--fault", PLAIN "=fail=500&times=1&" NOFREEZE_MSG,
				NULL};
	if (test_httpd_start(&srv.httpd, www, srv.log, faults) < 0)
		return -1;
	_cleanup_free_ char *host = xasprintf("tcp://127.0.0.1:%d", srv.httpd.port);
	setenv("DOCKER_HOST", host, 1);
	unsetenv("DOCKER_TLS_VERIFY");
	unsetenv("DOCKER_CERT_PATH");
	setenv("IMGFORGE_RETRY_BASE_MS", "1", 1);
	return 0;
}

#define SETUP()                                        \
	do {                                           \
		if (server_start() < 0) {              \
			CHECK(!"test server started"); \
			return;                        \
		}                                      \
	} while (0)

static int count_logged(const char *needle)
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

/* How many requests the server logged with `needle`, once it logged `want` of them or 2 s
 * passed: it logs a request after its reply is sent, so after the client has it. */
static int logged(const char *needle, int want)
{
	int n = 0;
	for (int i = 0; i < 100 && (n = count_logged(needle)) < want; i++)
		usleep(20 * 1000);
	return n;
}

TEST(a_freezing_call_is_tried_again_when_the_engine_could_not_freeze)
{
	SETUP();
	struct docker *d = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_docker_connect(&d, &err) == 0);
	CHECK(imgf_docker_json_freezing(d, "POST", NULL, NULL, &err, "/containers/%s/pause",
					"c1") == 0);
	CHECK(!err);
	CHECK(logged("POST " FREEZE " -- 500", 2) == 2);
	CHECK(logged("POST " FREEZE " -- 200", 1) == 1);
	imgf_docker_free(d);
}

TEST(another_engine_error_is_not_tried_again)
{
	SETUP();
	struct docker *d = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_docker_connect(&d, &err) == 0);
	CHECK(imgf_docker_json_freezing(d, "POST", NULL, NULL, &err, "/containers/%s/pause", "c2") <
	      0);
	CHECK_ERR(err, "POST /containers/c2/pause: docker engine answered 500: no such container");
	imgf_error_free(err);
	CHECK(logged("POST " OTHER, 1) == 1);
	imgf_docker_free(d);
}

TEST(a_call_that_does_not_freeze_is_not_tried_again)
{
	SETUP();
	struct docker *d = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_docker_connect(&d, &err) == 0);
	CHECK(imgf_docker_json(d, "POST", NULL, NULL, NULL, &err, "/containers/%s/pause", "c3") <
	      0);
	CHECK_ERR(err, "unable to freeze");
	imgf_error_free(err);
	CHECK(logged("POST " PLAIN, 1) == 1);
	imgf_docker_free(d);
}
