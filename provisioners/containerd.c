/*
 * containerd: the release tarball's binaries into /usr/local/bin (or the distro package),
 * its systemd unit, and /etc/containerd/config.toml with SystemdCgroup and the sandbox image.
 */
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "common.h"
#include "config.h"
#include "error.h"
#include "provisioner.h"
#include "target.h"
#include "util.h"

static const struct imgf_key containerd_keys[] = {
	{"source", IMGF_KEY_STRING, false},   /* tarball (default) or package */
	{"url", IMGF_KEY_STRING, false},      /* release tarball */
	{"checksum", IMGF_KEY_STRING, false}, /* its checksum spec */
	{"version", IMGF_KEY_STRING, false},  /* checked against `containerd --version` */
	{"config", IMGF_KEY_BOOL, false},     /* write config.toml (default true) */
	{"enable", IMGF_KEY_BOOL, false},     /* enable the unit (default true) */
	{NULL, 0, false},
};

static bool from_package(const struct imgf_step *s)
{
	return !strcmp(imgf_cfg_str(s->cfg, "source", "tarball"), "package");
}

/* From the release tarball the step unpacks a verified download: running it again costs a
 * second or two, less than keeping its state. From a package it runs apt. */
static bool containerd_quick(const struct imgf_step *s)
{
	return !from_package(s);
}

static int containerd_validate(struct imgf_step *s, struct imgf_error **err)
{
	const char *src = imgf_cfg_str(s->cfg, "source", "tarball");
	if (strcmp(src, "tarball") && strcmp(src, "package"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "source: '%s' is not one of 'tarball', 'package'", src);
	if (!from_package(s) &&
	    (!imgf_cfg_str(s->cfg, "url", NULL) || !imgf_cfg_str(s->cfg, "checksum", NULL)))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "a tarball source needs 'url' and 'checksum'");
	return 0;
}

static int containerd_inputs(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	if (!from_package(s))
		imgf_step_add_input(s, "containerd", imgf_cfg_str(s->cfg, "url", ""),
				    imgf_cfg_str(s->cfg, "checksum", ""), "url", "checksum");
	return 0;
}

static int containerd_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	const char *unit_path = "/etc/systemd/system/containerd.service";
	const char *bin = "/usr/local/bin/containerd";
	if (from_package(s)) {
		char *pkgs[] = {"containerd", NULL};
		if (prov_packages_install(s, t, pkgs, true, true, "auto", err) < 0)
			return -1;
		unit_path = "/lib/systemd/system/containerd.service";
		bin = "containerd";
	}
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w)
		return -1;
	int r = 0;
	if (!from_package(s)) {
		const struct imgf_input *in = imgf_step_input(s, "containerd");
		/* Upstream's layout: bin/containerd, bin/ctr, bin/containerd-shim-runc-v2 … */
		r = imgf_tar_add_archive(w, in->path, 1, "usr/local/bin", NULL, err);
		if (r == 0)
			r = prov_tar_add_data_file(s, w, "containerd/containerd.service", unit_path,
						   0644, err);
	}
	if (r == 0 && imgf_cfg_bool(s->cfg, "config", true))
		r = prov_tar_add_data_file(s, w, "containerd/config.toml",
					   "/etc/containerd/config.toml", 0644, err);
	if (r == 0 && imgf_cfg_bool(s->cfg, "enable", true))
		r = prov_tar_enable_unit(w, "containerd.service", unit_path, "multi-user.target",
					 err);
	if (prov_tar_put(w, path, t, r, err) < 0)
		return -1;
	char *argv[] = {(char *)bin, "--version", NULL};
	return prov_check_version(s, t, argv, imgf_cfg_str(s->cfg, "version", NULL), err);
}

const struct imgf_provisioner_ops imgf_containerd_provisioner = {
	.name = "containerd",
	.keys = containerd_keys,
	.validate = containerd_validate,
	.inputs = containerd_inputs,
	.run = containerd_run,
	.quick = containerd_quick,
};
