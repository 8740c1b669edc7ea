/*
 * src/fetch-ahead.c: the later steps' inputs fetched on a thread beside the steps, each
 * step waiting for its own only, their records made on the build's thread in step order,
 * and a failed fetch cutting the build short with its own error.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "digest.h"
#include "error.h"
#include "fetch-ahead.h"
#include "fsutil.h"
#include "provisioner.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

/* A stage hook that the test holds: step `held_step` stays in its stage until released. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open = true;
static size_t held_step = (size_t)-1;
static size_t staged_count;
static bool blocked; /* a stage waits at the gate */

static int gated_stage(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	pthread_mutex_lock(&gate_mu);
	while (s->index == held_step && !gate_open) {
		blocked = true;
		pthread_cond_broadcast(&gate_cv);
		pthread_cond_wait(&gate_cv, &gate_mu);
	}
	blocked = false;
	staged_count++;
	pthread_mutex_unlock(&gate_mu);
	/* what a stage may record (images-stage.c records the images it pulls) */
	imgf_build_record_local_input(s->build, s->label, "/staged", "ab");
	return 0;
}

static void gate(size_t step, bool open)
{
	pthread_mutex_lock(&gate_mu);
	held_step = step;
	gate_open = open;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

static const struct imgf_provisioner_ops staged_ops = {.name = "staged", .stage = gated_stage};

struct fixture {
	char dir[64];
	struct imgf_config cfg;
	struct imgf_image_def def;
	struct imgf_build b;
	struct imgf_step steps[3];
	struct imgf_input inputs[3];
};

static char *sha256_spec(const char *data, size_t len)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, data, len, hex);
	return xasprintf("sha256:%s", hex);
}

/* Three steps, each with one file:// input NAME-i; step `bad` (if < 3) has a wrong checksum. */
static void setup(struct fixture *f, size_t bad)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/imgf-test-ahead-XXXXXX");
	if (!mkdtemp(f->dir))
		abort();
	f->def.name = "img";
	f->b.def = &f->def;
	f->b.config = &f->cfg;
	f->b.inputs = json_array();
	f->b.labels = json_object();
	_cleanup_free_ char *cache = path_join(f->dir, "cache");
	imgf_fetch_opts_default(&f->b.fetch, xstrdup(cache));
	f->b.fetch.max_attempts = 1;
	f->b.steps = f->steps;
	f->b.nsteps = 3;
	for (size_t i = 0; i < 3; i++) {
		_cleanup_free_ char *name = xasprintf("input-%zu", i);
		_cleanup_free_ char *path = xasprintf("%s/%s", f->dir, name);
		_cleanup_free_ char *data = xasprintf("the bytes of %s\n", name);
		FILE *fp = fopen(path, "w");
		fputs(data, fp);
		fclose(fp);
		struct imgf_input *in = &f->inputs[i];
		in->name = xstrdup(name);
		in->url = xasprintf("file://%s", path);
		in->checksum = i == bad ? sha256_spec("other", 5) : sha256_spec(data, strlen(data));
		in->origin = xstrdup("the test");
		f->steps[i] = (struct imgf_step){.ops = &staged_ops,
						 .build = &f->b,
						 .index = i,
						 .label = xasprintf("step-%zu", i),
						 .inputs = in,
						 .ninputs = 1};
	}
	staged_count = 0;
	blocked = false;
	gate((size_t)-1, true);
}

static void teardown(struct fixture *f)
{
	for (size_t i = 0; i < 3; i++) {
		imgf_input_release(&f->inputs[i]);
		free(f->steps[i].label);
	}
	free((char *)f->b.fetch.cache_dir);
	json_decref(f->b.inputs);
	json_decref(f->b.labels);
	rm_rf(f->dir, NULL);
}

/* The names recorded so far, in order, space-separated. */
static char *recorded(const struct fixture *f)
{
	struct strbuf sb = STRBUF_INIT;
	size_t i;
	json_t *in;
	json_array_foreach(f->b.inputs, i, in)
	{
		strbuf_addf(&sb, "%s%s", sb.len ? " " : "",
			    json_string_value(json_object_get(in, "name")));
	}
	return strbuf_detach(&sb, NULL);
}

TEST(fetch_ahead_records_each_step_when_it_is_reached_in_step_order)
{
	struct fixture f;
	setup(&f, 3);
	struct imgf_error *err = NULL;
	CHECK(imgf_fetch_step(&f.b, 0, &err) == 0);
	_cleanup_free_ char *first = recorded(&f);
	CHECK_STR(first, "input-0 step-0");
	gate(2, false); /* step 2 stays in its stage */
	struct imgf_fetch_ahead *a = imgf_fetch_ahead_start(&f.b, 1);
	CHECK(a != NULL);
	CHECK(imgf_fetch_ahead_wait(a, 1, &err) == 0);
	_cleanup_free_ char *second = recorded(&f);
	CHECK_STR(second, "input-0 step-0 input-1 step-1");
	/* Step 2 is fetched but not staged: nothing of it is the build's yet. */
	usleep(100 * 1000);
	_cleanup_free_ char *still = recorded(&f);
	CHECK_STR(still, "input-0 step-0 input-1 step-1");
	gate(2, true);
	CHECK(imgf_fetch_ahead_wait(a, 2, &err) == 0);
	_cleanup_free_ char *all = recorded(&f);
	CHECK_STR(all, "input-0 step-0 input-1 step-1 input-2 step-2");
	CHECK(json_object_get(f.b.labels, "io.imgforge.input.input-2") != NULL);
	imgf_fetch_ahead_end(a, true, &err);
	CHECK(err == NULL);
	CHECK(imgf_interrupted == 0);
	teardown(&f);
}

TEST(fetch_ahead_failure_is_the_builds_error_and_its_interrupt_is_taken_back)
{
	struct fixture f;
	setup(&f, 2);
	struct imgf_error *err = NULL;
	struct imgf_fetch_ahead *a = imgf_fetch_ahead_start(&f.b, 0);
	CHECK(a != NULL);
	CHECK(imgf_fetch_ahead_wait(a, 0, &err) == 0);
	CHECK(imgf_fetch_ahead_wait(a, 1, &err) == 0);
	/* The running step sees an interrupt once step 2's fetch fails. */
	for (int i = 0; i < 100 && !imgf_interrupted; i++)
		usleep(20 * 1000);
	CHECK(imgf_interrupted == 1);
	imgf_error_set(&err, IMGF_EXIT_INTERRUPTED, "step 2/3 'step-1': interrupted");
	imgf_fetch_ahead_end(a, true, &err);
	CHECK_ERR(err, "step 'step-2'");
	CHECK_ERR(err, "input-2");
	CHECK_ERR(err, "mismatch");
	CHECK(err && err->status == IMGF_EXIT_FAIL);
	CHECK(imgf_interrupted == 0); /* not the user's: the next image still builds */
	_cleanup_free_ char *names = recorded(&f);
	CHECK_STR(names, "input-0 step-0 input-1 step-1");
	imgf_error_free(err);
	teardown(&f);
}

TEST(fetch_ahead_wait_returns_the_failure_of_the_step_it_waits_for)
{
	struct fixture f;
	setup(&f, 1);
	struct imgf_error *err = NULL;
	struct imgf_fetch_ahead *a = imgf_fetch_ahead_start(&f.b, 0);
	CHECK(imgf_fetch_ahead_wait(a, 0, &err) == 0);
	CHECK(imgf_fetch_ahead_wait(a, 1, &err) < 0);
	CHECK_ERR(err, "input-1");
	imgf_fetch_ahead_end(a, true, &err);
	CHECK_ERR(err, "input-1"); /* kept: the thread's error was taken once */
	CHECK(imgf_interrupted == 0);
	CHECK(staged_count == 1); /* step 2 was never fetched */
	imgf_error_free(err);
	teardown(&f);
}

static void *open_gate_later(void *arg)
{
	(void)arg;
	usleep(200 * 1000);
	gate(1, true);
	return NULL;
}

TEST(fetch_ahead_stops_when_the_build_fails_and_keeps_the_builds_error)
{
	struct fixture f;
	setup(&f, 3);
	struct imgf_error *err = NULL;
	gate(1, false); /* the thread is in step 1's stage when the build fails */
	struct imgf_fetch_ahead *a = imgf_fetch_ahead_start(&f.b, 0);
	CHECK(imgf_fetch_ahead_wait(a, 0, &err) == 0);
	pthread_mutex_lock(&gate_mu);
	while (!blocked)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	imgf_error_set(&err, IMGF_EXIT_FAIL, "step 1/3 'step-0': exit status 2");
	/* The gate opens once end() has asked the thread to stop: step 2 is never fetched. */
	pthread_t opener;
	CHECK(pthread_create(&opener, NULL, open_gate_later, NULL) == 0);
	imgf_fetch_ahead_end(a, true, &err);
	pthread_join(opener, NULL);
	CHECK_ERR(err, "exit status 2");
	CHECK(err && err->status == IMGF_EXIT_FAIL);
	CHECK(imgf_interrupted == 0);
	CHECK(staged_count == 2);
	CHECK(f.steps[2].inputs[0].path == NULL);
	imgf_error_free(err);
	teardown(&f);
}

TEST(fetch_ahead_before_any_step_checks_every_input_and_a_bad_one_is_the_error)
{
	struct fixture f;
	setup(&f, 2);
	struct imgf_error *err = NULL;
	struct imgf_fetch_ahead *a = imgf_fetch_ahead_start(&f.b, 0);
	/* The target failed before a step ran; the inputs are checked to the end all the same,
	 * as when every input was fetched before the target, and the bad one is reported. */
	imgf_error_set(&err, IMGF_EXIT_FAIL,
		       "base image 'x' is linux/amd64, the build is for arm64");
	imgf_fetch_ahead_end(a, false, &err);
	CHECK_ERR(err, "step 'step-2'");
	CHECK_ERR(err, "mismatch");
	CHECK(staged_count == 2);
	CHECK(imgf_interrupted == 0);
	imgf_error_free(err);
	/* No bad input: the build's own error stays. */
	teardown(&f);
	setup(&f, 3);
	err = NULL;
	a = imgf_fetch_ahead_start(&f.b, 0);
	imgf_error_set(&err, IMGF_EXIT_FAIL,
		       "base image 'x' is linux/amd64, the build is for arm64");
	imgf_fetch_ahead_end(a, false, &err);
	CHECK_ERR(err, "base image 'x'");
	CHECK(staged_count == 3);
	imgf_error_free(err);
	teardown(&f);
}

TEST(fetch_ahead_has_nothing_to_do_without_inputs_or_stages)
{
	struct fixture f;
	setup(&f, 3);
	CHECK(imgf_fetch_ahead_start(&f.b, 3) == NULL);
	struct imgf_error *err = NULL;
	CHECK(imgf_fetch_ahead_wait(NULL, 2, &err) == 0);
	imgf_fetch_ahead_end(NULL, true, &err);
	CHECK(err == NULL);
	teardown(&f);
}
