/* crictl: the cri-tools release binary into /usr/local/bin and /etc/crictl.yaml. */
#include <stdlib.h>

#include "archive.h"
#include "common.h"
#include "config.h"
#include "error.h"
#include "provisioner.h"
#include "target.h"

static const struct imgf_key crictl_keys[] = {
	{"url", IMGF_KEY_STRING, true},
	{"checksum", IMGF_KEY_STRING, true},
	{"version", IMGF_KEY_STRING, false}, /* checked against `crictl --version` */
	{NULL, 0, false},
};

static int crictl_inputs(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	imgf_step_add_input(s, "crictl", imgf_cfg_str(s->cfg, "url", ""),
			    imgf_cfg_str(s->cfg, "checksum", ""), "url", "checksum");
	return 0;
}

static int crictl_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	static const char *const only[] = {"crictl", NULL};
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w)
		return -1;
	int r = imgf_tar_add_archive(w, imgf_step_input(s, "crictl")->path, 0, "usr/local/bin",
				     only, err);
	if (r == 0)
		r = prov_tar_add_data_file(s, w, "crictl/crictl.yaml", "/etc/crictl.yaml", 0644,
					   err);
	if (prov_tar_put(w, path, t, r, err) < 0)
		return -1;
	char *argv[] = {"/usr/local/bin/crictl", "--version", NULL};
	return prov_check_version(s, t, argv, imgf_cfg_str(s->cfg, "version", NULL), err);
}

const struct imgf_provisioner_ops imgf_crictl_provisioner = {
	.name = "crictl",
	.quick = imgf_provisioner_quick, /* a few small files: cheaper to run again than to keep */
	.keys = crictl_keys,
	.inputs = crictl_inputs,
	.run = crictl_run,
};
