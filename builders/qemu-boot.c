/*
 * The qemu builder's boot check: the finished image booted once through libvirt (BIOS or
 * UEFI) with a NoCloud seed whose script checks the runtime from inside (and, for kubeadm,
 * brings up a one-node control plane), its verdict read from the serial console.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "build.h"
#include "builder.h"
#include "cidata.h"
#include "contract.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "run.h"
#include "strbuf.h"
#include "util.h"
#include "builders/qemu-internal.h"

#define CHECK_BEGIN "IMGFORGE-BOOT-CHECK-BEGIN"
#define CHECK_END "IMGFORGE-BOOT-CHECK-END"

int imgf_qemu_boot_mode(const struct imgf_build *b)
{
	json_t *v = json_object_get(b->builder_cfg, "boot_check");
	if (!v)
		return BOOT_RUNTIME;
	if (json_is_boolean(v))
		return json_is_true(v) ? BOOT_RUNTIME : BOOT_NONE;
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	if (!strcmp(s, "true"))
		return BOOT_RUNTIME;
	if (!strcmp(s, "false"))
		return BOOT_NONE;
	if (!strcmp(s, "kubeadm"))
		return BOOT_KUBEADM;
	return -1;
}

const char *imgf_qemu_firmware(const struct imgf_build *b)
{
	const char *f = imgf_cfg_str(b->builder_cfg, "firmware", "bios");
	if (!strcmp(f, "bios"))
		return "bios";
	if (!strcmp(f, "uefi"))
		return "uefi";
	return NULL;
}

/*
 * What the guest runs once at first boot (cloud-init): the runtime must really work, so
 * besides versions and units it starts a pod sandbox through CRI (containerd, runc and the
 * preloaded pause image, host network, as kubelet starts static pods) and removes it.
 */
static char *boot_script(const struct imgf_build *b, enum boot_mode mode)
{
	const char *kv = b->contract->kubernetes_version;
	const char *fw = imgf_qemu_firmware(b);
	bool uefi = fw && !strcmp(fw, "uefi");
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(
		&sb,
		"out=/dev/ttyS0\n"
		/* Also to the console, unless that is ttyS0 already (each line once). */
		"say() { echo \"$*\" >$out; grep -qw ttyS0 /sys/class/tty/console/active 2>/dev/null "
		"|| echo \"$*\" >/dev/console 2>/dev/null || true; }\n"
		"check() { if (eval \"$2\") >/tmp/imgforge-check.log 2>&1; then "
		"say \"IMGFORGE-CHECK $1 ok\"; else say \"IMGFORGE-CHECK $1 FAILED\"; "
		"sed 's/^/IMGFORGE-LOG /' /tmp/imgforge-check.log | tail -n 50 >$out; fi; }\n"
		"sandbox() {\n"
		/* As kubelet asks: host network, and a cgroup parent that is a systemd slice
		 * (containerd runs runc with the systemd cgroup driver). */
		"  printf '%s' '{\"metadata\":{\"name\":\"imgforge-boot-check\",\"namespace\":"
		"\"default\",\"uid\":\"imgforge-boot-check\",\"attempt\":0},\"linux\":"
		"{\"cgroup_parent\":\"imgforge.slice\",\"security_context\":"
		"{\"namespace_options\":{\"network\":2}}}}' "
		">/tmp/imgforge-sandbox.json\n"
		"  id=$(crictl runp /tmp/imgforge-sandbox.json) || return 1\n"
		"  crictl inspectp \"$id\" | grep -q SANDBOX_READY; rc=$?\n"
		"  crictl stopp \"$id\" && crictl rmp \"$id\" || rc=1\n"
		"  return $rc\n"
		"}\n");
	if (mode == BOOT_KUBEADM)
		/* A one-node control plane from the preloaded images only (nothing may be
		 * pulled), a bridge CNI so the node can turn Ready, then the node's state. */
		strbuf_addf(
			&sb,
			"kubeadm_up() {\n"
			"  modprobe br_netfilter 2>/dev/null; modprobe overlay 2>/dev/null\n"
			"  sysctl -qw net.ipv4.ip_forward=1\n"
			"  t0=$(date +%%s)\n"
			/* Under TCG a control plane takes longer to answer than kubeadm's default
			 * four minutes (on a loaded host, kube-apiserver started 11 minutes after
			 * its pod): longer waits where kubeadm takes them (v1beta4, v1.31+). */
			"  c=/tmp/imgforge-kubeadm.yaml\n"
			"  printf '%%s\\n' 'apiVersion: kubeadm.k8s.io/v1beta4' 'kind: InitConfiguration' "
			"'timeouts:' '  controlPlaneComponentHealthCheck: 25m0s' "
			"'  kubeletHealthCheck: 25m0s' '  kubernetesAPICall: 25m0s' "
			"'  etcdAPICall: 15m0s' '  tlsBootstrap: 25m0s' "
			"'---' 'apiVersion: kubeadm.k8s.io/v1beta4' "
			"'kind: ClusterConfiguration' 'kubernetesVersion: %s' 'networking:' "
			"'  podSubnet: 10.244.0.0/16' >$c\n"
			"  if kubeadm config validate --config $c >/dev/null 2>&1; then\n"
			"    args=\"--config $c\"\n"
			"  else\n"
			"    args=\"--kubernetes-version %s --pod-network-cidr 10.244.0.0/16\"\n"
			"  fi\n"
			/* What a failure needs to be understood: the containers and kubelet's last
			 * words (the check prints the last lines of all this). */
			"  diag() { echo '--- pods:'; crictl pods 2>&1 | cut -c1-150; "
			"echo '--- containers:'; crictl ps -a 2>&1 | cut -c1-150; "
			"echo '--- kubelet, its errors:'; journalctl -u kubelet --no-pager 2>&1 | "
			"grep -E '^.{0,80}(E[0-9]{4}|W[0-9]{4}) ' | grep -v 'not registered yet' | "
			"tail -n 12 | cut -c1-400; "
			"echo \"--- load: $(cat /proc/loadavg), up $(cut -d' ' -f1 /proc/uptime)s, "
			"$(free -m | awk '/^Mem/ {print $7}') MiB available, "
			"$(df -m / | awk 'NR == 2 {print $4}') MiB free on /\"; }\n"
			"  kubeadm init $args "
			"--ignore-preflight-errors=NumCPU,Mem,HTTPProxyCIDR,SystemVerification "
			"--skip-token-print || { diag; return 1; }\n"
			"  say \"IMGFORGE-TIME kubeadm-init $(($(date +%%s) - t0))s\"\n"
			"  mkdir -p /etc/cni/net.d\n"
			"  printf '%%s' '{\"cniVersion\":\"0.4.0\",\"name\":\"imgforge\",\"plugins\":"
			"[{\"type\":\"bridge\",\"bridge\":\"cni0\",\"isGateway\":true,\"ipMasq\":true,"
			"\"ipam\":{\"type\":\"host-local\",\"ranges\":[[{\"subnet\":\"10.244.0.0/24\"}]],"
			"\"routes\":[{\"dst\":\"0.0.0.0/0\"}]}},{\"type\":\"portmap\","
			"\"capabilities\":{\"portMappings\":true}}]}' >/etc/cni/net.d/10-imgforge.conflist\n"
			"  k() { kubectl --kubeconfig /etc/kubernetes/admin.conf \"$@\"; }\n"
			"  k wait --for=condition=Ready node --all --timeout=600s || { diag; return 1; }\n"
			"  say \"IMGFORGE-TIME node-ready $(($(date +%%s) - t0))s\"\n"
			/* The add-ons too: kube-proxy on the node, CoreDNS on the pod network. */
			"  for w in daemonset/kube-proxy deployment/coredns; do\n"
			"    k -n kube-system rollout status $w --timeout=600s || "
			"{ k get pods -A -o wide; return 1; }\n"
			"  done\n"
			"  k -n kube-system wait --for=condition=Ready pod --all --timeout=600s || "
			"{ k get pods -A -o wide; return 1; }\n"
			"  say \"IMGFORGE-TIME pods-ready $(($(date +%%s) - t0))s\"\n"
			"  k get pods -A -o wide >$out\n"
			"}\n",
			kv ? kv : "", kv ? kv : "");
	strbuf_addf(&sb,
		    "say " CHECK_BEGIN "\n"
		    "i=0; while [ $i -lt 120 ] && ! systemctl is-active -q containerd; do "
		    "i=$((i+1)); sleep 1; done\n"
		    "check containerd-active 'systemctl is-active -q containerd'\n"
		    "check kubelet-enabled 'systemctl is-enabled -q kubelet'\n"
		    "check kubeadm-version 'test \"$(kubeadm version -o short)\" = %s'\n"
		    "check kubelet-version 'kubelet --version | grep -qF %s'\n"
		    "check kubectl-version 'kubectl version --client | grep -qF %s'\n"
		    "check crictl-version 'crictl --version'\n"
		    "check pause-sandbox sandbox\n"
		    /* The kernel was started by the firmware asked for: UEFI leaves
		     * /sys/firmware/efi, BIOS does not. */
		    "check firmware-%s '%s -d /sys/firmware/efi'\n",
		    kv ? kv : "", kv ? kv : "", kv ? kv : "", uefi ? "uefi" : "bios",
		    uefi ? "test" : "test !");
	if (mode == BOOT_KUBEADM)
		strbuf_addstr(&sb, "check kubeadm-node-ready kubeadm_up\n");
	strbuf_addstr(&sb, "say " CHECK_END "\n");
	return strbuf_detach(&sb, NULL);
}

/* Log each console line that starts with `mark` (without it). */
static void log_marked(const struct imgf_build *b, const char *text, const char *mark)
{
	size_t n = strlen(mark);
	for (const char *p = strstr(text, mark); p; p = strstr(p + n, mark)) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > n && p[len - 1] == '\r')
			len--;
		log_info("%s: boot check: %.*s", b->def->name, (int)(len - n), p + n);
	}
}

/* The last n lines of a file, for a failure message. */
static char *tail_lines(const char *path, int n)
{
	char *text = NULL;
	size_t len = 0;
	if (read_file(path, 0, &text, &len, NULL) < 0)
		return xstrdup("(no console output)");
	size_t i = len;
	int lines = 0;
	while (i > 0 && lines <= n)
		if (text[--i] == '\n')
			lines++;
	char *r = xstrdup(text + (i ? i + 1 : 0));
	free(text);
	return r;
}

char *imgf_qemu_domain_xml(const struct imgf_qemu_domain *d)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "<domain type='%s'>\n  <name>", d->kvm ? "kvm" : "qemu");
	strbuf_add_xml(&sb, d->name);
	strbuf_addf(&sb,
		    "</name>\n"
		    "  <memory unit='MiB'>%ld</memory>\n"
		    "  <vcpu>%ld</vcpu>\n"
		    "  <os><type arch='x86_64' machine='pc'>hvm</type>",
		    d->memory_mb, d->cpus);
	if (d->loader) {
		/* OVMF's code read-only; its variables in the domain's own copy. */
		strbuf_addstr(&sb, "\n    <loader readonly='yes' secure='no' type='pflash'>");
		strbuf_add_xml(&sb, d->loader);
		strbuf_addstr(&sb, "</loader>\n    <nvram>");
		strbuf_add_xml(&sb, d->nvram);
		strbuf_addstr(&sb, "</nvram>\n    ");
	}
	strbuf_addstr(&sb, "<boot dev='hd'/></os>\n"
			   "  <features><acpi/><apic/></features>\n"
			   "  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>\n"
			   "  <devices>\n"
			   "    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
			   "<source file='");
	strbuf_add_xml(&sb, d->disk);
	/* The NoCloud seed on virtio too: an IDE CD-ROM went undetected (no sr0, so no seed) in
	 * a UEFI boot check on a loaded TCG host; cloud-init finds the label on any disk. */
	strbuf_addstr(&sb, "'/><target dev='vda' bus='virtio'/></disk>\n"
			   "    <disk type='file' device='disk'><driver name='qemu' type='raw'/>"
			   "<source file='");
	strbuf_add_xml(&sb, d->seed);
	strbuf_addstr(&sb, "'/><target dev='vdb' bus='virtio'/><readonly/></disk>\n"
			   "    <interface type='user'><model type='virtio'/></interface>\n"
			   "    <serial type='file'><source path='");
	strbuf_add_xml(&sb, d->console);
	strbuf_addstr(&sb, "'/><target port='0'/></serial>\n"
			   "    <rng model='virtio'><backend model='random'>/dev/urandom</backend>"
			   "</rng>\n"
			   "  </devices>\n"
			   "</domain>\n");
	return strbuf_detach(&sb, NULL);
}

/* The domain's own copy of OVMF's variable store, 0600 in the work directory. */
static int nvram_copy(const char *to, struct imgf_error **err)
{
	char *text = NULL;
	size_t len = 0;
	if (read_file(OVMF_VARS, 64 * 1024 * 1024, &text, &len, err) < 0)
		return imgf_error_prefix(err, "firmware: uefi");
	int r = write_file_atomic(to, text, len, 0600, err);
	free(text);
	return r;
}

int imgf_qemu_boot_check(struct imgf_build *b, struct qemu_target *qt, const char *image,
			 const char *console, enum boot_mode mode, struct imgf_error **err)
{
	_cleanup_free_ char *overlay = path_join(qt->work_dir, "boot.qcow2");
	_cleanup_free_ char *seed = path_join(qt->work_dir, "seed.iso");
	_cleanup_free_ char *nvram = path_join(qt->work_dir, "nvram.fd");
	char *create[] = {"qemu-img", "create", "-q",	       "-f",	"qcow2", "-F",
			  "qcow2",    "-b",	(char *)image, overlay, NULL};
	if (imgf_run(create, NULL, err) < 0 || imgf_qemu_disk_private(overlay, err) < 0)
		return -1;
	_cleanup_free_ char *script = boot_script(b, mode);
	struct imgf_cidata cd = {.instance_id = "imgforge-boot-check",
				 .hostname = "imgforge-boot-check",
				 .boot_script = script};
	if (imgf_cidata_write_iso(&cd, seed, err) < 0 || imgf_qemu_disk_private(seed, err) < 0)
		return -1;
	int fd = open(console, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd >= 0)
		close(fd);

	const char *uri = getenv("LIBVIRT_DEFAULT_URI");
	virConnectPtr conn = virConnectOpen(uri && *uri ? uri : "qemu:///system");
	if (!conn) {
		virErrorPtr e = virGetLastError();
		return imgf_error_set(err, IMGF_EXIT_FAIL, "libvirt: connect to '%s': %s",
				      uri && *uri ? uri : "qemu:///system",
				      e && e->message ? e->message : "failed");
	}
	bool kvm = imgf_qemu_use_kvm(b);
	const char *fw = imgf_qemu_firmware(b);
	bool uefi = fw && !strcmp(fw, "uefi");
	if (uefi && nvram_copy(nvram, err) < 0) {
		virConnectClose(conn);
		return -1;
	}
	_cleanup_free_ char *name = xasprintf("imgforge-boot-%s-%d", b->def->name, (int)getpid());
	struct imgf_qemu_domain d = {
		.kvm = kvm,
		.name = name,
		.memory_mb = imgf_cfg_int(b->builder_cfg, "boot_memory_mb", 2048),
		.cpus = imgf_cfg_int(b->builder_cfg, "boot_cpus", 2),
		.disk = overlay,
		.seed = seed,
		.console = console,
		.loader = uefi ? OVMF_CODE : NULL,
		.nvram = uefi ? nvram : NULL,
	};
	_cleanup_free_ char *xml = imgf_qemu_domain_xml(&d);
	log_info("%s: boot check: booting '%s' (%s, %s)", b->def->name, name,
		 uefi ? "UEFI" : "BIOS", kvm ? "kvm" : "qemu, no KVM: this takes minutes");
	/*
	 * libvirt's qemu runs as its own user (qemu.conf's user, libvirt-qemu): dynamic
	 * ownership chowns the disks, the seed and the console to it, but it must still pass
	 * through the work directory. Search only, while the domain runs: no one may list it,
	 * and each file in it is 0600.
	 */
	chmod(qt->work_dir, 0711);
	virDomainPtr dom = virDomainCreateXML(conn, xml, 0);
	if (!dom) {
		virErrorPtr e = virGetLastError();
		imgf_error_set(err, IMGF_EXIT_FAIL, "libvirt: start the boot check domain: %s",
			       e && e->message ? e->message : "failed");
		chmod(qt->work_dir, 0700);
		virConnectClose(conn);
		unlink(nvram);
		return -1;
	}
	/*
	 * kubeadm init alone took 386 s under TCG on an idle host here (v1.37.2). Beside other
	 * CPU-bound work the guest unpacks each control-plane image when it first starts it (the
	 * images step imports them into the content store without unpacking) so slowly that
	 * kube-apiserver was started 11 minutes after its pod: its mode gets an hour.
	 */
	long timeout =
		imgf_cfg_int(b->builder_cfg, "boot_timeout", mode == BOOT_KUBEADM ? 3600 : 900);
	time_t start = time(NULL);
	int r = -1;
	for (;;) {
		if (imgf_interrupted) {
			imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
			break;
		}
		char *text = NULL;
		if (read_file(console, 0, &text, NULL, NULL) == 0 && strstr(text, CHECK_END)) {
			struct strbuf failed = STRBUF_INIT;
			for (char *p = strstr(text, "IMGFORGE-CHECK "); p;
			     p = strstr(p + 1, "IMGFORGE-CHECK ")) {
				char *nl = strchr(p, '\n');
				_cleanup_free_ char *line =
					xstrndup(p, nl ? (size_t)(nl - p) : strlen(p));
				if (line[strlen(line) - 1] == '\r')
					line[strlen(line) - 1] = '\0';
				log_info("%s: boot check: %s", b->def->name, line + 15);
				if (strstr(line, " FAILED"))
					strbuf_addf(&failed, "%s%s", failed.len ? ", " : "",
						    line + 15);
			}
			log_marked(b, text, "IMGFORGE-TIME ");
			if (failed.len) {
				/* What the failed checks printed (their last lines each). */
				log_marked(b, text, "IMGFORGE-LOG ");
				imgf_error_set(err, IMGF_EXIT_FAIL, "boot check failed: %s",
					       failed.buf);
			} else
				r = 0;
			strbuf_release(&failed);
			free(text);
			break;
		}
		free(text);
		int state = 0;
		if (virDomainGetState(dom, &state, NULL, 0) == 0 && state != VIR_DOMAIN_RUNNING &&
		    state != VIR_DOMAIN_BLOCKED) {
			_cleanup_free_ char *tail = tail_lines(console, 50);
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "boot check: the guest stopped (state %d); console:\n%s",
				       state, tail);
			break;
		}
		if (time(NULL) - start > timeout) {
			_cleanup_free_ char *tail = tail_lines(console, 50);
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "boot check: no result within %lds; last console lines:\n%s",
				       timeout, tail);
			break;
		}
		sleep(2);
	}
	log_info("%s: boot check finished after %lds", b->def->name, (long)(time(NULL) - start));
	virDomainDestroy(dom);
	virDomainFree(dom);
	virConnectClose(conn);
	chmod(qt->work_dir, 0700);
	/* libvirt hands the disk chain to its qemu user; the image is ours again. */
	if (chown(image, getuid(), getgid()) < 0)
		log_warn("chown '%s': %s", image, strerror(errno));
	unlink(overlay);
	unlink(seed);
	unlink(nvram);
	return r;
}
