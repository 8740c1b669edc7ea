/* The steps' inputs fetched ahead of the steps (fetch-ahead.h). */
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "build.h"
#include "error.h"
#include "fetch-ahead.h"
#include "log.h"
#include "provisioner.h"
#include "util.h"

struct imgf_fetch_ahead {
	struct imgf_build *b;
	size_t from;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t ready;		/* steps before this one are fetched and staged */
	bool done;		/* the thread has ended */
	bool stop;		/* the build failed: stop between steps */
	json_t **held;		/* per step: what it recorded, held for the build's thread */
	struct imgf_error *err; /* the thread's failure, until the build takes it */
	size_t failed_at;
	bool raised;   /* imgf_interrupted was set here, not by a signal */
	bool caused;   /* by the thread's failure: the build's error is its consequence */
	int signals;   /* imgf_signals then: a later one is a real interrupt */
	double waited; /* seconds the build's thread waited */
};

static bool has_work(const struct imgf_step *s)
{
	return s->ninputs || s->ops->stage;
}

int imgf_fetch_step(struct imgf_build *b, size_t i, struct imgf_error **err)
{
	struct imgf_step *s = &b->steps[i];
	if (s->ninputs) {
		if (imgf_fetch_all(s->inputs, s->ninputs, &b->fetch, err) < 0)
			return imgf_error_prefix(err, "step '%s'", s->label);
		for (size_t j = 0; j < s->ninputs; j++)
			if (!s->inputs[j].own_record)
				imgf_build_record_input(b, s->inputs[j].name, s->inputs[j].url,
							s->inputs[j].sha256);
	}
	if (s->ops->stage && s->ops->stage(s, err) < 0)
		return imgf_error_prefix(err, "step '%s'", s->label);
	return 0;
}

static void *ahead_main(void *arg)
{
	struct imgf_fetch_ahead *a = arg;
	struct imgf_build *b = a->b;
	double t0 = imgf_now();
	imgf_log_thread_quiet(true); /* no progress bar over the steps' output */
	for (size_t i = a->from; i < b->nsteps; i++) {
		pthread_mutex_lock(&a->mu);
		bool stop = a->stop;
		pthread_mutex_unlock(&a->mu);
		if (stop)
			break;
		struct imgf_error *e = NULL;
		a->held[i] = json_array();
		imgf_build_hold_records(a->held[i]);
		int r = imgf_fetch_step(b, i, &e);
		imgf_build_hold_records(NULL);
		pthread_mutex_lock(&a->mu);
		if (r < 0) {
			a->err = e;
			a->failed_at = i;
			/* The step running now (or the target starting) ends as if interrupted; the
			 * build reports this error instead (imgf_fetch_ahead_end). */
			if (!a->stop && !imgf_interrupted) {
				a->signals = imgf_signals;
				a->raised = a->caused = true;
				imgf_interrupted = 1;
			}
		} else {
			a->ready = i + 1;
		}
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		if (r < 0)
			break;
	}
	imgf_build_phase(b, "fetch-ahead", imgf_now() - t0);
	pthread_mutex_lock(&a->mu);
	a->done = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

struct imgf_fetch_ahead *imgf_fetch_ahead_start(struct imgf_build *b, size_t from)
{
	bool work = false;
	for (size_t i = from; i < b->nsteps && !work; i++)
		work = has_work(&b->steps[i]);
	if (!work)
		return NULL;
	struct imgf_fetch_ahead *a = xcalloc(1, sizeof(*a));
	a->b = b;
	a->from = from;
	a->ready = from;
	a->held = xcalloc(b->nsteps, sizeof(json_t *));
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	if (pthread_create(&a->thread, NULL, ahead_main, a) != 0) {
		/* No thread: everything is fetched here, as before the steps. */
		pthread_mutex_destroy(&a->mu);
		pthread_cond_destroy(&a->cv);
		free(a->held);
		free(a);
		log_warn("cannot start a thread to fetch the inputs beside the steps: %s",
			 strerror(errno));
		return NULL;
	}
	return a;
}

/* The thread's error, once: NULL when it did not fail or it was taken. */
static struct imgf_error *take_error(struct imgf_fetch_ahead *a)
{
	struct imgf_error *e = a->err;
	a->err = NULL;
	return e;
}

int imgf_fetch_ahead_wait(struct imgf_fetch_ahead *a, size_t i, struct imgf_error **err)
{
	if (!a || i < a->from)
		return 0;
	double t0 = imgf_now();
	pthread_mutex_lock(&a->mu);
	while (a->ready <= i && !a->err && !a->done) {
		/* A real interrupt is noticed here too, whatever the thread is waiting for. */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 200 * 1000 * 1000;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&a->cv, &a->mu, &until);
		if (imgf_interrupted && !a->raised)
			break;
	}
	bool ready = a->ready > i;
	struct imgf_error *e = ready ? NULL : take_error(a);
	pthread_mutex_unlock(&a->mu);
	a->waited += imgf_now() - t0;
	if (!ready) {
		if (e) {
			*err = e;
			return -1;
		}
		return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
	}
	/* Its fetch recorded inputs on the thread: they are the build's now, in step order. */
	imgf_build_record_held(a->b, a->held[i]);
	json_decref(a->held[i]);
	a->held[i] = NULL;
	return 0;
}

void imgf_fetch_ahead_end(struct imgf_fetch_ahead *a, bool steps_ran, struct imgf_error **err)
{
	if (!a)
		return;
	/* Before any step ran, the inputs are checked to the end, as when they were all fetched
	 * first: a bad input is the error to report, whatever else failed meanwhile. */
	bool finish = !steps_ran;
	pthread_mutex_lock(&a->mu);
	if (*err && !a->done && !finish) {
		a->stop = true;
		/* Its transfers stop as on an interrupt; this one is not the user's. */
		if (!imgf_interrupted) {
			a->signals = imgf_signals;
			a->raised = true;
			imgf_interrupted = 1;
		}
	}
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->thread, NULL);
	if (a->raised && imgf_signals == a->signals)
		imgf_interrupted = 0;
	struct imgf_error *e = take_error(a);
	if (e && (a->caused || finish || !*err)) {
		/* The build's error is what the fetch's failure caused (an interrupted step or
		 * target), or came before any step, where an input's comes first: the fetch's is
		 * the one to report. One of the build's own is not lost. */
		if (*err && (*err)->status != IMGF_EXIT_INTERRUPTED)
			log_warn("%s", (*err)->msg);
		imgf_error_free(*err);
		*err = e;
	} else {
		imgf_error_free(e); /* stopped by the build's own failure */
	}
	imgf_build_phase(a->b, "fetch-wait", a->waited);
	for (size_t i = 0; i < a->b->nsteps; i++)
		json_decref(a->held[i]);
	free(a->held);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	free(a);
}
