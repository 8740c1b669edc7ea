/*
 * kubernetes: kubeadm, kubelet and kubectl into /usr/bin from a release tree
 * (SOURCE/NAME with SOURCE/NAME.sha256, as dl.k8s.io lays them out), kubelet.service and
 * its kubeadm drop-in, /etc/kubernetes/manifests; each binary's version is checked.
 */
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "common.h"
#include "error.h"
#include "provisioner.h"
#include "target.h"
#include "util.h"

static const struct imgf_key kubernetes_keys[] = {
	{"source", IMGF_KEY_STRING, true},	   /* .../release/vX.Y.Z/bin/linux/ARCH */
	{"version", IMGF_KEY_STRING, true},	   /* vX.Y.Z */
	{"binaries", IMGF_KEY_STRING_LIST, false}, /* default kubeadm, kubelet, kubectl */
	{"enable", IMGF_KEY_BOOL, false},	   /* enable kubelet.service (default true) */
	{NULL, 0, false},
};

static char **binaries(const struct imgf_step *s)
{
	char **v = imgf_step_strv(s, "binaries");
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
	return 0;
}

static int kubernetes_inputs(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	const char *src = imgf_step_str(s, "source", "");
	_cleanup_strv_ char **bins = binaries(s);
	for (size_t i = 0; bins[i]; i++) {
		_cleanup_free_ char *url = xasprintf("%s/%s", src, bins[i]);
		_cleanup_free_ char *ck = xasprintf("%s.sha256", url);
		imgf_step_add_input(s, bins[i], url, ck, "source", NULL);
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
		r = imgf_tar_add_file(w, imgf_step_input(s, bins[i])->path, dest, 0755, 0, 0, err);
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
		if (r == 0 && imgf_step_bool(s, "enable", true))
			r = prov_tar_enable_unit(w, "kubelet.service",
						 "/etc/systemd/system/kubelet.service",
						 "multi-user.target", err);
	}
	if (prov_tar_put(w, path, t, r, err) < 0)
		return -1;

	const char *version = imgf_step_str(s, "version", "");
	for (size_t i = 0; bins[i]; i++) {
		char *argv[5] = {NULL};
		argv[0] = bins[i];
		if (!strcmp(bins[i], "kubeadm")) {
			argv[1] = "version";
			argv[2] = "-o";
			argv[3] = "short";
		} else if (!strcmp(bins[i], "kubelet")) {
			argv[1] = "--version";
		} else {
			argv[1] = "version";
			argv[2] = "--client";
		}
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
	.run = kubernetes_run,
};
