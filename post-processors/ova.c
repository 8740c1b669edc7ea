/* ova: the disk artifact as NAME.ova (+ .sha256) beside it in the output directory (ova.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "contract.h"
#include "error.h"
#include "ova.h"
#include "postprocessor.h"
#include "util.h"

static const struct imgf_key ova_keys[] = {
	{"custom_properties", IMGF_KEY_OBJECT, false},
	{NULL, 0, false},
};

/*
 * The options from the build: the output name and the custom properties (the
 * post-processor's own over the variable's JSON object). The disk and the output directory are
 * left for the caller; *props and *name are the caller's to free.
 */
static int ova_opts_init(struct imgf_build *b, json_t *cfg, struct imgf_ova_opts *o, json_t **props,
			 char **name, struct imgf_error **err)
{
	*props = NULL;
	*name = NULL;
	*name = xstrdup(b->contract->dir_name);
	json_t *p = json_object();
	const char *pv = imgf_build_var(b, "ovf_custom_properties");
	if (pv && *pv) {
		json_t *j = json_loads(pv, 0, NULL);
		if (!json_is_object(j)) {
			json_decref(j);
			json_decref(p);
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "variable 'ovf_custom_properties': expected a JSON "
					      "object of strings, got '%s'",
					      pv);
		}
		json_object_update(p, j);
		json_decref(j);
	}
	json_t *own = json_object_get(cfg, "custom_properties");
	if (json_is_object(own))
		json_object_update(p, own);
	*o = (struct imgf_ova_opts){
		.name = *name,
		.vars = b->config->vars,
		.custom_properties = p,
		.build_timestamp =
			b->contract->epoch.set ? b->contract->epoch.value : (int64_t)time(NULL),
	};
	*props = p;
	return 0;
}

/* What ova_run() will check, checked before anything is built. */
static int ova_validate(struct imgf_build *b, json_t *cfg, struct imgf_error **err)
{
	struct imgf_ova_opts o;
	json_t *props;
	_cleanup_free_ char *name = NULL;
	int r = ova_opts_init(b, cfg, &o, &props, &name, err);
	if (r == 0)
		r = imgf_ova_validate(&o, err);
	json_decref(props);
	return r;
}

static int ova_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	struct imgf_build *b = c->build;
	struct imgf_artifact *art = c->art;
	struct imgf_ova_opts o;
	json_t *props;
	_cleanup_free_ char *name = NULL;
	if (ova_opts_init(b, c->cfg, &o, &props, &name, err) < 0)
		return imgf_error_prefix(err, "post-processor 'ova'");
	o.disk = art->disk;
	o.out_dir = b->out_dir;
	o.firmware = art->firmware;
	char **files = NULL;
	int r = imgf_ova_write(&o, &files, err);
	json_decref(props);
	if (r < 0)
		return imgf_error_prefix(err, "post-processor 'ova'");
	for (size_t i = 0; files && files[i]; i++)
		art->files = strv_push(art->files, xstrdup(files[i]));
	strv_free(files);
	return 0;
}

const struct imgf_post_processor_ops imgf_ova_post_processor = {
	.name = "ova",
	.keys = ova_keys,
	.when = IMGF_PP_LISTED,
	.needs_disk = true,
	.ext = "ova",
	.validate = ova_validate,
	.run = ova_run,
};
