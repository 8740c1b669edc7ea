/* kubernetes_source "release": SOURCE/NAME with SOURCE/NAME.sha256 beside it, as dl.k8s.io's
 * release tree has them (kubesrc.h). */
#include "build.h"
#include "config.h"
#include "error.h"
#include "kubesrc-internal.h"
#include "provisioner.h"
#include "util.h"

static int release_validate(struct imgf_step *s, const char *const *need, struct imgf_error **err)
{
	if (!*imgf_cfg_str(s->cfg, "source", ""))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "source: kubernetes_source 'release' needs the release "
				      "tree's URL (.../release/VERSION/bin/linux/ARCH)");
	return 0;
}

static void release_inputs(struct imgf_step *s, const char *const *names)
{
	const char *src = imgf_cfg_str(s->cfg, "source", "");
	for (size_t i = 0; names[i]; i++) {
		_cleanup_free_ char *url = xasprintf("%s/%s", src, names[i]);
		_cleanup_free_ char *ck = xasprintf("%s.sha256", url);
		imgf_step_add_input(s, names[i], url, ck, "source", NULL);
	}
}

static int release_stage(struct imgf_step *s, const char *const *need, const char *const *may,
			 json_t *out, struct imgf_error **err)
{
	for (size_t i = 0; need && need[i]; i++) {
		const struct imgf_input *in = imgf_step_input(s, need[i]);
		if (in)
			json_object_set_new(out, need[i], json_string(in->path));
	}
	return 0;
}

const struct kubesrc_ops kubesrc_release = {
	.name = "release",
	.type = KUBESRC_RELEASE,
	.validate = release_validate,
	.inputs = release_inputs,
	.stage = release_stage,
};
