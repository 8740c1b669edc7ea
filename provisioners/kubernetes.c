/*
 * kubernetes: kubeadm, kubelet and kubectl into /usr/bin from a release tree
 * (SOURCE/NAME with SOURCE/NAME.sha256, as dl.k8s.io lays them out), a server tarball or a
 * local build (kubesrc.h), kubelet.service and its kubeadm drop-in, /etc/kubernetes/manifests;
 * each binary's version is checked in the target (a tarball's or local build's also on the host,
 * before the target exists, by reading the file: nothing is run on the host).
 */
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "common.h"
#include "config.h"
#include "error.h"
#include "kubesrc.h"
#include "provisioner.h"
#include "target.h"
#include "util.h"

static const struct imgf_key kubernetes_keys[] = {
	KUBESRC_KEYS,			    /* where from: release (source), tarball or local_dir */
	{"arch", IMGF_KEY_STRING, false},   /* default the 'arch' variable */
	{"version", IMGF_KEY_STRING, true}, /* vX.Y.Z */
	{"binaries", IMGF_KEY_STRING_LIST, false}, /* default kubeadm, kubelet, kubectl */
	{"enable", IMGF_KEY_BOOL, false},	   /* enable kubelet.service (default true) */
	{NULL, 0, false},
};

static char **binaries(const struct imgf_step *s)
{
	char **v = imgf_cfg_strv(s->cfg, "binaries");
	if (!v[0]) {
		v = strv_push(v, xstrdup("kubeadm"));
		v = strv_push(v, xstrdup("kubelet"));
		v = strv_push(v, xstrdup("kubectl"));
	}
	return v;
}

static int kubernetes_validate(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **bins = binaries(s);
	static const char *const known[] = {"kubeadm", "kubelet", "kubectl"};
	for (size_t i = 0; bins[i]; i++) {
		bool ok = false;
		for (size_t k = 0; k < ARRAY_SIZE(known); k++)
			ok = ok || !strcmp(bins[i], known[k]);
		if (!ok)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "binaries: unknown binary '%s' (known: 'kubeadm', "
					      "'kubelet', 'kubectl')",
					      bins[i]);
	}
	return kubesrc_validate(s, (const char *const *)bins, NULL, err);
}

static int kubernetes_inputs(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	_cleanup_strv_ char **bins = binaries(s);
	kubesrc_inputs(s, (const char *const *)bins);
	return 0;
}

/* The argv that prints a binary's version. */
static void version_argv(const char *bin, char *argv[5])
{
	memset(argv, 0, 5 * sizeof(*argv));
	argv[0] = (char *)bin;
	if (!strcmp(bin, "kubeadm")) {
		argv[1] = "version";
		argv[2] = "-o";
		argv[3] = "short";
	} else if (!strcmp(bin, "kubelet")) {
		argv[1] = "--version";
	} else {
		argv[1] = "version";
		argv[2] = "--client";
	}
}

/* Host paths of the binaries; those not from a release are checked here, before the target,
 * by reading their files (none is run on the host); run() asks each again in the target. */
static int kubernetes_stage(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **bins = binaries(s);
	s->staged = kubesrc_stage(s, (const char *const *)bins, NULL, err);
	if (!s->staged)
		return -1;
	if (kubesrc_type_of(s) == KUBESRC_RELEASE)
		return 0;
	for (size_t i = 0; bins[i]; i++) {
		const char *p = json_string_value(json_object_get(s->staged, bins[i]));
		if (kubesrc_check_binary(s, p, imgf_cfg_str(s->cfg, "version", ""), false, err) < 0)
			return imgf_error_prefix(err, "%s", bins[i]);
	}
	return 0;
}

static int kubernetes_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	_cleanup_strv_ char **bins = binaries(s);
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w)
		return -1;
	int r = 0;
	bool kubelet = false;
	for (size_t i = 0; bins[i] && r == 0; i++) {
		_cleanup_free_ char *dest = xasprintf("usr/bin/%s", bins[i]);
		const char *p = json_string_value(json_object_get(s->staged, bins[i]));
		r = imgf_tar_add_file(w, p, dest, 0755, 0, 0, err);
		kubelet = kubelet || !strcmp(bins[i], "kubelet");
	}
	if (r == 0)
		r = imgf_tar_add_dir(w, "etc/kubernetes/manifests", 0755, 0, 0, err);
	if (r == 0 && kubelet) {
		r = prov_tar_add_data_file(s, w, "kubernetes/kubelet.service",
					   "/etc/systemd/system/kubelet.service", 0644, err);
		if (r == 0)
			r = prov_tar_add_data_file(
				s, w, "kubernetes/10-kubeadm.conf",
				"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", 0644, err);
		if (r == 0 && imgf_cfg_bool(s->cfg, "enable", true))
			r = prov_tar_enable_unit(w, "kubelet.service",
						 "/etc/systemd/system/kubelet.service",
						 "multi-user.target", err);
	}
	if (prov_tar_put(w, path, t, r, err) < 0)
		return -1;

	const char *version = imgf_cfg_str(s->cfg, "version", "");
	for (size_t i = 0; bins[i]; i++) {
		char *argv[5];
		version_argv(bins[i], argv);
		if (prov_check_version(s, t, argv, version, err) < 0)
			return -1;
	}
	return 0;
}

const struct imgf_provisioner_ops imgf_kubernetes_provisioner = {
	.name = "kubernetes",
	.keys = kubernetes_keys,
	.validate = kubernetes_validate,
	.inputs = kubernetes_inputs,
	.stage = kubernetes_stage,
	.reads_host = kubesrc_reads_host,
	.run = kubernetes_run,
};
