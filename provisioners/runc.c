/* runc: the release binary into /usr/local/sbin/runc. */
#include "common.h"
#include "config.h"
#include "error.h"
#include "provisioner.h"
#include "target.h"

static const struct imgf_key runc_keys[] = {
	{"url", IMGF_KEY_STRING, true},
	{"checksum", IMGF_KEY_STRING, true},
	{"version", IMGF_KEY_STRING, false},	 /* checked against `runc --version` */
	{"destination", IMGF_KEY_STRING, false}, /* default /usr/local/sbin/runc */
	{NULL, 0, false},
};

static int runc_inputs(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	imgf_step_add_input(s, "runc", imgf_cfg_str(s->cfg, "url", ""),
			    imgf_cfg_str(s->cfg, "checksum", ""), "url", "checksum");
	return 0;
}

static int runc_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	const char *dest = imgf_cfg_str(s->cfg, "destination", "/usr/local/sbin/runc");
	if (imgf_target_put_file(t, imgf_step_input(s, "runc")->path, dest, 0755, err) < 0)
		return -1;
	char *argv[] = {(char *)dest, "--version", NULL};
	return prov_check_version(s, t, argv, imgf_cfg_str(s->cfg, "version", NULL), err);
}

const struct imgf_provisioner_ops imgf_runc_provisioner = {
	.name = "runc",
	.quick = imgf_provisioner_quick, /* a few small files: cheaper to run again than to keep */
	.keys = runc_keys,
	.inputs = runc_inputs,
	.run = runc_run,
};
