/*
 * The unit tests' HTTP server: tests/lib/httpd.py (a loopback file server with fault
 * injection) run as a child process, for the tests of the HTTP layer, downloads and the
 * registry client.
 */
#ifndef IMGF_TEST_HTTPD_H
#define IMGF_TEST_HTTPD_H

#include <sys/types.h>

struct test_httpd {
	pid_t pid;
	int port;
	char *base; /* "http://127.0.0.1:PORT" */
};

/*
 * Start the server on a free loopback port, serving `www`, logging requests to `log` (NULL:
 * no log), with extra arguments (NULL-terminated, may be NULL), e.g. {"--fault", "P=Q", NULL}.
 * Returns 0 when it listens; on failure says why on stderr.
 */
int test_httpd_start(struct test_httpd *h, const char *www, const char *log,
		     const char *const *extra);
/*
 * Start another of tests/lib's loopback servers the same way: `python3 tests/lib/NAME --port 0
 * ARGS...`, which prints its port on its first stdout line (fakeregistry.py).
 */
int test_pyserver_start(struct test_httpd *h, const char *name, const char *const *args);
/* Stop it (SIGTERM, then reap it); a stopped or never started server is fine. */
void test_httpd_stop(struct test_httpd *h);

#endif
