/*
 * The step cache in a registry (src/regcache.h): --cache-from finds the deepest step the
 * registry holds past the local prefix and makes it a local entry (a file builder: every step
 * up to it, one on the other); --cache-to exports each state the build saves or finds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "error.h"
#include "log.h"
#include "provisioner.h"
#include "regcache.h"
#include "stepcache.h"
#include "stepcache-internal.h"
#include "util.h"

/* Whether the builder's states are files stacked step on step (regcache.h). */
static bool file_mode(const struct imgf_build *b)
{
	return b->builder->cache->export_file && b->builder->cache->import_file;
}

/* The step below i whose state is kept (imgf_stepcache_keeps), which a file builder's state
 * of step i stands on: quick steps in a run are kept once, with the last of them. -1: none. */
static long kept_below(const struct imgf_build *b, size_t i)
{
	while (i-- > 0)
		if (imgf_stepcache_keeps(b, i))
			return (long)i;
	return -1;
}

/* Say that step i's entry in the registry is not used, and why (e is freed). */
static void rejected(struct imgf_build *b, size_t i, struct imgf_error *e, bool unreachable)
{
	struct imgf_stepcache *c = b->cache;
	struct imgf_step *s = &b->steps[i];
	const char *repo = b->opts->cache_from;
	log_warn("%s: step %zu/%zu '%s': the cache entry %.12s in '%s' is not used%s: %s",
		 b->def->name, i + 1, b->nsteps, s->label, c->keys[i], repo,
		 unreachable ? " (nor is any other of that registry)" : "", e->msg);
	imgf_event("cache-rejected",
		   json_pack("{s:s,s:i,s:s,s:s,s:s,s:s}", "image", b->def->name, "index",
			     (int)i + 1, "step", s->label, "key", c->keys[i], "from", repo, "error",
			     e->msg),
		   NULL);
	imgf_error_free(e);
}

/* Step i's state from the registry (`inputs` stolen) becomes a local entry, as if this build
 * had saved it. */
static void take(struct imgf_build *b, size_t i, const char *id, int64_t size, json_t *inputs)
{
	struct imgf_stepcache *c = b->cache;
	struct imgf_step *s = &b->steps[i];
	int save = imgf_stepcache_save_lock(b, c->keys[i], s->label);
	json_t *entry = imgf_stepcache_entry_new(b, c->keys[i], s->label, (long)i, id, size, false);
	json_object_set_new(entry, "inputs", inputs);
	json_object_set_new(entry, "from", json_string(b->opts->cache_from));
	imgf_stepcache_entry_replace(b, json_incref(entry));
	imgf_stepcache_use_take(c, &c->use[i], c->keys[i]);
	if (save >= 0)
		close(save);
	json_decref(c->found[i]);
	c->found[i] = entry;
	c->hit = i + 1;
}

static void say_pulled(struct imgf_build *b, size_t i, const char *id)
{
	struct imgf_stepcache *c = b->cache;
	const char *repo = b->opts->cache_from;
	_cleanup_free_ char *human =
		xasprintf("%s: steps 1 to %zu of %zu come from the registry cache '%s' (%.12s, %s)",
			  b->def->name, i + 1, b->nsteps, repo, c->keys[i], id);
	imgf_event("cache-pulled",
		   json_pack("{s:s,s:i,s:s,s:s,s:s,s:s}", "image", b->def->name, "index",
			     (int)i + 1, "step", b->steps[i].label, "key", c->keys[i], "from", repo,
			     "id", id),
		   human);
}

/* Step i from the registry into the local cache: 1 taken, 0 not there, -1 rejected (said). */
static int pull_step(struct imgf_build *b, size_t i, bool *unreachable)
{
	struct imgf_stepcache *c = b->cache;
	_cleanup_free_ char *id = NULL;
	json_t *inputs = NULL;
	int64_t size = 0;
	struct imgf_error *e = NULL;
	double t0 = imgf_now();
	long j = kept_below(b, i);
	const char *below = j >= 0 ? json_string_value(json_object_get(c->found[j], "id")) : NULL;
	int r = imgf_regcache_get(b, (const char *const *)c->keys, i, j, below, &id, &size, &inputs,
				  unreachable, &e);
	if (r < 0)
		rejected(b, i, e, *unreachable);
	if (r <= 0)
		return r;
	imgf_build_phase(b, "cache-pull", imgf_now() - t0);
	take(b, i, id, size, inputs);
	return 1;
}

/* A file builder: the deepest step the registry holds, then every step up to it in turn. */
static void lookup_files(struct imgf_build *b)
{
	struct imgf_stepcache *c = b->cache;
	size_t deepest = SIZE_MAX;
	for (size_t i = b->nsteps; i-- > c->hit;) {
		struct imgf_error *e = NULL;
		int r = imgf_regcache_probe(b, b->opts->cache_from, (const char *const *)c->keys, i,
					    &e);
		if (r < 0) {
			rejected(b, i, e, true);
			return;
		}
		if (r > 0) {
			deepest = i;
			break;
		}
	}
	if (deepest == SIZE_MAX)
		return;
	size_t first = c->hit;
	for (size_t i = c->hit; i <= deepest; i++) {
		if (!imgf_stepcache_keeps(b, i))
			continue; /* kept with the step after it, never exported on its own */
		bool unreachable = false;
		int r = pull_step(b, i, &unreachable);
		if (r == 0)
			log_warn("%s: step %zu/%zu '%s': the registry cache '%s' has step %zu but "
				 "not this one: the steps from here run",
				 b->def->name, i + 1, b->nsteps, b->steps[i].label,
				 b->opts->cache_from, deepest + 1);
		if (r <= 0)
			break;
	}
	if (c->hit > first)
		say_pulled(b, c->hit - 1,
			   json_string_value(json_object_get(c->found[c->hit - 1], "id")));
}

static bool take_artifact_first(struct imgf_build *b);

void imgf_stepcache_remote_lookup(struct imgf_build *b)
{
	struct imgf_stepcache *c = b->cache;
	if (file_mode(b)) {
		lookup_files(b);
		return;
	}
	if (take_artifact_first(b))
		return;
	for (size_t i = b->nsteps; i-- > c->hit;) {
		bool unreachable = false;
		int r = pull_step(b, i, &unreachable);
		if (r == 0 || (r < 0 && !unreachable))
			continue;
		if (r > 0)
			say_pulled(b, i, json_string_value(json_object_get(c->found[i], "id")));
		return;
	}
}

/* The local entry of step i (a new reference), or NULL. */
static json_t *local_entry(const struct imgf_build *b, size_t i)
{
	_cleanup_free_ char *name = xasprintf("%s.json", b->cache->keys[i]);
	_cleanup_free_ char *path = path_join(b->cache->dir, name);
	return imgf_stepcache_entry_load(path);
}

void imgf_stepcache_remote_put(struct imgf_build *b, size_t i, const char *id, json_t *inputs)
{
	struct imgf_stepcache *c = b->cache;
	if (!b->opts->cache_to || c->put_off || !imgf_regcache_supported(b))
		return;
	/* A file builder's state stands on the previous kept step's, which must be that
	 * entry's. */
	long j = file_mode(b) ? kept_below(b, i) : -1;
	json_t *prev = j >= 0 ? local_entry(b, (size_t)j) : NULL;
	const char *below = json_string_value(json_object_get(prev, "id"));
	struct imgf_error *e = NULL;
	double t0 = imgf_now();
	int r = j >= 0 && !below
			? imgf_error_set(&e, IMGF_EXIT_FAIL, "step %ld is not cached here", j + 1)
			: imgf_regcache_put(b, (const char *const *)c->keys, i, id, j, below,
					    inputs, &e);
	json_decref(prev);
	if (r < 0) {
		log_warn("%s: step '%s' (and any after it) is not exported to '%s': %s",
			 b->def->name, b->steps[i].label, b->opts->cache_to, e->msg);
		imgf_error_free(e);
		c->put_off = true;
		return;
	}
	imgf_build_phase(b, "cache-push", imgf_now() - t0);
}

void imgf_stepcache_remote_put_deepest(struct imgf_build *b)
{
	struct imgf_stepcache *c = b->cache;
	if (!c->hit || imgf_regcache_has(b, (const char *const *)c->keys, c->hit - 1))
		return;
	/* A file builder's step is of use only with every step below it: those the registry
	 * lacks go first. */
	size_t from = c->hit - 1;
	for (long j; file_mode(b) && (j = kept_below(b, from)) >= 0 &&
		     !imgf_regcache_has(b, (const char *const *)c->keys, (size_t)j);)
		from = (size_t)j;
	for (size_t i = from; i < c->hit && !c->put_off; i++) {
		if (!imgf_stepcache_keeps(b, i))
			continue; /* kept with the step after it */
		json_t *e = i == c->hit - 1 ? json_incref(c->found[i]) : local_entry(b, i);
		if (!e) {
			log_warn("%s: step '%s' (and any after it) is not exported to '%s': it is "
				 "not cached here",
				 b->def->name, b->steps[i].label, b->opts->cache_to);
			c->put_off = true;
			return;
		}
		imgf_stepcache_remote_put(b, i, json_string_value(json_object_get(e, "id")),
					  json_object_get(e, "inputs"));
		json_decref(e);
	}
}

/* Every step key and then the final key: the finished image's key chain (regcache.h). */
static const char **artifact_keys(const struct imgf_build *b)
{
	const char **k = xcalloc(b->nsteps + 2, sizeof(*k));
	for (size_t i = 0; i < b->nsteps; i++)
		k[i] = b->cache->keys[i];
	k[b->nsteps] = b->cache->final_key;
	return k;
}

/* Whether the finished image can go to or come from a registry: an image builder's. */
static bool artifact_mode(const struct imgf_build *b)
{
	return b->cache && b->cache->final_key && imgf_regcache_supported(b) && !file_mode(b);
}

void imgf_stepcache_remote_put_artifact(struct imgf_build *b, const char *id)
{
	struct imgf_stepcache *c = b->cache;
	if (!b->opts->cache_to || !artifact_mode(b) || c->put_off)
		return;
	const char **k = artifact_keys(b);
	if (imgf_regcache_has(b, k, b->nsteps)) {
		free(k);
		return;
	}
	json_t *inputs = imgf_stepcache_inputs_so_far(b);
	struct imgf_error *e = NULL;
	double t0 = imgf_now();
	int r = imgf_regcache_put(b, k, b->nsteps, id, -1, NULL, inputs, &e);
	json_decref(inputs);
	free(k);
	if (r < 0) {
		log_warn("%s: the finished image is not exported to '%s': %s", b->def->name,
			 b->opts->cache_to, e->msg);
		imgf_error_free(e);
		return;
	}
	imgf_build_phase(b, "cache-push", imgf_now() - t0);
}

json_t *imgf_stepcache_remote_get_artifact(struct imgf_build *b)
{
	struct imgf_stepcache *c = b->cache;
	const char *repo = b->opts->cache_from;
	if (!repo || !artifact_mode(b))
		return NULL;
	const char **k = artifact_keys(b);
	_cleanup_free_ char *id = NULL;
	json_t *inputs = NULL;
	int64_t size = 0;
	bool unreachable = false;
	struct imgf_error *e = NULL;
	double t0 = imgf_now();
	int r = imgf_regcache_get(b, k, b->nsteps, -1, NULL, &id, &size, &inputs, &unreachable, &e);
	free(k);
	if (r < 0) {
		log_warn("%s: the finished image's cache entry %.12s in '%s' is not used: %s",
			 b->def->name, c->final_key, repo, e->msg);
		imgf_event("cache-rejected",
			   json_pack("{s:s,s:s,s:s,s:s,s:s}", "image", b->def->name, "step",
				     "(artifact)", "key", c->final_key, "from", repo, "error",
				     e->msg),
			   NULL);
		imgf_error_free(e);
		return NULL;
	}
	if (r == 0)
		return NULL;
	json_decref(inputs); /* the steps' entries hold them */
	imgf_build_phase(b, "cache-pull", imgf_now() - t0);
	int save = imgf_stepcache_save_lock(b, c->final_key, "artifact");
	json_t *entry = imgf_stepcache_entry_new(b, c->final_key, "(artifact)", -1, id, size, true);
	json_object_set_new(entry, "from", json_string(repo));
	imgf_stepcache_entry_replace(b, json_incref(entry));
	if (save >= 0)
		close(save);
	_cleanup_free_ char *human =
		xasprintf("%s: the finished image comes from the registry cache '%s' (%.12s, %s)",
			  b->def->name, repo, c->final_key, id);
	imgf_event("cache-pulled",
		   json_pack("{s:s,s:s,s:s,s:s,s:s}", "image", b->def->name, "step", "(artifact)",
			     "key", c->final_key, "from", repo, "id", id),
		   human);
	return entry;
}

/*
 * An image builder whose every step the registry holds: the finished image alone when the
 * registry has that too, none of the steps' states (which this build would not use). The
 * final key needs what the steps recorded: the last step's record says, and is replayed as a
 * cached last step's entry is; when the finished image is not there (or not usable: said) all
 * is put back as it was and the steps are looked up as before. true: taken.
 */
static bool take_artifact_first(struct imgf_build *b)
{
	struct imgf_stepcache *c = b->cache;
	if (!b->nsteps || c->hit >= b->nsteps || !imgf_regcache_supported(b))
		return false;
	size_t last = b->nsteps - 1;
	json_t *inputs = NULL;
	struct imgf_error *e = NULL;
	if (imgf_regcache_record_inputs(b, (const char *const *)c->keys, last, &inputs, &e) <= 0) {
		imgf_error_free(e); /* the lookup of the steps says what is wrong */
		return false;
	}
	json_t *saved_inputs = json_deep_copy(b->inputs), *saved_labels = json_deep_copy(b->labels);
	json_t *saved_found = c->found[last];
	size_t saved_hit = c->hit;
	c->found[last] = json_pack("{s:s,s:o}", "key", c->keys[last], "inputs",
				   inputs ? inputs : json_array());
	c->hit = b->nsteps;
	imgf_stepcache_replay(b, last);
	imgf_stepcache_final_key(b);
	json_t *art = imgf_stepcache_remote_get_artifact(b);
	if (art) {
		json_decref(art); /* the local entry: reuse finds it */
		json_decref(saved_inputs);
		json_decref(saved_labels);
		json_decref(saved_found);
		c->artifact_only = true;
		return true;
	}
	json_decref(c->found[last]);
	c->found[last] = saved_found;
	c->hit = saved_hit;
	json_decref(b->inputs);
	b->inputs = saved_inputs;
	json_decref(b->labels);
	b->labels = saved_labels;
	free(c->final_key);
	c->final_key = NULL;
	return false;
}
