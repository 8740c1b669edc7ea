/* imgforge lock (lock.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aptlock.h"
#include "build.h"
#include "builder.h"
#include "error.h"
#include "fsutil.h"
#include "lock.h"
#include "log.h"
#include "provisioner.h"
#include "target.h"
#include "util.h"

static void add_archives(json_t *all, json_t *more)
{
	size_t i, j;
	json_t *a, *b;
	json_array_foreach(more, i, a)
	{
		bool seen = false;
		json_array_foreach(all, j, b)
		{
			seen = seen || json_equal(a, b);
		}
		if (!seen)
			json_array_append(all, a);
	}
}

static int cmp_release(const void *x, const void *y)
{
	json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
	int c = strcmp(json_string_value(json_object_get(a, "release")),
		       json_string_value(json_object_get(b, "release")));
	return c ? c
		 : strcmp(json_string_value(json_object_get(a, "sha256")),
			  json_string_value(json_object_get(b, "sha256")));
}

static json_t *sorted_archives(json_t *arr)
{
	size_t n = json_array_size(arr);
	json_t **v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), cmp_release);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append(out, v[i]);
	free(v);
	return out;
}

static int lock_one(struct imgf_build *b, json_t *doc, struct imgf_error **err)
{
	size_t last = b->nsteps;
	for (size_t i = 0; i < b->nsteps; i++)
		if (b->steps[i].ops->lock)
			last = i;
	if (last == b->nsteps) {
		log_info("%s: no step installs distro packages: nothing to lock", b->def->name);
		return 0;
	}
	_cleanup_free_ char *tmp_parent = path_join(b->cache_dir, "tmp");
	_cleanup_free_ char *tmpl = path_join(tmp_parent, "lock-XXXXXX");
	if (mkdir_p(tmp_parent, 0700, err) < 0)
		return -1;
	if (!mkdtemp(tmpl))
		return imgf_error_errno(err, errno, "create '%s'", tmpl);
	b->stage_dir = xstrdup(tmpl);
	log_info("%s: resolving the distro packages on the base (%s builder)", b->def->name,
		 b->builder->name);
	struct imgf_target *t = NULL;
	if (b->builder->prepare(b, &t, err) < 0) {
		if (t)
			b->builder->cleanup(b, t, false);
		return imgf_error_prefix(err, "image '%s'", b->def->name);
	}
	t->stage_dir = b->stage_dir;
	json_t *steps = json_array(), *archives = json_array();
	int r = 0;
	for (size_t i = 0; i <= last && r == 0; i++) {
		struct imgf_step *s = &b->steps[i];
		if (!s->ops->lock)
			continue;
		json_t *e = NULL;
		/* a later locking step resolves against what this one installs */
		if ((r = s->ops->lock(s, t, i < last, &e, err)) < 0) {
			imgf_error_prefix(err, "image '%s': %s", b->def->name, s->where);
			break;
		}
		add_archives(archives, json_object_get(e, "archives"));
		json_object_del(e, "archives");
		log_info("%s: step %zu (%s): %zu package(s) to install", b->def->name, i + 1,
			 s->label, json_array_size(json_object_get(e, "packages")));
		json_array_append_new(steps, e);
	}
	b->builder->cleanup(b, t, false);
	if (r == 0)
		json_object_set_new(json_object_get(doc, "images"), b->def->name,
				    json_pack("{s:o,s:O}", "archives", sorted_archives(archives),
					      "steps", steps));
	json_decref(steps);
	json_decref(archives);
	return r;
}

int imgf_lock_builds(struct imgf_build *builds, size_t n, json_t *doc, struct imgf_error **err)
{
	for (size_t i = 0; i < n; i++)
		if (lock_one(&builds[i], doc, err) < 0)
			return -1;
	return 0;
}
