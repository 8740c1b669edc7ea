#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "error.h"
#include "postprocessor.h"
#include "strbuf.h"
#include "util.h"

extern const struct imgf_post_processor_ops imgf_checksum_post_processor,
	imgf_manifest_post_processor, imgf_ova_post_processor, imgf_raw_post_processor,
	imgf_vhd_post_processor, imgf_gce_post_processor, imgf_sbom_post_processor,
	imgf_provenance_post_processor;

/* Every post-processor (clang-format packs the lines); FIRST and LAST ones run in this order. */
static const struct imgf_post_processor_ops *const post_processors[] = {
	&imgf_checksum_post_processor, &imgf_sbom_post_processor, &imgf_provenance_post_processor,
	&imgf_manifest_post_processor, &imgf_ova_post_processor,  &imgf_raw_post_processor,
	&imgf_vhd_post_processor,      &imgf_gce_post_processor,
};

const struct imgf_post_processor_ops *imgf_post_processor_find(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(post_processors); i++)
		if (!strcmp(post_processors[i]->name, name))
			return post_processors[i];
	return NULL;
}

char *imgf_post_processor_names(void)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < ARRAY_SIZE(post_processors); i++)
		strbuf_addf(&sb, "%s'%s'", i ? ", " : "", post_processors[i]->name);
	return strbuf_detach(&sb, NULL);
}

static char **strv_push_new(char **v, const char *s)
{
	for (size_t i = 0; v[i]; i++)
		if (!strcmp(v[i], s))
			return v;
	return strv_push(v, xstrdup(s));
}

char **imgf_upload_exts(void)
{
	_cleanup_strv_ char **disks = imgf_builder_disk_exts();
	char **v = xcalloc(1, sizeof(*v));
	for (size_t i = 0; disks[i]; i++)
		v = strv_push_new(v, disks[i]);
	for (size_t i = 0; i < ARRAY_SIZE(post_processors); i++)
		if (post_processors[i]->ext)
			v = strv_push_new(v, post_processors[i]->ext);
	return v;
}

int imgf_post_processors_validate(struct imgf_build *b, struct imgf_error **err)
{
	const char *file = b->def->file;
	size_t i;
	json_t *pp;
	json_array_foreach(b->def->post_processors, i, pp)
	{
		const char *t = json_string_value(json_object_get(pp, "type"));
		const struct imgf_post_processor_ops *ops = imgf_post_processor_find(t);
		if (!ops) {
			_cleanup_free_ char *known = imgf_post_processor_names();
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "%s: post_processors[%zu].type: unknown "
					      "post-processor '%s' (known post-processors: %s)",
					      file, i, t ? t : "", known);
		}
		_cleanup_free_ char *where = xasprintf("%s: post_processors[%zu] (%s)", file, i, t);
		if (imgf_keys_check(pp, ops->keys, where, err) < 0)
			return -1;
		if (ops->needs_disk && !b->builder->disk_ext)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "%s: post-processor '%s' needs a disk image; the %s "
					      "builder does not make one",
					      where, ops->name, b->builder->name);
		if (ops->validate && ops->validate(b, pp, err) < 0)
			return imgf_error_prefix(err, "%s", where);
	}
	return 0;
}

static int run_one(const struct imgf_post_processor_ops *ops, struct imgf_pp_ctx *c, json_t *cfg,
		   struct imgf_error **err)
{
	/* What the builder made decides, whichever builder it was. */
	if (ops->needs_disk && (!c->art->disk || access(c->art->disk, R_OK) < 0))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "post-processor '%s' needs a disk image; the %s builder made "
				      "'%s'",
				      ops->name, c->build->builder->name,
				      c->art->id ? c->art->id : "nothing");
	c->cfg = cfg;
	int r = ops->run(c, err);
	c->cfg = NULL;
	return r;
}

static int run_always(enum imgf_pp_when when, struct imgf_pp_ctx *c, struct imgf_error **err)
{
	json_t *empty = json_object();
	int r = 0;
	for (size_t i = 0; i < ARRAY_SIZE(post_processors) && r == 0; i++)
		if (post_processors[i]->when == when)
			r = run_one(post_processors[i], c, empty, err);
	json_decref(empty);
	return r;
}

int imgf_post_processors_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	if (run_always(IMGF_PP_FIRST, c, err) < 0)
		return -1;
	size_t i;
	json_t *pp;
	json_array_foreach(c->build->def->post_processors, i, pp)
	{
		const struct imgf_post_processor_ops *ops =
			imgf_post_processor_find(json_string_value(json_object_get(pp, "type")));
		if (ops && ops->when == IMGF_PP_LISTED && run_one(ops, c, pp, err) < 0)
			return -1;
	}
	return run_always(IMGF_PP_LAST, c, err);
}
