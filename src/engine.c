#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "build.h"
#include "builder.h"
#include "checksum.h"
#include "contract.h"
#include "engine.h"
#include "error.h"
#include "fetch-ahead.h"
#include "fsutil.h"
#include "lock.h"
#include "log.h"
#include "manifest.h"
#include "mirror.h"
#include "parallel.h"
#include "postprocessor.h"
#include "provisioner.h"
#include "stepcache.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

static bool in_list(char **list, const char *name)
{
	for (size_t i = 0; list && list[i]; i++)
		if (!strcmp(list[i], name))
			return true;
	return false;
}

static bool selected(const struct imgf_build_opts *o, const char *name)
{
	if (o->only && !in_list(o->only, name))
		return false;
	return !in_list(o->except, name);
}

static int check_selection(const struct imgf_config *c, char **list, const char *flag,
			   struct imgf_error **err)
{
	for (size_t i = 0; list && list[i]; i++) {
		bool found = false;
		for (size_t j = 0; j < c->nimages && !found; j++)
			found = !strcmp(c->images[j].name, list[i]);
		if (found)
			continue;
		struct strbuf sb = STRBUF_INIT;
		for (size_t j = 0; j < c->nimages; j++)
			strbuf_addf(&sb, "%s'%s'", j ? ", " : "", c->images[j].name);
		imgf_error_set(err, IMGF_EXIT_FAIL, "%s: no image named '%s' in '%s' (images: %s)",
			       flag, list[i], c->path, sb.len ? sb.buf : "none");
		strbuf_release(&sb);
		return -1;
	}
	return 0;
}

static void build_release(struct imgf_build *b)
{
	for (size_t i = 0; i < b->nsteps; i++) {
		struct imgf_step *s = &b->steps[i];
		for (size_t j = 0; j < s->ninputs; j++)
			imgf_input_release(&s->inputs[j]);
		free(s->inputs);
		free(s->label);
		free(s->where);
		json_decref(s->cfg);
		json_decref(s->raw);
		json_decref(s->staged);
	}
	free(b->steps);
	imgf_stepcache_free(b->cache);
	json_decref(b->builder_cfg);
	json_decref(b->labels);
	json_decref(b->inputs);
	free(b->cache_dir);
	free(b->out_dir);
	if (b->stage_dir) {
		rm_rf(b->stage_dir, NULL);
		free(b->stage_dir);
	}
	memset(b, 0, sizeof(*b));
}

/* A step's `max_size`: the cap of each of its downloads, over variable download_max_size. */
static int step_max_size(struct imgf_step *s, json_t *v, struct imgf_error **err)
{
	_cleanup_free_ char *text =
		json_is_integer(v) ? xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v))
				   : xstrdup(json_is_string(v) ? json_string_value(v) : "");
	uint64_t n;
	if (imgf_size_parse(text, &n) < 0 || n == 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: max_size: '%s' is not a size like 512M (bytes, or K, M, "
				      "G, T)",
				      s->where, text);
	if (!s->ninputs)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: max_size: a %s step downloads nothing to cap", s->where,
				      s->ops->name);
	for (size_t j = 0; j < s->ninputs; j++)
		s->inputs[j].max_size = n;
	return 0;
}

/* Variables download_max_size and download_timeout: the fetch settings of every image. */
static int fetch_settings(const struct imgf_config *c, struct imgf_fetch_opts *o,
			  struct imgf_error **err)
{
	const char *v = imgf_config_var(c, "download_max_size");
	if (v && *v && (imgf_size_parse(v, &o->max_size) < 0 || o->max_size == 0))
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"%s: variable 'download_max_size': '%s' is not a size like 4G "
			"(bytes, or K, M, G, T)",
			json_string_value(json_object_get(c->var_from, "download_max_size")), v);
	v = imgf_config_var(c, "download_timeout");
	if (v && *v) {
		char *end;
		errno = 0;
		long t = *v >= '0' && *v <= '9' ? strtol(v, &end, 10) : -1;
		if (t < 0 || errno || *end)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"%s: variable 'download_timeout': '%s' is not a number of seconds "
				"(0 for none)",
				json_string_value(json_object_get(c->var_from, "download_timeout")),
				v);
		o->timeout_s = t;
	}
	return 0;
}

/* Resolve the builder and steps of one image and check every key: no side effects. */
static int plan_image(const struct imgf_config *c, const struct imgf_image_def *def,
		      const struct imgf_build_opts *opts, struct imgf_build *b,
		      struct imgf_error **err)
{
	b->config = c;
	b->def = def;
	b->opts = opts;
	b->labels = json_object();
	b->inputs = json_array();
	const char *btype = json_string_value(json_object_get(def->builder, "type"));
	b->builder = imgf_builder_find(btype);
	if (!b->builder) {
		_cleanup_free_ char *known = imgf_builder_names();
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: builder.type: unknown builder '%s' (known builders: %s)",
				      def->file, btype, known);
	}
	b->builder_cfg = json_incref(def->builder);
	_cleanup_free_ char *bwhere = xasprintf("%s: builder (%s)", def->file, btype);
	if (imgf_keys_check(def->builder, b->builder->keys, bwhere, err) < 0)
		return -1;
	if (b->builder->validate && b->builder->validate(b, err) < 0)
		return imgf_error_prefix(err, "%s", bwhere);

	size_t n = json_array_size(def->provisioners);
	b->steps = xcalloc(n ? n : 1, sizeof(*b->steps));
	json_t *raw_list = json_object_get(def->raw, "provisioners");
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_array_get(def->provisioners, i);
		struct imgf_step *s = &b->steps[i];
		b->nsteps++;
		s->build = b;
		s->index = i;
		if (!json_is_object(p) || !json_is_string(json_object_get(p, "type")))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "%s: provisioners[%zu]: expected an object with a "
					      "'type'",
					      def->file, i);
		const char *type = json_string_value(json_object_get(p, "type"));
		s->ops = imgf_provisioner_find(type);
		if (!s->ops) {
			_cleanup_free_ char *known = imgf_provisioner_names();
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"%s: provisioners[%zu].type: unknown provisioner '%s' "
				"(known provisioners: %s)",
				def->file, i, type, known);
		}
		json_t *name = json_object_get(p, "name");
		s->label = xstrdup(json_is_string(name) ? json_string_value(name) : type);
		s->where = xasprintf("%s: provisioners[%zu] (%s)", def->file, i, type);
		s->cfg = json_incref(p);
		s->raw = json_incref(json_array_get(raw_list, i));
		/* max_size is every downloading step's key, so the engine checks it. */
		json_t *max_size = json_object_get(p, "max_size");
		json_t *own_keys = json_copy(p);
		json_object_del(own_keys, "max_size");
		int kr = imgf_keys_check(own_keys, s->ops->keys, s->where, err);
		json_decref(own_keys);
		if (kr < 0)
			return -1;
		if (s->ops->validate && s->ops->validate(s, err) < 0)
			return imgf_error_prefix(err, "%s", s->where);
		if (s->ops->inputs && s->ops->inputs(s, err) < 0)
			return imgf_error_prefix(err, "%s", s->where);
		if (max_size && step_max_size(s, max_size, err) < 0)
			return -1;
	}
	if (imgf_post_processors_validate(b, err) < 0)
		return -1;
	/* Checksum forms are checked here so `validate` catches them without fetching. */
	for (size_t k = 0; k < b->nsteps; k++) {
		struct imgf_step *s = &b->steps[k];
		for (size_t j = 0; j < s->ninputs; j++) {
			struct imgf_checksum ck;
			if (imgf_checksum_parse(s->inputs[j].checksum, &ck, err) < 0)
				return imgf_error_prefix(err, "%s: input '%s'", s->where,
							 s->inputs[j].name);
			imgf_checksum_release(&ck);
		}
	}
	return 0;
}

/*
 * Replay what the cached steps recorded, then fetch and stage the first step to run; the
 * later steps' inputs are fetched beside the steps (fetch-ahead.h), from *ahead_from on.
 */
static int fetch_first(struct imgf_build *b, size_t *ahead_from, struct imgf_error **err)
{
	size_t i = 0;
	for (; b->cache && i < b->cache->hit; i++)
		imgf_stepcache_replay(b, i); /* not run: nothing to fetch or stage */
	if (i < b->nsteps && imgf_fetch_step(b, i, err) < 0)
		return -1;
	*ahead_from = i < b->nsteps ? i + 1 : b->nsteps;
	return 0;
}

static int run_steps(struct imgf_build *b, struct imgf_target *t, struct imgf_fetch_ahead *ahead,
		     struct imgf_error **err)
{
	for (size_t i = 0; i < b->nsteps; i++) {
		struct imgf_step *s = &b->steps[i];
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		if (b->cache && i < b->cache->hit) {
			imgf_stepcache_say_cached(b, i);
			continue;
		}
		if (imgf_fetch_ahead_wait(ahead, i, err) < 0)
			return -1;
		_cleanup_free_ char *msg =
			xasprintf("%s: step %zu/%zu: %s", b->def->name, i + 1, b->nsteps, s->label);
		imgf_event("step-start",
			   json_pack("{s:s,s:i,s:s,s:s}", "image", b->def->name, "index",
				     (int)i + 1, "step", s->label, "type", s->ops->name),
			   msg);
		time_t t0 = time(NULL);
		if (s->ops->run(s, t, err) < 0)
			return imgf_error_prefix(err, "step %zu/%zu '%s' (%s)", i + 1, b->nsteps,
						 s->label, s->ops->name);
		imgf_event("step-done",
			   json_pack("{s:s,s:s,s:I}", "image", b->def->name, "step", s->label,
				     "seconds", (json_int_t)(time(NULL) - t0)),
			   NULL);
		imgf_stepcache_step_done(b, t, i);
	}
	return 0;
}

/* Remove what a failed build already put into the output directory. */
static void remove_outputs(struct imgf_build *b, struct imgf_artifact *art)
{
	for (size_t i = 0; art->files && art->files[i]; i++) {
		if (!strcmp(art->files[i], "console.log"))
			continue; /* kept: it tells why a boot check failed */
		_cleanup_free_ char *p = path_join(b->out_dir, art->files[i]);
		unlink(p);
	}
}

/*
 * `path` as it will be named once the output is in place: under final_dir instead of
 * b->out_dir when --force builds beside an existing output (newly allocated).
 */
static char *final_path(const struct imgf_build *b, const char *final_dir, const char *path)
{
	size_t n = strlen(b->out_dir);
	if (final_dir && !strncmp(path, b->out_dir, n) && path[n] == '/')
		return xasprintf("%s%s", final_dir, path + n);
	return xstrdup(path);
}

/* With parallel builds: a lock (POSIX, so each build process holds it on its own). */
static int outputs_lock_fd = -1;

/*
 * The images of a config write into one output directory, and some write the same files
 * (capi-qcow2 and capi-ova both write NAME.qcow2): so parallel builds commit and post-process
 * one at a time, leaving the directory as a sequential build would.
 */
static int outputs_lock(const struct imgf_build *b, struct imgf_error **err)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(outputs_lock_fd, F_SETLK, &fl) == 0)
		return 0;
	log_info("%s: waiting for another image to write its outputs", b->def->name);
	double t0 = imgf_now();
	while (fcntl(outputs_lock_fd, F_SETLKW, &fl) < 0) {
		if (errno != EINTR)
			return imgf_error_errno(err, errno, "lock the output directory");
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
	}
	imgf_build_phase(b, "wait-outputs", imgf_now() - t0);
	return 0;
}

static void outputs_unlock(void)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
	fcntl(outputs_lock_fd, F_SETLK, &fl);
}

static int build_one(struct imgf_build *b, const char *final_dir, json_t *manifest,
		     struct imgf_error **err)
{
	bool locked = false;
	struct imgf_target *t = NULL;
	struct imgf_fetch_ahead *ahead = NULL;
	bool steps_ran = false; /* past prepare: a failure stops the fetch-ahead thread */
	struct imgf_artifact art = {0};
	_cleanup_free_ char *artifact_id = NULL;
	int r = -1;
	time_t start = time(NULL);

	imgf_log_set_image(b->def->name);
	_cleanup_free_ char *hello =
		xasprintf("%s: building with the %s builder", b->def->name, b->builder->name);
	imgf_event("build-start",
		   json_pack("{s:s,s:s}", "image", b->def->name, "builder", b->builder->name),
		   hello);
	_cleanup_free_ char *tmp_parent = path_join(b->cache_dir, "tmp");
	_cleanup_free_ char *tmpl = path_join(tmp_parent, "build-XXXXXX");
	if (mkdir_p(b->cache_dir, 0755, err) < 0 || mkdir_p(tmp_parent, 0700, err) < 0)
		goto out;
	if (!mkdtemp(tmpl)) {
		imgf_error_errno(err, errno, "create '%s'", tmpl);
		goto out;
	}
	b->stage_dir = xstrdup(tmpl);

	json_object_set_new(b->labels, "io.imgforge.version", json_string(IMGF_VERSION));
	json_object_set_new(b->labels, "io.imgforge.image", json_string(b->def->name));
	json_object_set_new(b->labels, "io.imgforge.build-name",
			    json_string(b->contract->build_name));

	double t0 = imgf_now();
	if (imgf_stepcache_open(b, err) < 0)
		goto out;
	imgf_build_phase(b, "cache-lookup", imgf_now() - t0);
	t0 = imgf_now();
	size_t ahead_from = 0;
	if (fetch_first(b, &ahead_from, err) < 0)
		goto out;
	imgf_build_phase(b, "fetch", imgf_now() - t0);
	if (imgf_interrupted) {
		imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		goto out;
	}
	/* The later steps' inputs, while the target starts and the steps run (none when every
	 * step is cached). */
	ahead = imgf_fetch_ahead_start(b, ahead_from);
	if (imgf_stepcache_settle(b, err) < 0)
		goto out;
	imgf_stepcache_final_key(b);
	int reused = imgf_stepcache_reuse(b, &art, err);
	if (reused < 0)
		goto out;
	if (reused)
		goto built; /* nothing changed: the artifact built before */
	t0 = imgf_now();
	if (b->builder->prepare(b, &t, err) < 0)
		goto out;
	imgf_build_phase(b, "launch", imgf_now() - t0);
	t->stage_dir = b->stage_dir;
	t0 = imgf_now();
	steps_ran = true;
	if (run_steps(b, t, ahead, err) < 0)
		goto out;
	imgf_build_phase(b, "provision", imgf_now() - t0);
	imgf_fetch_ahead_end(ahead, true, err);
	ahead = NULL;
	if (imgf_interrupted) {
		imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		goto out;
	}
built:
	if (outputs_lock_fd >= 0) {
		if (outputs_lock(b, err) < 0)
			goto out;
		locked = true;
	}
	if (!reused) {
		if (b->builder->commit(b, t, &art, err) < 0)
			goto out;
		imgf_stepcache_keep_artifact(b, &art);
	}
	artifact_id = final_path(b, final_dir, art.id ? art.id : "");
	struct imgf_pp_ctx pc = {
		.build = b,
		.art = &art,
		.artifact_id = artifact_id,
		.start = start,
		.manifest = manifest,
	};
	if (imgf_post_processors_run(&pc, err) < 0) {
		remove_outputs(b, &art);
		goto out;
	}
	imgf_event("build-done",
		   json_pack("{s:s,s:s,s:I}", "image", b->def->name, "artifact_id", artifact_id,
			     "seconds", (json_int_t)(time(NULL) - start)),
		   NULL);
	log_info("%s: done in %lds: %s", b->def->name, (long)(time(NULL) - start), artifact_id);
	r = 0;
out:
	/* Before the target goes: a failed fetch's error is the build's. */
	imgf_fetch_ahead_end(ahead, steps_ran, err);
	if (t) {
		bool keep = r < 0 && b->opts->on_error == IMGF_ON_ERROR_ABORT;
		b->builder->cleanup(b, t, keep);
	}
	if (locked)
		outputs_unlock();
	imgf_artifact_release(&art);
	if (r < 0)
		imgf_error_prefix(err, "image '%s'", b->def->name);
	imgf_log_set_image(NULL);
	return r;
}

/* In a parallel build's child process: one image, its manifest entry sent back. */
struct build_job {
	struct imgf_build *b;
	const char *final_dir;
};

static int build_job_run(void *arg, json_t **result, struct imgf_error **err)
{
	struct build_job *bj = arg;
	json_t *m = imgf_manifest_new();
	int r = build_one(bj->b, bj->final_dir, m, err);
	if (r == 0)
		*result = json_incref(json_array_get(json_object_get(m, "builds"), 0));
	json_decref(m);
	build_release(bj->b); /* its stage directory is this process's to remove */
	return r;
}

/*
 * Build the images in child processes, `at_once` at a time. With --on-error=cleanup the
 * first failure cancels the others; with abort they go on (the failed one keeps its target).
 * The manifest gets the built images' entries in image order. Returns how many did not build;
 * *err is the failure that came first.
 */
static int build_parallel(struct imgf_build *builds, size_t n, unsigned at_once,
			  const char *final_dir, json_t *manifest, struct imgf_error **err)
{
	struct imgf_job *jobs = xcalloc(n, sizeof(*jobs));
	struct build_job *bj = xcalloc(n, sizeof(*bj));
	for (size_t i = 0; i < n; i++) {
		bj[i] = (struct build_job){&builds[i], final_dir};
		jobs[i] = (struct imgf_job){
			.name = builds[i].def->name, .run = build_job_run, .arg = &bj[i]};
	}
	if (at_once > n)
		at_once = (unsigned)n;
	imgf_event("parallel-builds",
		   json_pack("{s:I,s:I}", "images", (json_int_t)n, "at_once", (json_int_t)at_once),
		   NULL);
	log_info("building %zu images, %u at once", n, at_once);
	bool cancel = builds[0].opts->on_error == IMGF_ON_ERROR_CLEANUP;
	outputs_lock_fd = memfd_create("imgforge-outputs", MFD_CLOEXEC);
	if (outputs_lock_fd < 0)
		log_warn("no lock for the output directory (%s): builds may commit at once",
			 strerror(errno));
	int failed = (int)imgf_jobs_run(jobs, n, at_once, cancel);
	if (outputs_lock_fd >= 0)
		close(outputs_lock_fd);
	outputs_lock_fd = -1;

	struct imgf_job *first = NULL;
	for (size_t i = 0; i < n; i++)
		if (jobs[i].state == IMGF_JOB_FAILED && jobs[i].err &&
		    (!first || jobs[i].finished < first->finished))
			first = &jobs[i];
	for (size_t i = 0; i < n; i++) {
		struct imgf_job *j = &jobs[i];
		switch (j->state) {
		case IMGF_JOB_DONE:
			if (j->result)
				json_array_append(json_object_get(manifest, "builds"), j->result);
			break;
		case IMGF_JOB_CANCELLED:
			imgf_event("cancelled", json_pack("{s:s}", "image", j->name), NULL);
			log_warn("%s: cancelled: another image failed", j->name);
			break;
		case IMGF_JOB_NOT_STARTED:
			imgf_event("cancelled",
				   json_pack("{s:s,s:b}", "image", j->name, "started", 0), NULL);
			log_warn("%s: not built: another image failed", j->name);
			break;
		case IMGF_JOB_FAILED:
		case IMGF_JOB_RUNNING:
			if (j != first && j->err)
				log_warn("%s", j->err->msg);
			break;
		}
	}
	if (first && !*err)
		*err = STEAL_POINTER(&first->err);
	else if (failed && !*err)
		imgf_error_set(err, IMGF_EXIT_FAIL, "%d image(s) did not build", failed);
	imgf_jobs_release(jobs, n);
	free(jobs);
	free(bj);
	return failed;
}

static void remove_old_output(const char *path)
{
	struct imgf_error *e = NULL;
	if (rm_rf(path, &e) < 0)
		log_warn("the previous output is left in '%s': %s", path, e->msg);
	imgf_error_free(e);
}

/*
 * Put the finished `staging` directory in the place of `out_dir`: exchanged atomically where
 * the filesystem can, else renamed aside and in. The old output is removed afterwards.
 */
static int replace_output(const char *staging, const char *out_dir, struct imgf_error **err)
{
	if (renameat2(AT_FDCWD, staging, AT_FDCWD, out_dir, RENAME_EXCHANGE) == 0) {
		remove_old_output(staging); /* the old output is there now */
		return 0;
	}
	if (errno != EINVAL && errno != ENOSYS)
		return imgf_error_errno(err, errno, "replace '%s' with '%s'", out_dir, staging);
	_cleanup_free_ char *old = xasprintf("%s.old", staging);
	if (rename(out_dir, old) < 0)
		return imgf_error_errno(err, errno, "move '%s' aside", out_dir);
	if (rename(staging, out_dir) < 0) {
		int e = errno;
		if (rename(old, out_dir) < 0)
			log_warn("the previous output is now '%s'", old);
		return imgf_error_errno(err, e, "move '%s' to '%s'", staging, out_dir);
	}
	remove_old_output(old);
	return 0;
}

/* Variables extract_max_size and extract_max_entries: what any archive read may expand to. */
static int archive_settings(const struct imgf_config *c, struct imgf_error **err)
{
	struct imgf_archive_limits l = {0};
	const char *v = imgf_config_var(c, "extract_max_size");
	if (v && *v && (imgf_size_parse(v, &l.max_size) < 0 || l.max_size == 0))
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"%s: variable 'extract_max_size': '%s' is not a size like 16G "
			"(bytes, or K, M, G, T)",
			json_string_value(json_object_get(c->var_from, "extract_max_size")), v);
	v = imgf_config_var(c, "extract_max_entries");
	if (v && *v) {
		char *end;
		errno = 0;
		unsigned long long n = *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
		if (n == 0 || errno || *end)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"%s: variable 'extract_max_entries': '%s' is not a positive number",
				json_string_value(
					json_object_get(c->var_from, "extract_max_entries")),
				v);
		l.max_entries = n;
	}
	imgf_archive_set_limits(&l);
	return 0;
}

int imgf_engine_run(const struct imgf_config *c, const struct imgf_build_opts *opts,
		    struct imgf_error **err)
{
	if (check_selection(c, opts->only, "--only", err) < 0 ||
	    check_selection(c, opts->except, "--except", err) < 0 || archive_settings(c, err) < 0)
		return -1;
	struct imgf_contract contract;
	if (imgf_contract_resolve(c, &contract, err) < 0)
		return -1;
	const char *dir_name = contract.dir_name;
	_cleanup_free_ char *out_dir =
		path_join(opts->output_dir ? opts->output_dir : "output", dir_name);
	_cleanup_free_ char *cache_dir = imgf_cache_dir_default();

	/* Plan every selected image first: a config error anywhere stops all of them. */
	size_t n = 0;
	struct imgf_build *builds = xcalloc(c->nimages ? c->nimages : 1, sizeof(*builds));
	int r = -1;
	char *staging = NULL; /* with --force over an existing output: where this run builds */
	for (size_t i = 0; i < c->nimages; i++) {
		if (!selected(opts, c->images[i].name))
			continue;
		struct imgf_build *b = &builds[n++];
		b->contract = &contract;
		b->cache_dir = xstrdup(cache_dir);
		b->out_dir = xstrdup(out_dir);
		imgf_fetch_opts_default(&b->fetch, b->cache_dir);
		if (fetch_settings(c, &b->fetch, err) < 0)
			goto out;
		if (plan_image(c, &c->images[i], opts, b, err) < 0)
			goto out;
	}
	if (n == 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "%s: no image selected", c->path);
		goto out;
	}
	if (imgf_kube_version_check(c, !opts->inspect, err) < 0)
		goto out;
	if (opts->validate_only) {
		r = 0;
		goto out;
	}
	if (opts->lock_doc) {
		r = imgf_lock_builds(builds, n, opts->lock_doc, err);
		goto out;
	}
	if (opts->mirror_dir) {
		r = imgf_mirror_builds(c, builds, n, opts->mirror_dir, err);
		goto out;
	}

	struct stat st;
	if (lstat(out_dir, &st) == 0) {
		if (!opts->force) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "output directory '%s' already exists (use --force to "
				       "replace it)",
				       out_dir);
			goto out;
		}
		/* --force builds beside the old output, which is replaced only when every
		 * image has built: a failed build leaves it as it was. */
		_cleanup_free_ char *parent = path_dirname(out_dir);
		staging = xasprintf("%s/.%s.new-XXXXXX", parent, dir_name);
		if (!mkdtemp(staging)) {
			imgf_error_errno(err, errno, "create '%s'", staging);
			free(staging);
			staging = NULL;
			goto out;
		}
		chmod(staging, 0755);
		for (size_t i = 0; i < n; i++) {
			free(builds[i].out_dir);
			builds[i].out_dir = xstrdup(staging);
		}
	}
	const char *work_dir = staging ? staging : out_dir;

	json_t *manifest = imgf_manifest_new();
	int failed = 0;
	unsigned at_once = opts->parallel_builds ? opts->parallel_builds : (unsigned)n;
	if (at_once > 1 && n > 1)
		failed =
			build_parallel(builds, n, at_once, staging ? out_dir : NULL, manifest, err);
	for (size_t i = 0; at_once <= 1 && i < n && !imgf_interrupted; i++) {
		struct imgf_error *e = NULL;
		if (build_one(&builds[i], staging ? out_dir : NULL, manifest, &e) < 0) {
			failed++;
			if (!*err) {
				*err = e;
			} else {
				log_warn("%s", e->msg);
				imgf_error_free(e);
			}
			/* Like Packer, the other images still build; an interrupt stops all. */
			if (imgf_interrupted)
				break;
		}
	}
	if (json_array_size(json_object_get(manifest, "builds")) > 0) {
		struct imgf_error *e = NULL;
		if (mkdir_p(work_dir, 0755, &e) < 0 ||
		    imgf_manifest_write(manifest, work_dir, &e) < 0) {
			if (!*err)
				*err = e;
			else
				imgf_error_free(e);
			failed++;
		} else {
			log_info("manifest: %s/manifest.json", out_dir);
		}
	}
	json_decref(manifest);
	if (staging && !failed && !imgf_interrupted) {
		struct imgf_error *e = NULL;
		if (replace_output(staging, out_dir, &e) < 0) {
			*err = e;
			failed++;
		}
	}
	r = failed ? -1 : 0;
out:
	if (staging && access(staging, F_OK) == 0) {
		rm_rf(staging, NULL);
		log_info("the previous output '%s' is kept as it was", out_dir);
	}
	free(staging);
	for (size_t i = 0; i < n; i++)
		build_release(&builds[i]);
	free(builds);
	imgf_contract_release(&contract);
	return r;
}

json_t *imgf_engine_inspect(const struct imgf_config *c, const struct imgf_build_opts *opts)
{
	json_t *images = json_array();
	for (size_t i = 0; i < c->nimages; i++) {
		const struct imgf_image_def *d = &c->images[i];
		if (!selected(opts, d->name))
			continue;
		json_array_append_new(images, json_pack("{s:s,s:s,s:O,s:O,s:O}", "name", d->name,
							"file", d->file, "builder", d->builder,
							"provisioners", d->provisioners,
							"post_processors", d->post_processors));
	}
	json_t *vars = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(c->vars, k, v)
	{
		json_object_set_new(vars, k,
				    json_pack("{s:O,s:O}", "value", v, "from",
					      json_object_get(c->var_from, k)));
	}
	return json_pack("{s:s,s:o,s:o}", "config", c->path, "variables", vars, "images", images);
}
