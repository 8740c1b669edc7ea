/*
 * The step cache in a registry (src/regcache.h): --cache-from finds the deepest step the
 * registry holds past the local prefix and makes it a local entry; --cache-to exports each
 * state the build saves or finds.
 */
#include <stdlib.h>
#include <unistd.h>

#include "build.h"
#include "error.h"
#include "log.h"
#include "provisioner.h"
#include "regcache.h"
#include "stepcache.h"
#include "stepcache-internal.h"
#include "util.h"

void imgf_stepcache_remote_lookup(struct imgf_build *b)
{
	struct imgf_stepcache *c = b->cache;
	const char *repo = b->opts->cache_from;
	for (size_t i = b->nsteps; i-- > c->hit;) {
		struct imgf_step *s = &b->steps[i];
		_cleanup_free_ char *id = NULL;
		json_t *inputs = NULL;
		bool unreachable = false;
		struct imgf_error *e = NULL;
		double t0 = imgf_now();
		int r = imgf_regcache_get(b, (const char *const *)c->keys, i, &id, &inputs,
					  &unreachable, &e);
		if (r == 0)
			continue;
		if (r < 0) {
			log_warn(
				"%s: step %zu/%zu '%s': the cache entry %.12s in '%s' is not used%s: "
				"%s",
				b->def->name, i + 1, b->nsteps, s->label, c->keys[i], repo,
				unreachable ? " (nor is any other of that registry)" : "", e->msg);
			imgf_event("cache-rejected",
				   json_pack("{s:s,s:i,s:s,s:s,s:s,s:s}", "image", b->def->name,
					     "index", (int)i + 1, "step", s->label, "key",
					     c->keys[i], "from", repo, "error", e->msg),
				   NULL);
			imgf_error_free(e);
			if (unreachable)
				return;
			continue;
		}
		imgf_build_phase(b, "cache-pull", imgf_now() - t0);
		int save = imgf_stepcache_save_lock(b, c->keys[i], s->label);
		json_t *entry =
			imgf_stepcache_entry_new(b, c->keys[i], s->label, (long)i, id, 0, false);
		json_object_set_new(entry, "inputs", inputs);
		json_object_set_new(entry, "from", json_string(repo));
		imgf_stepcache_entry_replace(b, json_incref(entry));
		imgf_stepcache_use_take(c, &c->use[i], c->keys[i]);
		if (save >= 0)
			close(save);
		c->found[i] = entry;
		c->hit = i + 1;
		_cleanup_free_ char *human = xasprintf(
			"%s: steps 1 to %zu of %zu come from the registry cache '%s' (%.12s, %s)",
			b->def->name, i + 1, b->nsteps, repo, c->keys[i], id);
		imgf_event("cache-pulled",
			   json_pack("{s:s,s:i,s:s,s:s,s:s,s:s}", "image", b->def->name, "index",
				     (int)i + 1, "step", s->label, "key", c->keys[i], "from", repo,
				     "id", id),
			   human);
		return;
	}
}

void imgf_stepcache_remote_put(struct imgf_build *b, size_t i, const char *id, json_t *inputs)
{
	struct imgf_stepcache *c = b->cache;
	if (!b->opts->cache_to || c->put_off || !imgf_regcache_supported(b))
		return;
	struct imgf_error *e = NULL;
	double t0 = imgf_now();
	if (imgf_regcache_put(b, (const char *const *)c->keys, i, id, inputs, &e) < 0) {
		log_warn("%s: step '%s' (and any after it) is not exported to '%s': %s",
			 b->def->name, b->steps[i].label, b->opts->cache_to, e->msg);
		imgf_error_free(e);
		c->put_off = true;
		return;
	}
	imgf_build_phase(b, "cache-push", imgf_now() - t0);
}
