/*
 * kind: what `kind create cluster` needs of a node image beyond Kubernetes itself: the
 * entrypoint, /kind/version, the default CNI and storage manifests, and systemd set up the
 * way kind's base image has it (wants links stripped, journald off kmsg, binfmt masked,
 * containerd and kubelet enabled).
 */
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "common.h"
#include "config.h"
#include "error.h"
#include "provisioner.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

static const struct imgf_key kind_keys[] = {
	{"version", IMGF_KEY_STRING, false}, /* written to /kind/version (kind node images) */
	{"manifests", IMGF_KEY_BOOL, false}, /* default CNI and storage manifests (default true) */
	{"cni", IMGF_KEY_STRING, false},     /* the default CNI's manifest: kindnetd (default) */
	{NULL, 0, false},
};

/* The default CNIs a node image can carry, and the manifest of each. */
static const struct {
	const char *name, *manifest;
} kind_cnis[] = {
	{"kindnetd", "kind/default-cni.yaml"},
	{"flannel", "kind/cni-flannel.yaml"},
};

static const char *cni_manifest(const struct imgf_step *s)
{
	const char *cni = imgf_cfg_str(s->cfg, "cni", "kindnetd");
	for (size_t i = 0; i < sizeof(kind_cnis) / sizeof(kind_cnis[0]); i++)
		if (!strcmp(cni, kind_cnis[i].name))
			return kind_cnis[i].manifest;
	return NULL;
}

static int kind_validate(struct imgf_step *s, struct imgf_error **err)
{
	if (cni_manifest(s))
		return 0;
	struct strbuf known = STRBUF_INIT;
	for (size_t i = 0; i < sizeof(kind_cnis) / sizeof(kind_cnis[0]); i++)
		strbuf_addf(&known, "%s'%s'", i ? ", " : "", kind_cnis[i].name);
	imgf_error_set(err, IMGF_EXIT_FAIL, "cni: unknown CNI '%s' (known: %s)",
		       imgf_cfg_str(s->cfg, "cni", ""), known.buf);
	strbuf_release(&known);
	return -1;
}

/* The default CNI's manifest; kind's own template fields (`{{ .PodSubnet }}`) are kept for
 * kind, which fills them in at cluster create. */
static int add_cni_manifest(struct imgf_step *s, struct imgf_tar *w, struct imgf_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	json_t *kind_fields = json_pack("{s:s}", ".PodSubnet", "{{ .PodSubnet }}");
	int r = imgf_step_data_with(s, cni_manifest(s), kind_fields, &text, &len, err);
	json_decref(kind_fields);
	if (r < 0)
		return -1;
	return imgf_tar_add_data(w, text, len, "kind/manifests/default-cni.yaml", 0644, 0, 0, err);
}

/* Systemd in a container: no units that need real hardware or a console. */
static const char systemd_script[] =
	"for d in /lib/systemd/system/multi-user.target.wants /etc/systemd/system/*.wants \\\n"
	"         /lib/systemd/system/local-fs.target.wants /lib/systemd/system/basic.target.wants \\\n"
	"         /lib/systemd/system/sockets.target.wants /lib/systemd/system/sysinit.target.wants; do\n"
	"  [ -d \"$d\" ] || continue\n"
	"  for u in \"$d\"/*; do\n"
	"    [ -e \"$u\" ] || [ -L \"$u\" ] || continue\n"
	"    case $(basename \"$u\") in\n"
	"    systemd-tmpfiles-setup.service|systemd-journald.socket|systemd-journald.service|\\\n"
	"    systemd-journald-dev-log.socket|dbus.socket|systemd-user-sessions.service|\\\n"
	"    containerd.service|kubelet.service|systemd-sysctl.service|\\\n"
	"    systemd-journal-flush.service|systemd-update-utmp.service) ;;\n"
	"    *) rm -f \"$u\" ;;\n"
	"    esac\n"
	"  done\n"
	"done\n"
	"for u in systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \\\n"
	"         proc-sys-fs-binfmt_misc.mount getty.target console-getty.service \\\n"
	"         systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \\\n"
	"         sys-kernel-debug.mount sys-kernel-tracing.mount systemd-remount-fs.service \\\n"
	"         systemd-firstboot.service systemd-logind.service; do\n"
	"  ln -sf /dev/null /etc/systemd/system/$u\n"
	"done\n"
	"mkdir -p /etc/systemd/journald.conf.d\n"
	"printf '[Journal]\\nReadKMsg=no\\nStorage=volatile\\n' > "
	"/etc/systemd/journald.conf.d/10-kind.conf\n"
	"ln -sf /lib/systemd/systemd /sbin/init\n"
	"mkdir -p /etc/systemd/system/multi-user.target.wants /etc/kubernetes/manifests\n"
	"for u in containerd kubelet; do\n"
	"  for p in /etc/systemd/system/$u.service /lib/systemd/system/$u.service; do\n"
	"    if [ -f $p ]; then ln -sf $p /etc/systemd/system/multi-user.target.wants/$u.service;"
	" break; fi\n"
	"  done\n"
	"done\n"
	"echo 'systemd prepared for a container'\n";

static int kind_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w)
		return -1;
	const char *version = imgf_cfg_str(s->cfg, "version", NULL);
	int r = prov_tar_add_data_file(s, w, "kind/entrypoint", "/usr/local/bin/entrypoint", 0755,
				       err);
	if (r == 0 && version) {
		_cleanup_free_ char *v = xasprintf("%s\n", version);
		r = imgf_tar_add_data(w, v, strlen(v), "kind/version", 0644, 0, 0, err);
	}
	if (r == 0 && imgf_cfg_bool(s->cfg, "manifests", true)) {
		r = add_cni_manifest(s, w, err);
		if (r == 0)
			r = prov_tar_add_data_file(s, w, "kind/default-storage.yaml",
						   "/kind/manifests/default-storage.yaml", 0644,
						   err);
	}
	if (prov_tar_put(w, path, t, r, err) < 0)
		return -1;
	return imgf_target_sh(t, s->label, systemd_script, NULL, err);
}

const struct imgf_provisioner_ops imgf_kind_provisioner = {
	.name = "kind",
	.quick = imgf_provisioner_quick, /* a few small files: cheaper to run again than to keep */
	.keys = kind_keys,
	.validate = kind_validate,
	.run = kind_run,
};
