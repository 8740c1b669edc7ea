/*
 * The steps' inputs, fetched and staged while the target starts and the steps before them
 * run. The first step to run has its inputs fetched before anything else (so a bad input of
 * it fails the build before a target exists); the others' on a thread of their own, in step
 * order, and each step waits only for its own. What the thread records (inputs and their
 * labels) is held and recorded on the build's thread when the step is reached, so the
 * manifest and the step cache's entries see the same records in the same order as when
 * everything was fetched first. A failed fetch cuts the running step short (as an
 * interrupt would) and is the build's error.
 */
#ifndef IMGF_FETCH_AHEAD_H
#define IMGF_FETCH_AHEAD_H

#include <stdbool.h>
#include <stddef.h>

struct imgf_build;
struct imgf_error;
struct imgf_fetch_ahead;

/* Fetch and stage step i's inputs now, recording them. */
int imgf_fetch_step(struct imgf_build *b, size_t i, struct imgf_error **err);

/* Start fetching steps [from, b->nsteps) on a thread; NULL when none of them has anything
 * to fetch or stage (imgf_fetch_ahead_wait and _end take NULL). */
struct imgf_fetch_ahead *imgf_fetch_ahead_start(struct imgf_build *b, size_t from);

/* Wait until step i is fetched and staged, then record what it recorded; -1 with the
 * thread's error when a fetch failed. Only in step order. */
int imgf_fetch_ahead_wait(struct imgf_fetch_ahead *a, size_t i, struct imgf_error **err);

/*
 * End it, and join the thread. After a step ran (`steps_ran`), a build that failed (*err
 * set) stops the thread between transfers; before, the inputs are checked to the end. When
 * the thread failed and the build's error is only the interrupt it caused, or none, or came
 * before any step ran, *err becomes the thread's error (an input's error comes first, as if
 * every input were fetched before the target).
 */
void imgf_fetch_ahead_end(struct imgf_fetch_ahead *a, bool steps_ran, struct imgf_error **err);

#endif
