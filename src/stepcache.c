/*
 * The step cache through a build (see stepcache.h): opening it (the keys and the longest
 * cached prefix), replaying what the cached steps recorded, keeping each step's state and
 * the artifact, and giving the artifact out again. The keys are made in stepcache-key.c, the
 * entries and their locks kept in stepcache-entry.c, the registry reached in
 * stepcache-remote.c; imgforge cache ls and prune are in stepcache-prune.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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

void imgf_stepcache_free(struct imgf_stepcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; c->keys && c->keys[i]; i++)
		json_decref(c->found[i]);
	for (size_t i = 0; c->use && i < c->nuse; i++)
		if (c->use[i] >= 0)
			close(c->use[i]);
	free(c->use);
	if (c->final_use >= 0)
		close(c->final_use);
	strv_free(c->keys);
	free(c->found);
	free(c->dir);
	free(c->final_key);
	json_decref(c->final_found);
	free(c);
}

int imgf_stepcache_open(struct imgf_build *b, struct imgf_error **err)
{
	const struct imgf_builder_cache_ops *ops = b->builder->cache;
	if (!ops || !ops->base || !ops->save || !ops->check || !ops->drop)
		return 0;
	bool remote = (b->opts->cache_to || b->opts->cache_from) && !b->opts->validate_only;
	if (remote && !imgf_regcache_supported(b)) {
		log_warn("%s: the %s builder's steps are not kept in a registry: --cache-to and "
			 "--cache-from are ignored for it",
			 b->def->name, b->builder->name);
		remote = false;
	}
	/* With --cache-from the keys are needed before the inputs are fetched: a base that is not
	 * at hand is pulled now. */
	bool pull = remote && b->opts->cache_from != NULL;
	_cleanup_free_ char *base = NULL;
	if (b->builder->cache->base(b, pull, &base, err) < 0)
		return -1;
	struct imgf_stepcache *c = xcalloc(1, sizeof(*c));
	b->cache = c;
	c->dir = path_join(b->cache_dir, "steps");
	c->keys = xcalloc(b->nsteps + 1, sizeof(char *));
	c->found = xcalloc(b->nsteps + 1, sizeof(json_t *));
	c->mark = json_array_size(b->inputs);
	c->nuse = b->nsteps;
	c->use = xcalloc(b->nsteps + 1, sizeof(int));
	for (size_t i = 0; i < b->nsteps; i++)
		c->use[i] = -1;
	c->final_use = -1;
	if (!base) {
		/* Not at hand: nothing of it can be cached; the keys come once it is. */
		c->pending = true;
		return 0;
	}
	if (imgf_stepcache_compute_keys(b, base, err) < 0)
		return -1;
	if (b->opts->no_cache)
		return 0; /* every step runs, and refreshes its entry */
	/* Standing on every key while looking: the chain found stays while the build uses it. */
	for (size_t i = 0; i < b->nsteps; i++)
		imgf_stepcache_use_take(c, &c->use[i], c->keys[i]);
	/* The longest cached prefix: the deepest intact entry holds every step before it. */
	int r = 0;
	for (size_t i = b->nsteps; i-- > 0;) {
		json_t *e = NULL;
		if ((r = imgf_stepcache_lookup(b, c->keys[i], false, false, b->steps[i].label, &e,
					       err)) < 0)
			break;
		if (e) {
			c->found[i] = e;
			c->hit = i + 1;
			break;
		}
	}
	if (r > 0)
		r = 0; /* a hit: the registry is looked in past it, and exported to */
	if (r == 0 && pull)
		imgf_stepcache_remote_lookup(b);
	/* The deepest cached state goes to the registry too, unless it is there already (not
	 * when only the finished image was taken: reuse exports that). */
	if (r == 0 && remote && b->opts->cache_to && !c->artifact_only)
		imgf_stepcache_remote_put_deepest(b);
	for (size_t i = c->hit; i < b->nsteps; i++) {
		if (c->use[i] >= 0)
			close(c->use[i]);
		c->use[i] = -1;
	}
	return r < 0 ? -1 : 0;
}

int imgf_stepcache_settle(struct imgf_build *b, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	if (!c || !c->pending)
		return 0;
	_cleanup_free_ char *base = NULL;
	if (b->builder->cache->base(b, true, &base, err) < 0)
		return -1;
	c->pending = false;
	/* Every step runs (hit stays 0) and is kept under its key. */
	return imgf_stepcache_compute_keys(b, base ? base : "", err);
}

void imgf_stepcache_say_cached(struct imgf_build *b, size_t i)
{
	struct imgf_step *s = &b->steps[i];
	_cleanup_free_ char *hit = xasprintf("%s: step %zu/%zu: %s: cached (%.12s)", b->def->name,
					     i + 1, b->nsteps, s->label, b->cache->keys[i]);
	imgf_event("step-cached",
		   json_pack("{s:s,s:i,s:s,s:s}", "image", b->def->name, "index", (int)i + 1,
			     "step", s->label, "key", b->cache->keys[i]),
		   hit);
}

const char *imgf_stepcache_from(const struct imgf_build *b)
{
	if (!b->cache || !b->cache->hit)
		return NULL;
	return json_string_value(json_object_get(b->cache->found[b->cache->hit - 1], "id"));
}

/* Step i's state as a twin build cached it (entry e, stolen): the target goes on from it. */
static void step_share(struct imgf_build *b, struct imgf_target *t, size_t i, json_t *e)
{
	struct imgf_stepcache *c = b->cache;
	struct imgf_step *s = &b->steps[i];
	const char *id = json_string_value(json_object_get(e, "id"));
	struct imgf_error *err = NULL;
	if (!b->builder->cache->adopt) {
		log_info("%s: step '%s' is cached by another build (%.12s): this one goes on "
			 "with its own state, not kept",
			 b->def->name, s->label, c->keys[i]);
	} else if (b->builder->cache->adopt(b, t, id, &err) < 0) {
		log_warn("%s: step '%s': cannot go on from the state another build cached: %s",
			 b->def->name, s->label, err->msg);
	} else {
		log_info("%s: step '%s' is cached by another build with the same steps (%.12s): "
			 "going on from its state",
			 b->def->name, s->label, c->keys[i]);
		imgf_event("step-shared",
			   json_pack("{s:s,s:i,s:s,s:s,s:s}", "image", b->def->name, "index",
				     (int)i + 1, "step", s->label, "key", c->keys[i], "id", id),
			   NULL);
	}
	imgf_error_free(err);
	json_decref(c->found[i]);
	c->found[i] = e;
}

void imgf_stepcache_step_done(struct imgf_build *b, struct imgf_target *t, size_t i)
{
	struct imgf_stepcache *c = b->cache;
	if (!c)
		return;
	struct imgf_step *s = &b->steps[i];
	if (!imgf_stepcache_keeps(b, i)) {
		imgf_event("step-not-kept",
			   json_pack("{s:s,s:i,s:s,s:s}", "image", b->def->name, "index",
				     (int)i + 1, "step", s->label, "key", c->keys[i]),
			   NULL);
		log_debug("%s: step '%s' is quick: its state is kept with the next step's",
			  b->def->name, s->label);
		return;
	}
	int save = imgf_stepcache_save_lock(b, c->keys[i], s->label);
	if (save < 0) {
		log_warn("%s: step '%s' is not cached: cannot lock its key: %s", b->def->name,
			 s->label, strerror(errno));
		return;
	}
	if (!b->opts->no_cache) {
		/* A twin build may have cached it meanwhile: one entry, shared. */
		imgf_stepcache_use_take(c, &c->use[i], c->keys[i]);
		json_t *e = NULL;
		struct imgf_error *le = NULL;
		if (imgf_stepcache_lookup(b, c->keys[i], false, true, s->label, &e, &le) < 0) {
			log_warn("%s: step '%s': %s", b->def->name, s->label, le->msg);
			imgf_error_free(le);
		}
		if (e) {
			step_share(b, t, i, e);
			close(save);
			imgf_stepcache_remote_put(
				b, i, json_string_value(json_object_get(c->found[i], "id")),
				json_object_get(c->found[i], "inputs"));
			return;
		}
	}
	_cleanup_free_ char *id = NULL;
	int64_t size = 0;
	struct imgf_error *e = NULL;
	double t0 = imgf_now();
	if (b->builder->cache->save(b, t, c->keys[i], s->label, &id, &size, &e) < 0) {
		log_warn("%s: step '%s' is not cached: %s", b->def->name, s->label, e->msg);
		imgf_error_free(e);
		close(save);
		return;
	}
	imgf_build_phase(b, "cache-save", imgf_now() - t0);
	imgf_stepcache_entry_replace(
		b, imgf_stepcache_entry_new(b, c->keys[i], s->label, (long)i, id, size, false));
	imgf_stepcache_use_take(c, &c->use[i], c->keys[i]);
	close(save);
	json_t *inputs = imgf_stepcache_inputs_so_far(b);
	imgf_stepcache_remote_put(b, i, id, inputs);
	json_decref(inputs);
	log_debug("%s: step '%s' cached as %.12s (%s)", b->def->name, s->label, c->keys[i], id);
}

int imgf_stepcache_reuse(struct imgf_build *b, struct imgf_artifact *out, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	if (!c || !c->final_key || !b->builder->cache->reuse || b->opts->no_cache ||
	    c->hit != b->nsteps)
		return 0;
	json_t *e = NULL;
	imgf_stepcache_use_take(c, &c->final_use,
				c->final_key); /* what is given out stays meanwhile */
	if (imgf_stepcache_lookup(b, c->final_key, true, false, "artifact", &e, err) < 0)
		return -1;
	if (!e && !c->artifact_only)
		e = imgf_stepcache_remote_get_artifact(b);
	if (!e && c->artifact_only) /* no state to build from: the steps' were not taken */
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"the finished image taken from the registry cache '%s' is not "
			"in the cache under the final key %.12s",
			b->opts->cache_from, c->final_key);
	if (!e)
		return 0;
	c->final_found = e;
	const char *id = json_string_value(json_object_get(e, "id"));
	if (b->builder->cache->reuse(b, id, out, err) < 0)
		return -1;
	imgf_stepcache_remote_put_artifact(b, id); /* unless the registry has it */
	for (size_t i = 0; i < b->nsteps; i++)
		imgf_stepcache_say_cached(b, i);
	log_info("%s: nothing changed: the artifact built before is given out again", b->def->name);
	return 1;
}

static void keep_artifact(struct imgf_build *b, const struct imgf_artifact *art);

void imgf_stepcache_keep_artifact(struct imgf_build *b, const struct imgf_artifact *art)
{
	struct imgf_stepcache *c = b->cache;
	if (!c || !c->final_key || !b->builder->cache->reuse || !art->id)
		return;
	/* Again, from the artifact's labels: what prepare recorded (qemu's base image) is in
	 * them now, as a rebuild's are replayed from the cached steps before it looks. */
	imgf_stepcache_final_key(b);
	if (c->final_use >= 0) /* reuse's look at the key before: this one may differ */
		close(c->final_use);
	c->final_use = -1;
	int save = imgf_stepcache_save_lock(b, c->final_key, "artifact");
	if (save < 0) {
		log_warn("%s: the artifact is not cached: cannot lock its key: %s", b->def->name,
			 strerror(errno));
		return;
	}
	if (!b->opts->no_cache) {
		/* A twin build may have kept the same artifact meanwhile: that one stays. */
		imgf_stepcache_use_take(c, &c->final_use, c->final_key);
		json_t *e = NULL;
		struct imgf_error *le = NULL;
		if (imgf_stepcache_lookup(b, c->final_key, true, true, "artifact", &e, &le) < 0) {
			log_warn("%s: artifact: %s", b->def->name, le->msg);
			imgf_error_free(le);
		}
		if (e) {
			log_info("%s: the artifact is cached already by another build (%.12s)",
				 b->def->name, c->final_key);
			json_decref(e);
			close(save);
			return;
		}
	}
	keep_artifact(b, art);
	close(save);
}

/* imgf_stepcache_keep_artifact under the final key's save lock. */
static void keep_artifact(struct imgf_build *b, const struct imgf_artifact *art)
{
	struct imgf_stepcache *c = b->cache;
	_cleanup_free_ char *id = NULL;
	int64_t size = 0;
	if (!b->builder->cache->keep) {
		id = xstrdup(art->id);
	} else {
		struct imgf_error *e = NULL;
		double t0 = imgf_now();
		if (b->builder->cache->keep(b, art, c->final_key, &id, &size, &e) < 0) {
			log_warn("%s: the artifact is not cached: %s", b->def->name, e->msg);
			imgf_error_free(e);
			return;
		}
		imgf_build_phase(b, "cache-save", imgf_now() - t0);
	}
	imgf_stepcache_entry_replace(
		b, imgf_stepcache_entry_new(b, c->final_key, "(artifact)", -1, id, size, true));
	imgf_stepcache_remote_put_artifact(b, id);
}
