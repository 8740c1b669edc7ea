/*
 * Parallel builds: each job in a child process, at most N at once. A child's stdout and stderr
 * come back through pipes and are relayed whole lines at a time, stderr lines with the job's
 * name (imgf_log_prefix_line), so two builds never garble each other's lines. A failure can
 * cancel the others: they get SIGTERM, which sets imgf_interrupted in them like a Ctrl-C, so
 * each stops at its next safe point and cleans up as an interrupted build does.
 *
 * Processes rather than threads: imgf_interrupted, the log state, the progress bar and
 * libvirt/libguestfs/curl global initialisation are all per process, the download cache is
 * already shared between processes under flock(), and a crashed build cannot take the others
 * down.
 */
#ifndef IMGF_PARALLEL_H
#define IMGF_PARALLEL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct imgf_error;
struct strbuf;

enum imgf_job_state {
	IMGF_JOB_NOT_STARTED, /* never started: another job failed first */
	IMGF_JOB_RUNNING,
	IMGF_JOB_DONE,
	IMGF_JOB_FAILED,
	IMGF_JOB_CANCELLED, /* stopped because another job failed */
};

struct imgf_job {
	const char *name; /* the image: the prefix of its log lines and "image" of its events */
	/* Runs in the child: returns 0 with *result (may stay NULL), or < 0 filling *err. */
	int (*run)(void *arg, json_t **result, struct imgf_error **err);
	void *arg;

	/* Filled by imgf_jobs_run. */
	enum imgf_job_state state;
	json_t *result;		  /* what run() returned, back from the child */
	struct imgf_error *err;	  /* why it failed or was cancelled */
	double started, finished; /* imgf_now() */
	/* Private to imgf_jobs_run. */
	int pid;
	int fd[3]; /* read ends: stdout, stderr, result */
	struct strbuf *buf[3];
	bool sent_term;
};

/* Parse the N of --parallel-builds: a positive integer. */
int imgf_parallel_parse(const char *s, unsigned *out, struct imgf_error **err);

/*
 * Run the jobs, at most `max` at once, in order. With cancel_on_failure the first failure
 * sends SIGTERM to the running jobs (state CANCELLED) and starts no more (NOT_STARTED);
 * otherwise every job runs. SIGINT/SIGTERM of this process is passed on to every running job.
 * Returns how many jobs did not end DONE. Release with imgf_jobs_release.
 */
size_t imgf_jobs_run(struct imgf_job *jobs, size_t n, unsigned max, bool cancel_on_failure);
void imgf_jobs_release(struct imgf_job *jobs, size_t n);

#endif
