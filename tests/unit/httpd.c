#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "httpd.h"
#include "util.h"

/* tests/lib/NAME, from the repo root (where tests run) or next to this source file. */
static char *lib_script(const char *name)
{
	_cleanup_free_ char *here = xasprintf("tests/lib/%s", name);
	if (access(here, R_OK) == 0)
		return STEAL_POINTER(&here);
	_cleanup_free_ char *dir = path_dirname(__FILE__);
	return xasprintf("%s/../lib/%s", dir, name);
}

int test_httpd_start(struct test_httpd *h, const char *www, const char *log,
		     const char *const *extra)
{
	size_t nextra = 0;
	while (extra && extra[nextra])
		nextra++;
	const char **args = xcalloc(nextra + 8, sizeof(*args));
	size_t n = 0;
	args[n++] = "--root";
	args[n++] = www;
	if (log) {
		args[n++] = "--log";
		args[n++] = log;
	}
	for (size_t i = 0; i < nextra; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	int r = test_pyserver_start(h, "httpd.py", args);
	free(args);
	return r;
}

int test_pyserver_start(struct test_httpd *h, const char *name, const char *const *extra)
{
	memset(h, 0, sizeof(*h));
	_cleanup_free_ char *script = lib_script(name);
	size_t nextra = 0;
	while (extra && extra[nextra])
		nextra++;
	const char **argv = xcalloc(nextra + 6, sizeof(*argv));
	size_t n = 0;
	argv[n++] = "python3";
	argv[n++] = script;
	argv[n++] = "--port";
	argv[n++] = "0";
	for (size_t i = 0; i < nextra; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	int fds[2];
	if (pipe(fds) < 0) {
		free(argv);
		return -1;
	}
	fflush(NULL);
	h->pid = fork();
	if (h->pid < 0) {
		free(argv);
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (h->pid == 0) {
		/* A test that crashes takes its server with it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	free(argv);
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	char line[64] = "";
	if (!f || !fgets(line, sizeof(line), f)) {
		fprintf(stderr, "  could not start '%s' (is python3 installed?)\n", script);
		if (f)
			fclose(f);
		test_httpd_stop(h);
		return -1;
	}
	fclose(f);
	h->port = atoi(line);
	if (h->port <= 0) {
		test_httpd_stop(h);
		return -1;
	}
	h->base = xasprintf("http://127.0.0.1:%d", h->port);
	return 0;
}

void test_httpd_stop(struct test_httpd *h)
{
	if (h->pid > 0) {
		kill(h->pid, SIGTERM);
		while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	free(h->base);
	memset(h, 0, sizeof(*h));
}
