/* cni: the CNI plugins release tarball into /opt/cni/bin. */
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "common.h"
#include "config.h"
#include "error.h"
#include "provisioner.h"
#include "target.h"
#include "util.h"

static const struct imgf_key cni_keys[] = {
	{"url", IMGF_KEY_STRING, true},
	{"checksum", IMGF_KEY_STRING, true},
	{"version", IMGF_KEY_STRING, false},
	{"plugins", IMGF_KEY_STRING_LIST, false}, /* only these (default: all of the tarball) */
	{"destination", IMGF_KEY_STRING, false},  /* default /opt/cni/bin */
	{NULL, 0, false},
};

static int cni_validate(struct imgf_step *s, struct imgf_error **err)
{
	const char *d = imgf_cfg_str(s->cfg, "destination", "/opt/cni/bin");
	if (d[0] != '/' || !d[1])
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "destination: '%s' is not an absolute directory", d);
	_cleanup_strv_ char **plugins = imgf_cfg_strv(s->cfg, "plugins");
	for (size_t i = 0; plugins[i]; i++)
		if (!str_is_shell_word(plugins[i]) || strchr(plugins[i], '/'))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "plugins: '%s' is not a plugin name", plugins[i]);
	return 0;
}

static int cni_inputs(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	imgf_step_add_input(s, "cni-plugins", imgf_cfg_str(s->cfg, "url", ""),
			    imgf_cfg_str(s->cfg, "checksum", ""), "url", "checksum");
	return 0;
}

static int cni_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	const char *dest = imgf_cfg_str(s->cfg, "destination", "/opt/cni/bin");
	_cleanup_strv_ char **plugins = imgf_cfg_strv(s->cfg, "plugins");
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w)
		return -1;
	int r = imgf_tar_add_archive(w, imgf_step_input(s, "cni-plugins")->path, 0, dest + 1,
				     plugins[0] ? (const char *const *)plugins : NULL, err);
	if (prov_tar_put(w, path, t, r, err) < 0)
		return -1;
	char *ls[] = {"ls", "--", (char *)dest, NULL};
	return imgf_target_run(t, s->label, ls, NULL, err);
}

const struct imgf_provisioner_ops imgf_cni_provisioner = {
	.name = "cni",
	.quick = imgf_provisioner_quick, /* a few small files: cheaper to run again than to keep */
	.keys = cni_keys,
	.validate = cni_validate,
	.inputs = cni_inputs,
	.run = cni_run,
};
