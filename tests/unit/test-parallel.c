/* Parallel builds: --parallel-builds N, the prefixed log lines, and the job runner's
 * overlap, cancellation and relaying, with jobs that stand in for builds. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "parallel.h"
#include "test.h"
#include "util.h"

TEST(parallel_builds_is_a_positive_number)
{
	unsigned n = 0;
	struct imgf_error *e = NULL;
	CHECK(imgf_parallel_parse("1", &n, &e) == 0 && n == 1);
	CHECK(imgf_parallel_parse("16", &n, &e) == 0 && n == 16);
	static const char *const bad[] = {
		"0", "-1", "", "2x", " 2", "+2", "1.5", "all", "99999999999999999999"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CHECK(imgf_parallel_parse(bad[i], &n, &e) < 0);
		CHECK_ERR(e, "expected a positive number of builds");
		CHECK(e && e->status == IMGF_EXIT_USAGE);
		imgf_error_clear(&e);
	}
	CHECK(imgf_parallel_parse(NULL, &n, &e) < 0);
	imgf_error_clear(&e);
}

TEST(log_lines_carry_the_image_once)
{
	struct {
		const char *in, *want;
	} cases[] = {
		{"==> kind-node: step 1/3: shell", "==> kind-node: step 1/3: shell"},
		{"==> committed x as sha256:1", "==> kind-node: committed x as sha256:1"},
		{"==> warning: kind-node: keeping it", "==> kind-node: warning: keeping it"},
		{"==> warning: disk full", "==> kind-node: warning: disk full"},
		{"==> debug: kind-node: fetch took 1s", "==> kind-node: debug: fetch took 1s"},
		{"    shell: hello", "    kind-node: shell: hello"},
		{"libvirt: error: gone", "    kind-node: libvirt: error: gone"},
		{"", "    kind-node: "},
		{"\033[1m==> done\033[0m", "\033[1m==> kind-node: done\033[0m"},
		{"\033[33m==> kind-node: kept\033[0m", "\033[33m==> kind-node: kept\033[0m"},
		/* Only the image's own name counts as its prefix. */
		{"==> kind-nodes: x", "==> kind-node: kind-nodes: x"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *got = imgf_log_prefix_line("kind-node", cases[i].in);
		CHECK_STR(got, cases[i].want);
	}
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleeps `ms` in steps, stopping (as a build does) when interrupted. */
static int job_sleep(void *arg, json_t **result, struct imgf_error **err)
{
	int ms = *(int *)arg;
	fprintf(stderr, "==> sleeping %d ms\n", ms);
	printf("{\"event\":\"x\"}\n");
	for (int t = 0; t < ms; t += 10) {
		if (imgf_interrupted) {
			fprintf(stderr, "==> cleaning up\n");
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		}
		usleep(10000);
	}
	*result = json_pack("{s:i}", "slept", ms);
	return 0;
}

static int job_fail(void *arg, json_t **result, struct imgf_error **err)
{
	usleep((useconds_t)(*(int *)arg) * 1000);
	fprintf(stderr, "partial line without newline");
	return imgf_error_set(err, IMGF_EXIT_FAIL, "image 'bad': step 1/1 failed");
}

static int job_crash(void *arg, json_t **result, struct imgf_error **err)
{
	raise(SIGKILL);
	return 0;
}

static char *captured_out;

static int capture(int target, char *path)
{
	int fd = mkstemp(path);
	int saved = dup(target);
	dup2(fd, target);
	close(fd);
	return saved;
}

static char *uncapture(int target, int saved, const char *path)
{
	dup2(saved, target);
	close(saved);
	char *text = NULL;
	size_t len;
	read_file(path, 0, &text, &len, NULL);
	unlink(path);
	return text;
}

/* Run jobs with stderr captured (returned; the caller frees) and stdout (captured_out). */
static char *run_captured(struct imgf_job *jobs, size_t n, unsigned max, bool cancel,
			  size_t *not_done)
{
	imgf_install_signal_handlers(); /* what a build's children inherit */
	char err_path[] = "/tmp/test-parallel-XXXXXX", out_path[] = "/tmp/test-parallel-XXXXXX";
	fflush(stdout);
	fflush(stderr);
	int saved_err = capture(STDERR_FILENO, err_path);
	int saved_out = capture(STDOUT_FILENO, out_path);
	*not_done = imgf_jobs_run(jobs, n, max, cancel);
	fflush(stdout);
	fflush(stderr);
	free(captured_out);
	captured_out = uncapture(STDOUT_FILENO, saved_out, out_path);
	return uncapture(STDERR_FILENO, saved_err, err_path);
}

TEST(jobs_overlap_and_lines_come_back_prefixed)
{
	int ms = 300;
	struct imgf_job jobs[] = {
		{.name = "one", .run = job_sleep, .arg = &ms},
		{.name = "two", .run = job_sleep, .arg = &ms},
	};
	size_t not_done;
	_cleanup_free_ char *err = run_captured(jobs, 2, 2, true, &not_done);
	CHECK(not_done == 0);
	CHECK(jobs[0].state == IMGF_JOB_DONE && jobs[1].state == IMGF_JOB_DONE);
	CHECK(json_integer_value(json_object_get(jobs[1].result, "slept")) == 300);
	/* At once: each started before the other finished. */
	CHECK(jobs[1].started < jobs[0].finished && jobs[0].started < jobs[1].finished);
	CHECK(err && strstr(err, "==> one: sleeping 300 ms\n"));
	CHECK(err && strstr(err, "==> two: sleeping 300 ms\n"));
	/* stdout (the --json events) comes back as it was, a whole line at a time. */
	CHECK_STR(captured_out, "{\"event\":\"x\"}\n{\"event\":\"x\"}\n");
	imgf_jobs_release(jobs, 2);
}

TEST(at_most_n_at_once)
{
	int ms = 200;
	struct imgf_job jobs[] = {
		{.name = "a", .run = job_sleep, .arg = &ms},
		{.name = "b", .run = job_sleep, .arg = &ms},
		{.name = "c", .run = job_sleep, .arg = &ms},
	};
	size_t not_done;
	free(run_captured(jobs, 3, 1, true, &not_done)); /* not checked here */
	CHECK(not_done == 0);
	CHECK(jobs[1].started >= jobs[0].finished && jobs[2].started >= jobs[1].finished);
	imgf_jobs_release(jobs, 3);
}

TEST(a_failure_cancels_the_others_which_clean_up)
{
	int slow = 10000, fail_after = 100;
	struct imgf_job jobs[] = {
		{.name = "slow", .run = job_sleep, .arg = &slow},
		{.name = "bad", .run = job_fail, .arg = &fail_after},
		{.name = "queued", .run = job_sleep, .arg = &slow},
	};
	size_t not_done;
	double t0 = mono();
	_cleanup_free_ char *err = run_captured(jobs, 3, 2, true, &not_done);
	CHECK(mono() - t0 < 5); /* not the 10 s of the slow job */
	CHECK(not_done == 3);
	CHECK(jobs[0].state == IMGF_JOB_CANCELLED);
	CHECK_ERR(jobs[0].err, "interrupted");
	CHECK(jobs[1].state == IMGF_JOB_FAILED);
	CHECK_ERR(jobs[1].err, "image 'bad': step 1/1 failed");
	CHECK(jobs[2].state == IMGF_JOB_NOT_STARTED);
	CHECK(err && strstr(err, "==> slow: cleaning up\n"));
	/* A last line without a newline still comes out whole, prefixed. */
	CHECK(err && strstr(err, "    bad: partial line without newline\n"));
	CHECK(err && strstr(err, "image 'bad' failed: cancelling the other builds"));
	imgf_jobs_release(jobs, 3);
}

TEST(without_cancel_the_others_finish)
{
	int ms = 300, fail_after = 50;
	struct imgf_job jobs[] = {
		{.name = "ok", .run = job_sleep, .arg = &ms},
		{.name = "bad", .run = job_fail, .arg = &fail_after},
	};
	size_t not_done;
	free(run_captured(jobs, 2, 2, false, &not_done)); /* not checked here */
	CHECK(not_done == 1);
	CHECK(jobs[0].state == IMGF_JOB_DONE);
	CHECK(jobs[1].state == IMGF_JOB_FAILED);
	imgf_jobs_release(jobs, 2);
}

TEST(a_crashed_build_process_is_a_failure)
{
	int ms = 100;
	struct imgf_job jobs[] = {
		{.name = "crash", .run = job_crash, .arg = &ms},
		{.name = "ok", .run = job_sleep, .arg = &ms},
	};
	size_t not_done;
	free(run_captured(jobs, 2, 2, false, &not_done)); /* not checked here */
	CHECK(not_done == 1);
	CHECK(jobs[0].state == IMGF_JOB_FAILED);
	CHECK_ERR(jobs[0].err, "killed by signal 9");
	CHECK(jobs[1].state == IMGF_JOB_DONE);
	imgf_jobs_release(jobs, 2);
}

TEST(an_interrupt_reaches_every_job)
{
	int ms = 10000;
	struct imgf_job jobs[] = {
		{.name = "a", .run = job_sleep, .arg = &ms},
		{.name = "b", .run = job_sleep, .arg = &ms},
	};
	/* SIGTERM to this process alone, after a moment: the runner passes it on. */
	imgf_install_signal_handlers();
	pid_t self = getpid();
	pid_t killer = fork();
	if (killer == 0) {
		usleep(200000);
		kill(self, SIGTERM);
		_exit(0);
	}
	size_t not_done;
	double t0 = mono();
	_cleanup_free_ char *err = run_captured(jobs, 2, 2, true, &not_done);
	waitpid(killer, NULL, 0);
	CHECK(mono() - t0 < 5);
	CHECK(not_done == 2);
	CHECK(jobs[0].state == IMGF_JOB_FAILED && jobs[1].state == IMGF_JOB_FAILED);
	CHECK_ERR(jobs[0].err, "interrupted");
	CHECK(err && strstr(err, "==> a: cleaning up") && strstr(err, "==> b: cleaning up"));
	imgf_interrupted = 0;
	imgf_jobs_release(jobs, 2);
}
