/*
 * The qemu builder: a Cluster API VM image. The build works on a qcow2 overlay of the
 * verified base cloud image (the base is never written), provisioned through libguestfs
 * (no SSH, no boot during the build), trimmed and written compressed with qemu-img, then
 * booted once through libvirt with a NoCloud seed to check it from inside.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <guestfs.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "archive.h"
#include "bolt.h"
#include "build.h"
#include "builder.h"
#include "checksum.h"
#include "cidata.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "log.h"
#include "run.h"
#include "sidecar.h"
#include "stepcache.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"
#include "builders/qemu-internal.h"

#define GUEST_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define OUT_FILE "/tmp/.imgforge-exec.out"
#define STATUS_FILE "/tmp/.imgforge-exec.status"
#define ERR_FILE "/tmp/.imgforge-exec.err"
#define CHECK_BEGIN "IMGFORGE-BOOT-CHECK-BEGIN"
#define CHECK_END "IMGFORGE-BOOT-CHECK-END"
/* UEFI for the boot check: Debian's ovmf package (4 MiB flash, no Secure Boot, so it runs on
 * the i440fx machine without SMM). */
#define OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"
#define OVMF_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"

struct qemu_target {
	struct imgf_target t;
	guestfs_h *g;
	char *work_dir; /* overlay and outputs: 0700, 0711 only while libvirt boots from it */
	char *overlay;
};

static const struct imgf_key qemu_keys[] = {
	{"base_image_url", IMGF_KEY_STRING, true}, /* http(s)://, file:// or an absolute path */
	{"base_image_checksum", IMGF_KEY_STRING, true},
	{"disk_size", IMGF_KEY_STRING, false}, /* e.g. 20G; the root filesystem grows to it */
	{"network", IMGF_KEY_BOOL, false},     /* guest networking for steps (default true) */
	{"appliance_memory_mb", IMGF_KEY_INT, false}, /* libguestfs appliance (default 2048) */
	/* true (default): boot once and check the runtime; kubeadm: also kubeadm init to a Ready
	 * node; false: no boot */
	{"boot_check", IMGF_KEY_ANY, false},
	{"boot_timeout", IMGF_KEY_INT, false},	 /* seconds (default 900) */
	{"boot_memory_mb", IMGF_KEY_INT, false}, /* default 2048 */
	{"boot_cpus", IMGF_KEY_INT, false},	 /* default 2 */
	/* auto (default): KVM where it works, else TCG; kvm; tcg (libguestfs and the boot check) */
	{"accelerator", IMGF_KEY_STRING, false},
	/* bios (default) or uefi: what the image boots with (the boot check, the OVF) */
	{"firmware", IMGF_KEY_STRING, false},
	{NULL, 0, false},
};

static int guestfs_fail(guestfs_h *g, struct imgf_error **err, const char *what)
{
	const char *m = g ? guestfs_last_error(g) : NULL;
	return imgf_error_set(err, IMGF_EXIT_FAIL, "libguestfs: %s: %s", what, m ? m : "failed");
}

/*
 * Whether KVM works here, asked once: a kernel from /boot booted with KVM and the host CPU (as
 * the libguestfs appliance runs) must print its banner on the serial console within a few
 * seconds. /dev/kvm alone is not enough: nested setups hand out one that fails as soon as a
 * vCPU's MSRs are set, or one whose guests never run a single instruction (QEMU stays up and
 * prints nothing, and so would the appliance, for ever).
 */
static bool kvm_works(void)
{
	static int known = -1;
	if (known >= 0)
		return known;
	known = 0;
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		return false;
	glob_t gl;
	if (glob("/boot/vmlinuz-*", 0, NULL, &gl) != 0 || gl.gl_pathc == 0) {
		globfree(&gl);
		log_info("qemu: no kernel in /boot to check that KVM runs a guest; using TCG");
		return false;
	}
	_cleanup_free_ char *kernel = xstrdup(gl.gl_pathv[gl.gl_pathc - 1]);
	globfree(&gl);
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		return false;
	pid_t pid = fork();
	if (pid < 0) {
		close(out[0]);
		close(out[1]);
		return false;
	}
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 2);
		}
		dup2(out[1], 1);
		execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host",
		       "-display", "none", "-nodefaults", "-m", "256", "-no-reboot", "-serial",
		       "stdio", "-kernel", kernel, "-append", "console=ttyS0 panic=-1",
		       (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	/* The banner comes within a second under KVM; TCG would take a few. */
	struct strbuf got = STRBUF_INIT;
	got.max = 64 * 1024;
	double deadline = imgf_now() + 15;
	bool banner = false;
	while (!banner && imgf_now() < deadline) {
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		int n = poll(&p, 1, 200);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		char buf[4096];
		ssize_t k = read(out[0], buf, sizeof(buf));
		if (k <= 0)
			break; /* QEMU ended: KVM refused it */
		strbuf_add(&got, buf, (size_t)k);
		banner = memmem(got.buf, got.len, "Linux version", 13) != NULL;
	}
	close(out[0]);
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	strbuf_release(&got);
	if (!banner) {
		log_info("qemu: /dev/kvm is there but KVM does not run a guest here (no kernel "
			 "banner from %s in 15 s); using TCG",
			 kernel);
		return false;
	}
	known = 1;
	return true;
}

/* Whether the builder runs guests under KVM: the accelerator key, auto by default. */
static bool use_kvm(const struct imgf_build *b)
{
	const char *a = imgf_cfg_str(b->builder_cfg, "accelerator", "auto");
	if (!strcmp(a, "kvm"))
		return true;
	if (!strcmp(a, "tcg"))
		return false;
	return kvm_works();
}

enum boot_mode {
	BOOT_NONE,
	BOOT_RUNTIME,
	BOOT_KUBEADM
};

/* boot_check: true/false (JSON or string) or "kubeadm"; -1 for anything else. */
static int boot_mode(const struct imgf_build *b)
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

/* vMAJOR.MINOR.PATCH with an optional -pre-release or +build suffix (semver): it goes into
 * the boot check's shell script, so nothing else may. */
static bool version_valid(const char *v)
{
	const char *p = v + (*v == 'v');
	for (int i = 0; i < 3; i++) {
		size_t n = strspn(p, "0123456789");
		if (n == 0 || (i < 2 && p[n] != '.'))
			return false;
		p += n + (i < 2);
	}
	if (!*p)
		return true;
	if ((*p != '-' && *p != '+') || !p[1])
		return false;
	for (p++; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-",
			    *p))
			return false;
	return true;
}

/* The image name goes into the libvirt domain name: a safe set only. */
static bool name_valid(const char *name)
{
	if (!*name || *name == '.' || *name == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    *p))
			return false;
	return true;
}

/* firmware: "bios" or "uefi" (NULL for anything else). */
static const char *firmware(const struct imgf_build *b)
{
	const char *f = imgf_cfg_str(b->builder_cfg, "firmware", "bios");
	if (!strcmp(f, "bios"))
		return "bios";
	if (!strcmp(f, "uefi"))
		return "uefi";
	return NULL;
}

static int qemu_validate(struct imgf_build *b, struct imgf_error **err)
{
	const char *fw = firmware(b);
	if (!fw)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "firmware: '%s': expected bios or uefi",
				      imgf_cfg_str(b->builder_cfg, "firmware", ""));
	/* The boot check runs on this host (the disks are local files): OVMF must be here. */
	if (!strcmp(fw, "uefi") && boot_mode(b) != BOOT_NONE)
		for (const char *const *f = (const char *const[]){OVMF_CODE, OVMF_VARS, NULL}; *f;
		     f++)
			if (access(*f, R_OK) != 0)
				return imgf_error_errno(err, errno,
							"firmware: uefi: the boot check boots "
							"with OVMF (Debian's ovmf package): '%s'",
							*f);
	if (boot_mode(b) < 0) {
		json_t *v = json_object_get(b->builder_cfg, "boot_check");
		_cleanup_free_ char *text = json_dumps(v, JSON_ENCODE_ANY);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "boot_check: %s: expected true, false or \"kubeadm\"", text);
	}
	const char *acc = imgf_cfg_str(b->builder_cfg, "accelerator", "auto");
	if (strcmp(acc, "auto") && strcmp(acc, "kvm") && strcmp(acc, "tcg"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "accelerator: '%s': expected auto, kvm or tcg", acc);
	/* The VM runs as qemu-system-x86_64 with an x86_64 domain. */
	const char *arch = b->contract->arch;
	if (arch && strcmp(arch, "amd64"))
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"arch: '%s': the qemu builder makes amd64 images only "
			"(qemu-system-x86_64); build %s images with the docker builder",
			arch, arch);
	const char *kv = b->contract->kubernetes_version;
	if (kv && !version_valid(kv))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "kubernetes_semver: '%s' is not a version like v1.31.2 (the "
				      "boot check compares the binaries' versions with it)",
				      kv);
	if (!name_valid(b->def->name))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "name: '%s': the qemu builder names its boot check's VM "
				      "after the image: expected letters, digits, '.', '_' or '-'",
				      b->def->name);
	const char *size = imgf_cfg_str(b->builder_cfg, "disk_size", NULL);
	if (size) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(size, &end, 10);
		if (errno || n == 0 || (*end && strchr("KMGT", *end) == NULL) || (*end && end[1]))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "disk_size: '%s' is not a size like 20G", size);
	}
	struct imgf_checksum ck;
	if (imgf_checksum_parse(imgf_cfg_str(b->builder_cfg, "base_image_checksum", ""), &ck, err) <
	    0)
		return imgf_error_prefix(err, "base_image_checksum");
	imgf_checksum_release(&ck);
	return 0;
}

/* ---- target ops ------------------------------------------------------------------------- */

/*
 * libguestfs runs commands in the guest's root (with /dev, /proc and /sys bound in) but
 * returns their output only at the end and fails on a non-zero status; a wrapper keeps the
 * status and the output in files that are read back afterwards: stdout and stderr apart
 * when the caller takes the output (x->on_output: a capture reads stdout only, as from the
 * Engine's two streams), else one file, so that the log keeps their order.
 */
static int qemu_exec(struct imgf_target *t, const struct imgf_exec *x, int *status,
		     struct imgf_error **err)
{
	struct qemu_target *qt = (struct qemu_target *)t;
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "export PATH=%s HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive\n",
		    GUEST_PATH);
	for (size_t i = 0; x->env && x->env[i]; i++) {
		_cleanup_free_ char *q = shell_quote_argv((char *const[]){x->env[i], NULL});
		strbuf_addf(&sb, "export %s\n", q);
	}
	_cleanup_free_ char *cmd = shell_quote_argv(x->argv);
	_cleanup_free_ char *wd =
		shell_quote_argv((char *const[]){(char *)(x->workdir ? x->workdir : "/"), NULL});
	strbuf_addf(&sb, "mkdir -p /tmp; cd %s && ( %s ) >%s %s </dev/null; echo $? >%s; exit 0\n",
		    wd, cmd, OUT_FILE, x->on_output ? "2>" ERR_FILE : "2>&1", STATUS_FILE);
	char *r = guestfs_sh(qt->g, sb.buf);
	strbuf_release(&sb);
	if (!r)
		return guestfs_fail(qt->g, err, "run a command in the guest");
	free(r);

	static const char *const files[] = {OUT_FILE, ERR_FILE};
	for (int stream = 1; stream <= (x->on_output ? 2 : 1); stream++) {
		_cleanup_free_ char *host = imgf_target_stage_path(t, "exec-out");
		if (guestfs_download(qt->g, files[stream - 1], host) < 0)
			return guestfs_fail(qt->g, err, "read the command's output");
		char *text = NULL;
		size_t len = 0;
		if (read_file(host, 0, &text, &len, err) == 0 && len) {
			if (x->on_output) {
				x->on_output(x->opaque, stream, text, len);
			} else {
				/* Whole lines, prefixed like the docker builder's. */
				if (text[len - 1] == '\n')
					len--;
				log_output(x->label ? x->label : "exec", 1, text, len);
			}
		}
		free(text);
		unlink(host);
	}
	char *st = guestfs_cat(qt->g, STATUS_FILE);
	if (!st)
		return guestfs_fail(qt->g, err, "read the command's status");
	*status = atoi(st);
	free(st);
	char *rm = guestfs_sh(qt->g, "rm -f " OUT_FILE " " ERR_FILE " " STATUS_FILE);
	free(rm);
	return 0;
}

static int qemu_put_tar(struct imgf_target *t, const char *tar_path, const char *dest_dir,
			struct imgf_error **err)
{
	struct qemu_target *qt = (struct qemu_target *)t;
	if (guestfs_tar_in(qt->g, tar_path, dest_dir) < 0)
		return guestfs_fail(qt->g, err, "unpack into the guest");
	return 0;
}

static int qemu_get_tar(struct imgf_target *t, const char *path, const char *out_tar,
			struct imgf_error **err)
{
	struct qemu_target *qt = (struct qemu_target *)t;
	/* Members named by the path's last component, as the Engine's archive GET does. */
	_cleanup_free_ char *dir = path_dirname(path);
	char *argv[] = {"tar",
			"-C",
			dir,
			"-cf",
			"/tmp/.imgforge-get.tar",
			"--",
			(char *)path_basename(path),
			NULL};
	_cleanup_free_ char *cmd = shell_quote_argv(argv);
	char *r = guestfs_sh(qt->g, cmd);
	if (!r)
		return guestfs_fail(qt->g, err, "pack a file in the guest");
	free(r);
	int rc = guestfs_download(qt->g, "/tmp/.imgforge-get.tar", out_tar);
	guestfs_rm_f(qt->g, "/tmp/.imgforge-get.tar");
	if (rc < 0)
		return guestfs_fail(qt->g, err, "copy out of the guest");
	return 0;
}

static const struct imgf_target_ops qemu_target_ops = {
	.exec = qemu_exec,
	.put_tar = qemu_put_tar,
	.get_tar = qemu_get_tar,
};

/* ---- prepare ------------------------------------------------------------------------------ */

static int qemu_img_info(const char *path, json_t **out, struct imgf_error **err)
{
	struct strbuf sb = STRBUF_INIT;
	char *argv[] = {"qemu-img", "info", "--output=json", (char *)path, NULL};
	int r = imgf_run(argv, &sb, err);
	if (r == 0) {
		*out = json_loads(sb.buf, 0, NULL);
		if (!*out)
			r = imgf_error_set(err, IMGF_EXIT_FAIL, "qemu-img info '%s': not JSON",
					   path);
	}
	strbuf_release(&sb);
	return r;
}

static int cmp_part_start(const void *a, const void *b)
{
	const struct imgf_qemu_part *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

int imgf_qemu_grow_plan(const struct imgf_qemu_part *parts, size_t n, int root, const char *table,
			uint64_t disk_bytes, uint64_t sector_size, struct imgf_qemu_grow *out,
			struct imgf_error **err)
{
	bool gpt = !strcmp(table, "gpt");
	if (!gpt && strcmp(table, "msdos"))
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"root partition %d: partition table '%s': expected gpt or msdos", root,
			table);
	if (sector_size < 512 || sector_size % 512 || disk_bytes / sector_size < 64)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "a disk of %" PRIu64 " bytes in %" PRIu64 "-byte sectors",
				      disk_bytes, sector_size);
	_cleanup_free_ struct imgf_qemu_part *sorted = xcalloc(n ? n : 1, sizeof(*sorted));
	memcpy(sorted, parts, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_part_start);
	/* The layout by position, for the messages: "14 at sector 2048, 15 at 4096, ..." */
	struct strbuf layout = STRBUF_INIT;
	const struct imgf_qemu_part *rp = NULL, *after = NULL;
	for (size_t i = 0; i < n; i++) {
		strbuf_addf(&layout, "%s%d at sector %" PRIu64 "%s", i ? ", " : "", sorted[i].num,
			    sorted[i].start / sector_size, sorted[i].num == root ? " (root)" : "");
		if (sorted[i].num == root)
			rp = &sorted[i];
		else if (rp && !after)
			after = &sorted[i];
	}
	int r = 0;
	if (!rp) {
		r = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"root partition %d is not in the %s partition table (by position: "
			"%s)",
			root, table, layout.buf);
	} else if (after) {
		r = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"the root filesystem cannot grow to disk_size: its partition %d is "
			"not the last on the disk, partition %d follows it (%s, by "
			"position: %s); move the root last or build without disk_size",
			root, after->num, table, layout.buf);
	} else if (!gpt && root > 4) {
		r = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"the root filesystem cannot grow to disk_size: its partition %d is an "
			"MBR logical partition (msdos, by position: %s)",
			root, layout.buf);
	}
	if (r < 0) {
		strbuf_release(&layout);
		return r;
	}
	strbuf_release(&layout);
	uint64_t total = disk_bytes / sector_size;
	uint64_t start = rp->start / sector_size, end = rp->end / sector_size;
	/* GPT keeps its backup header and a 16 KiB entry array in the disk's last sectors;
	 * an MBR entry holds a 32-bit sector count. */
	uint64_t last = gpt ? total - 2 - 16384 / sector_size : total - 1;
	if (!gpt && last - start > UINT32_MAX - 1)
		last = start + UINT32_MAX - 1;
	if (end >= last)
		return 0;
	out->partnum = root;
	out->end_sector = last;
	return 1;
}

/*
 * Grow the root partition and its filesystem into the space disk_size adds. The root is what
 * inspection found mounted at / (`root`); it grows only when it is the last partition on the
 * disk by position (Debian's and Ubuntu's cloud images number it 1 and place it after
 * partitions 14, 15 and 16); otherwise the build fails here, before the disk is written.
 * 1: an xfs root, which grows once mounted (see mount_guest).
 */
static int grow_root(guestfs_h *g, const char *root, struct imgf_error **err)
{
	int partnum = guestfs_part_to_partnum(g, root);
	if (partnum < 0) {
		log_info("root filesystem '%s' is not on a partition; not growing it", root);
		return 0;
	}
	_cleanup_free_ char *dev = guestfs_part_to_dev(g, root);
	if (!dev)
		return guestfs_fail(g, err, "find the root disk");
	_cleanup_free_ char *ptype = guestfs_part_get_parttype(g, dev);
	if (!ptype)
		return guestfs_fail(g, err, "read the partition table type");
	int64_t disk_bytes = guestfs_blockdev_getsize64(g, dev);
	int sector = guestfs_blockdev_getss(g, dev);
	if (disk_bytes < 0 || sector < 0)
		return guestfs_fail(g, err, "read the disk's size");
	struct guestfs_partition_list *list = guestfs_part_list(g, dev);
	if (!list)
		return guestfs_fail(g, err, "list partitions");
	struct imgf_qemu_part *parts = xcalloc(list->len ? list->len : 1, sizeof(*parts));
	for (uint32_t i = 0; i < list->len; i++)
		parts[i] = (struct imgf_qemu_part){.num = list->val[i].part_num,
						   .start = list->val[i].part_start,
						   .end = list->val[i].part_end};
	struct imgf_qemu_grow plan;
	int r = imgf_qemu_grow_plan(parts, list->len, partnum, ptype, (uint64_t)disk_bytes,
				    (uint64_t)sector, &plan, err);
	guestfs_free_partition_list(list);
	free(parts);
	if (r < 0)
		return -1;
	if (r == 0) {
		log_info("root partition %d ends at the disk's end already; not growing it",
			 partnum);
		return 0;
	}
	if (!strcmp(ptype, "gpt") && guestfs_part_expand_gpt(g, dev) < 0)
		return guestfs_fail(g, err, "move the GPT backup header to the disk's end");
	if (guestfs_part_resize(g, dev, partnum, (int64_t)plan.end_sector) < 0)
		return guestfs_fail(g, err, "grow the root partition");
	log_info("root partition %d (%s) grown to end at sector %" PRIu64, partnum, ptype,
		 plan.end_sector);
	_cleanup_free_ char *fs = guestfs_vfs_type(g, root);
	if (fs && str_has_prefix(fs, "ext")) {
		if (guestfs_e2fsck(g, root, GUESTFS_E2FSCK_FORCEALL, 1, -1) < 0 ||
		    guestfs_resize2fs(g, root) < 0)
			return guestfs_fail(g, err, "grow the root filesystem");
	} else if (fs && !strcmp(fs, "xfs")) {
		return 1; /* xfs grows while mounted; see mount_guest */
	} else {
		log_warn("root filesystem type '%s': not grown", fs ? fs : "unknown");
	}
	return 0;
}

static int cmp_mountpoint(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;
	return (int)strlen(x[0]) - (int)strlen(y[0]);
}

static int mount_guest(guestfs_h *g, const char *root, bool grow_xfs, struct imgf_error **err)
{
	char **mps = guestfs_inspect_get_mountpoints(g, root);
	if (!mps)
		return guestfs_fail(g, err, "read the guest's mount points");
	size_t n = strv_len(mps) / 2;
	qsort(mps, n, 2 * sizeof(char *), cmp_mountpoint);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++)
		if (guestfs_mount(g, mps[2 * i + 1], mps[2 * i]) < 0)
			r = guestfs_fail(g, err, "mount the guest's filesystems");
	strv_free(mps);
	if (r == 0 && grow_xfs && guestfs_xfs_growfs(g, "/", GUESTFS_XFS_GROWFS_DATASEC, 1, -1) < 0)
		r = guestfs_fail(g, err, "grow the root filesystem");
	return r;
}

/* The base image as an input: fetched, verified and cached like any other. */
static void base_input(struct imgf_build *b, struct imgf_input *in)
{
	const char *url = imgf_cfg_str(b->builder_cfg, "base_image_url", "");
	*in = (struct imgf_input){0};
	in->name = xstrdup("base-image");
	in->url = url[0] == '/' ? xasprintf("file://%s", url) : xstrdup(url);
	in->checksum = xstrdup(imgf_cfg_str(b->builder_cfg, "base_image_checksum", ""));
	in->origin = xstrdup("variable 'qemu_base_image_url'");
	in->checksum_origin = xstrdup("variable 'qemu_base_image_checksum'");
}

/* The appliance over the overlay, the guest's filesystems mounted (the root grown to
 * disk_size first with `grow`). */
static int launch(struct imgf_build *b, struct qemu_target *qt, bool grow, struct imgf_error **err)
{
	guestfs_h *g = guestfs_create();
	if (!g)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "libguestfs: cannot create a handle");
	qt->g = g;
	if (!getenv("LIBGUESTFS_BACKEND"))
		guestfs_set_backend(g, "direct");
	guestfs_set_network(g, imgf_cfg_bool(b->builder_cfg, "network", true));
	guestfs_set_memsize(g, (int)imgf_cfg_int(b->builder_cfg, "appliance_memory_mb", 2048));
	guestfs_set_smp(g, 2);
	if (!use_kvm(b))
		guestfs_set_backend_setting(g, "force_tcg", "1");
	if (guestfs_add_drive_opts(g, qt->overlay, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2",
				   GUESTFS_ADD_DRIVE_OPTS_DISCARD, "besteffort", -1) < 0)
		return guestfs_fail(g, err, "add the disk");
	log_info("%s: starting the libguestfs appliance", b->def->name);
	if (guestfs_launch(g) < 0)
		return guestfs_fail(g, err, "launch the appliance");
	char **roots = guestfs_inspect_os(g);
	if (!roots || !roots[0]) {
		strv_free(roots);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "base image '%s': no operating system found",
				      imgf_cfg_str(b->builder_cfg, "base_image_url", ""));
	}
	_cleanup_free_ char *root = xstrdup(roots[0]);
	strv_free(roots);
	const char *disk_size = imgf_cfg_str(b->builder_cfg, "disk_size", NULL);
	int grown = grow && disk_size ? grow_root(g, root, err) : 0;
	if (grown < 0)
		return imgf_error_prefix(err, "base image '%s'",
					 imgf_cfg_str(b->builder_cfg, "base_image_url", ""));
	if (mount_guest(g, root, grown == 1, err) < 0)
		return -1;
	if (grow) {
		_cleanup_free_ char *product = guestfs_inspect_get_product_name(g, root);
		log_info("%s: %s on %s, disk %s", b->def->name, product ? product : "guest", root,
			 disk_size ? disk_size : "as the base");
	}
	return 0;
}

static struct qemu_target *target_new(void)
{
	struct qemu_target *qt = xcalloc(1, sizeof(*qt));
	qt->t.ops = &qemu_target_ops;
	qt->t.priv = qt;
	return qt;
}

/* qemu-img creates files 0644 (umask 022): a disk of the work directory is 0600. */
static int disk_private(const char *path, struct imgf_error **err)
{
	if (chmod(path, 0600) < 0)
		return imgf_error_errno(err, errno, "chmod '%s'", path);
	return 0;
}

int imgf_qemu_work_dir_make(char **out, struct imgf_error **err)
{
	const char *tmp = getenv("TMPDIR");
	*out = xasprintf("%s/imgforge-qemu-XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(*out)) /* 0700: the disk being built is no one else's */
		return imgf_error_errno(err, errno, "create '%s'", *out);
	return 0;
}

static int work_dir_make(struct qemu_target *qt, struct imgf_error **err)
{
	if (imgf_qemu_work_dir_make(&qt->work_dir, err) < 0)
		return -1;
	qt->overlay = path_join(qt->work_dir, "build.qcow2");
	qt->t.name = xasprintf("disk '%s'", qt->overlay);
	return 0;
}

/* An overlay on a cached step's disk (which holds the grown root and every step before). */
static int prepare_from_cache(struct imgf_build *b, const char *from, struct imgf_target **out,
			      struct imgf_error **err)
{
	struct qemu_target *qt = target_new();
	*out = &qt->t;
	if (work_dir_make(qt, err) < 0)
		return -1;
	char *create[] = {"qemu-img", "create", "-q",	      "-f",	   "qcow2", "-F",
			  "qcow2",    "-b",	(char *)from, qt->overlay, NULL};
	if (imgf_run(create, NULL, err) < 0 || disk_private(qt->overlay, err) < 0)
		return -1;
	log_info("%s: the disk starts from the cached step disk '%s' (%zu step%s)", b->def->name,
		 from, b->cache->hit, b->cache->hit == 1 ? "" : "s");
	return launch(b, qt, false, err);
}

static int qemu_prepare(struct imgf_build *b, struct imgf_target **out, struct imgf_error **err)
{
	const char *from = imgf_stepcache_from(b);
	if (from)
		return prepare_from_cache(b, from, out, err);
	struct imgf_input in;
	base_input(b, &in);
	const char *url = imgf_cfg_str(b->builder_cfg, "base_image_url", "");
	if (imgf_fetch_all(&in, 1, &b->fetch, err) < 0) {
		imgf_input_release(&in);
		return imgf_error_prefix(err, "base image");
	}
	imgf_build_record_input(b, "base-image", in.url, in.sha256);

	struct qemu_target *qt = target_new();
	*out = &qt->t;
	int r = -1;
	json_t *info = NULL;
	_cleanup_free_ char *size = NULL;
	if (work_dir_make(qt, err) < 0)
		goto out;

	if (qemu_img_info(in.path, &info, err) < 0)
		goto out;
	const char *fmt = json_string_value(json_object_get(info, "format"));
	if (!fmt || (strcmp(fmt, "qcow2") && strcmp(fmt, "raw"))) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "base image '%s': format '%s', expected qcow2 or raw", url,
			       fmt ? fmt : "unknown");
		goto out;
	}
	/* The overlay's chain must end at the verified download: a base that names another
	 * file would pull that host file into the image at commit. */
	const char *backing = json_string_value(json_object_get(info, "backing-filename"));
	const char *data_file = json_string_value(json_object_get(
		json_object_get(json_object_get(info, "format-specific"), "data"), "data-file"));
	if (backing || data_file) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "base image '%s': the %s names the %s '%s'; a base image must be "
			       "standalone (qemu-img convert it first)",
			       url, fmt, backing ? "backing file" : "external data file",
			       backing ? backing : data_file);
		goto out;
	}
	const char *disk_size = imgf_cfg_str(b->builder_cfg, "disk_size", NULL);
	long long vsize = (long long)json_integer_value(json_object_get(info, "virtual-size"));
	size = disk_size ? xstrdup(disk_size) : xasprintf("%lld", vsize);
	char *create[] = {"qemu-img",  "create", "-q",	  "-f",	       "qcow2", "-F",
			  (char *)fmt, "-b",	 in.path, qt->overlay, size,	NULL};
	if (imgf_run(create, NULL, err) < 0 || disk_private(qt->overlay, err) < 0)
		goto out;
	r = launch(b, qt, true, err);
out:
	json_decref(info);
	imgf_input_release(&in);
	return r;
}

/* ---- the step cache: a chain of qcow2 overlays in CACHE/steps/qemu ------------------------- */

static int qemu_cache_base(struct imgf_build *b, bool pull, char **digest, struct imgf_error **err)
{
	(void)pull; /* the base disk's digest is known before it is fetched */
	struct imgf_input in;
	base_input(b, &in);
	int r = imgf_stepcache_input_digest(b, &in, digest, err);
	imgf_input_release(&in);
	return r < 0 ? imgf_error_prefix(err, "base image") : 0;
}

/* A disk of this cache, which only the cache may remove. */
static bool cache_owned(const char *path)
{
	return strstr(path, "/steps/qemu/") && str_has_suffix(path, ".qcow2");
}

/* The cache's directories are its owner's only (an older imgforge made them 0755). */
static int cache_mkdir(const char *dir, struct imgf_error **err)
{
	if (mkdir_p(dir, 0700, err) < 0)
		return -1;
	chmod(dir, 0700);
	return 0;
}

static void cache_file_remove(const char *path)
{
	if (!cache_owned(path))
		return;
	_cleanup_free_ char *side = xasprintf("%s.sha256", path);
	unlink(side);
	unlink(path);
}

/*
 * The overlay after a step becomes the cached disk KEY-RANDOM.qcow2 (its backing file the
 * previous step's), hashed into a sidecar; the next step works on a new overlay over it,
 * in a new appliance.
 */
static int qemu_cache_save(struct imgf_build *b, struct imgf_target *t, const char *key,
			   const char *step, char **id, int64_t *size, struct imgf_error **err)
{
	(void)step;
	struct qemu_target *qt = (struct qemu_target *)t;
	if (guestfs_umount_all(qt->g) < 0 || guestfs_shutdown(qt->g) < 0)
		return guestfs_fail(qt->g, err, "close the disk");
	guestfs_close(qt->g);
	qt->g = NULL;
	_cleanup_free_ char *dir = xasprintf("%s/steps/qemu", b->cache_dir);
	if (cache_mkdir(dir, err) < 0)
		return -1;
	char rnd[9];
	snprintf(rnd, sizeof(rnd), "%08x", (unsigned)(getpid() ^ (unsigned)time(NULL) ^ rand()));
	_cleanup_free_ char *dest = xasprintf("%s/%.16s-%s.qcow2", dir, key, rnd);
	char hex[IMGF_DIGEST_HEX_MAX];
	struct stat st;
	int r = move_file(qt->overlay, dest, err);
	if (r == 0)
		r = imgf_sidecar_write(dest, hex, err);
	if (r == 0 && stat(dest, &st) < 0)
		r = imgf_error_errno(err, errno, "stat '%s'", dest);
	char *create[] = {"qemu-img", "create", "-q", "-f",	   "qcow2", "-F",
			  "qcow2",    "-b",	dest, qt->overlay, NULL};
	/* The build goes on whether or not the disk could be kept. */
	if (r < 0) {
		struct imgf_error *e = NULL;
		if (access(qt->overlay, F_OK) < 0 && access(dest, F_OK) == 0 &&
		    rename(dest, qt->overlay) < 0)
			log_warn("%s: the build disk is lost: %s", b->def->name, strerror(errno));
		else if (launch(b, qt, false, &e) < 0)
			log_warn("%s: %s", b->def->name, e->msg);
		imgf_error_free(e);
		return -1;
	}
	*size = st.st_size;
	*id = xstrdup(dest);
	if (imgf_run(create, NULL, err) < 0 || disk_private(qt->overlay, err) < 0)
		return -1;
	return launch(b, qt, false, err);
}

/*
 * The disk a twin build cached for the same step replaces this build's: a new overlay over
 * it, in a new appliance. On failure the build goes on with its own disk.
 */
static int qemu_cache_adopt(struct imgf_build *b, struct imgf_target *t, const char *id,
			    struct imgf_error **err)
{
	struct qemu_target *qt = (struct qemu_target *)t;
	if (guestfs_umount_all(qt->g) < 0 || guestfs_shutdown(qt->g) < 0)
		return guestfs_fail(qt->g, err, "close the disk");
	guestfs_close(qt->g);
	qt->g = NULL;
	_cleanup_free_ char *next = path_join(qt->work_dir, "adopt.qcow2");
	char *create[] = {"qemu-img", "create", "-q",	    "-f", "qcow2", "-F",
			  "qcow2",    "-b",	(char *)id, next, NULL};
	int r = imgf_run(create, NULL, err);
	if (r == 0)
		r = disk_private(next, err);
	if (r == 0 && rename(next, qt->overlay) < 0)
		r = imgf_error_errno(err, errno, "rename '%s'", next);
	if (r < 0) {
		unlink(next);
		struct imgf_error *e = NULL;
		if (launch(b, qt, false, &e) < 0)
			log_warn("%s: %s", b->def->name, e->msg);
		imgf_error_free(e);
		return -1;
	}
	log_info("%s: the disk goes on from the cached step disk '%s'", b->def->name, id);
	return launch(b, qt, false, err);
}

/*
 * Whether a disk of the cache has the sha256 its sidecar recorded (into hex): the sidecar's
 * stamp spares reading a disk that did not change; a disk read again and found intact gets
 * a fresh stamp (a link added or removed moves its ctime).
 */
static bool disk_intact(const char *file, char hex[IMGF_DIGEST_HEX_MAX])
{
	const char *why = NULL;
	if (imgf_sidecar_reuse(file, hex, &why))
		return true;
	_cleanup_free_ char *side = xasprintf("%s.sha256", file);
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	struct stat st;
	bool ok = read_file(side, 256, &text, &len, NULL) == 0 && len >= 64 &&
		  stat(file, &st) == 0 && imgf_digest_file(file, IMGF_SHA256, hex, NULL) == 0 &&
		  !strncmp(text, hex, 64);
	if (!ok) {
		log_warn("'%s' does not have the sha256 its sidecar recorded", file);
		return false;
	}
	struct imgf_error *e = NULL;
	if (imgf_sidecar_write_hex(file, hex, &st, &e) < 0)
		log_debug("step cache: '%s': %s", file, e->msg);
	imgf_error_free(e);
	return true;
}

/*
 * Intact: every disk of the chain above the base download has the sha256 its sidecar
 * recorded and the top passes `qemu-img check`; an artifact (final) has its sha256. A
 * damaged disk of the cache is removed.
 */
static int qemu_cache_check(struct imgf_build *b, const char *key, const char *id, bool final,
			    struct imgf_error **err)
{
	(void)b;
	(void)key;
	(void)err;
	char hex[IMGF_DIGEST_HEX_MAX];
	if (access(id, R_OK) < 0 || !cache_owned(id))
		return 0;
	if (final) {
		if (disk_intact(id, hex))
			return 1;
		cache_file_remove(id);
		return 0;
	}
	char *info_argv[] = {"qemu-img",      "info",	  "--backing-chain",
			     "--output=json", (char *)id, NULL};
	struct strbuf out = STRBUF_INIT;
	struct imgf_error *e = NULL;
	json_t *chain = NULL;
	bool ok = imgf_run(info_argv, &out, &e) == 0 &&
		  json_is_array(chain = json_loads(out.buf, 0, NULL));
	strbuf_release(&out);
	size_t i;
	json_t *img;
	json_array_foreach(chain, i, img)
	{
		const char *file = json_string_value(json_object_get(img, "filename"));
		if (!ok || !file || !cache_owned(file))
			continue; /* the base download, verified on its own */
		ok = disk_intact(file, hex);
	}
	json_decref(chain);
	char *check[] = {"qemu-img", "check", "-q", (char *)id, NULL};
	if (ok && imgf_run(check, NULL, &e) < 0)
		ok = false;
	if (e)
		log_debug("step cache: '%s': %s", id, e->msg);
	imgf_error_free(e);
	if (!ok)
		cache_file_remove(id);
	return ok ? 1 : 0;
}

static int qemu_cache_drop(const char *id, bool final, struct imgf_error **err)
{
	(void) final;
	(void)err;
	cache_file_remove(id); /* a disk backed by it is then found damaged */
	return 0;
}

/*
 * `to` with the bytes of `from`: a hard link where both are on one filesystem, else a copy
 * (never a rename: the cache keeps its file). *linked says which; an old `to` is replaced.
 */
static int link_or_copy(const char *from, const char *to, bool *linked, struct imgf_error **err)
{
	if (unlink(to) < 0 && errno != ENOENT)
		return imgf_error_errno(err, errno, "remove '%s'", to);
	*linked = link(from, to) == 0;
	if (*linked)
		return 0;
	if (errno != EXDEV && errno != EPERM && errno != EMLINK)
		return imgf_error_errno(err, errno, "link '%s' to '%s'", from, to);
	return copy_file_atomic(from, to, err);
}

/*
 * The finished image (converted and boot-checked) stays in CACHE/steps/qemu/artifacts with
 * its stamped sidecar. A link costs nothing; the output's sidecar is written from the same
 * hash, so the checksum post-processor need not read the image again.
 */
static int qemu_cache_keep(struct imgf_build *b, const struct imgf_artifact *art, const char *key,
			   char **id, int64_t *size, struct imgf_error **err)
{
	if (!art->disk)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "no disk image");
	_cleanup_free_ char *dir = xasprintf("%s/steps/qemu/artifacts", b->cache_dir);
	if (cache_mkdir(dir, err) < 0)
		return -1;
	char rnd[9];
	snprintf(rnd, sizeof(rnd), "%08x", (unsigned)(getpid() ^ (unsigned)time(NULL) ^ rand()));
	_cleanup_free_ char *dest = xasprintf("%s/%.16s-%s.qcow2", dir, key, rnd);
	bool linked;
	char hex[IMGF_DIGEST_HEX_MAX];
	struct stat st;
	if (link_or_copy(art->disk, dest, &linked, err) < 0)
		return -1;
	int r = imgf_sidecar_write(dest, hex, err);
	if (r == 0 && stat(dest, &st) < 0)
		r = imgf_error_errno(err, errno, "stat '%s'", dest);
	if (r < 0) {
		cache_file_remove(dest);
		return -1;
	}
	if (linked) {
		struct imgf_error *e = NULL;
		if (imgf_sidecar_write_hex(art->disk, hex, &st, &e) < 0)
			log_debug("%s: %s", b->def->name, e->msg);
		imgf_error_free(e);
	}
	*size = st.st_size;
	*id = STEAL_POINTER(&dest);
	return 0;
}

/* The cached image into the output directory, as qemu_commit names it. */
static int qemu_cache_reuse(struct imgf_build *b, const char *id, struct imgf_artifact *out,
			    struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	/* cache_check has just verified it and stamped its sidecar: no second read */
	if (!disk_intact(id, hex))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "cached image '%s' is damaged", id);
	_cleanup_free_ char *file = xasprintf("%s.qcow2", b->contract->dir_name);
	_cleanup_free_ char *image_out = path_join(b->out_dir, file);
	if (mkdir_p(b->out_dir, 0755, err) < 0)
		return -1;
	bool linked;
	if (link_or_copy(id, image_out, &linked, err) < 0)
		return imgf_error_prefix(err, "give out the cached image");
	struct stat st;
	if (stat(image_out, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", image_out);
	if (linked) {
		/* the link moved the ctime both stamps record */
		if (imgf_sidecar_write_hex(id, hex, &st, err) < 0 ||
		    imgf_sidecar_write_hex(image_out, hex, &st, err) < 0)
			return -1;
	} else {
		char got[IMGF_DIGEST_HEX_MAX];
		if (imgf_sidecar_write(image_out, got, err) < 0)
			return -1;
		if (strcmp(got, hex) != 0) {
			unlink(image_out);
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "the copy of '%s' has sha256 %s, not %s", id, got,
					      hex);
		}
	}
	log_info("%s: the image is the one built before: '%s' (%s)", b->def->name, image_out,
		 linked ? "linked" : "copied");
	out->id = xstrdup(image_out);
	out->disk = xstrdup(image_out);
	out->firmware = firmware(b);
	out->files = strv_push(xcalloc(1, sizeof(char *)), xstrdup(file));
	return 0;
}

/* ---- commit: trim, compress, boot check ---------------------------------------------------- */

static int check_generic(guestfs_h *g, struct imgf_error **err)
{
	char **keys = guestfs_glob_expand(g, "/etc/ssh/ssh_host_*");
	size_t n = strv_len(keys);
	strv_free(keys);
	if (n)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "the image still has %zu SSH host key file(s) in /etc/ssh "
				      "(add a sysprep step)",
				      n);
	return 0;
}

/*
 * Times after SOURCE_DATE_EPOCH are the build's: every atime and mtime later than it is set to
 * it, as the docker builder's squash clamps mtimes (ctimes cannot be set). The paths come from
 * one find0 into a file, read as a stream; each run of names in one directory is stat'ed in
 * one call, so a large tree costs few round trips and little memory.
 */
#define CLAMP_BATCH 256

struct clamp {
	guestfs_h *g;
	int64_t epoch;
	char *dir; /* of the batched names: "/" or "/a/b" */
	char *names[CLAMP_BATCH + 1];
	size_t count;
	size_t changed;
};

static bool after_epoch(int64_t sec, int64_t nsec, int64_t epoch)
{
	return sec > epoch || (sec == epoch && nsec > 0);
}

/*
 * utimens through an immutable or append-only flag (syslinux's ldlinux.sys carries one): the
 * flag is cleared for the call and set again.
 */
static int set_times(guestfs_h *g, const char *path, int64_t as, int64_t an, int64_t ms, int64_t mn,
		     struct imgf_error **err)
{
	guestfs_push_error_handler(g, NULL, NULL);
	int r = guestfs_utimens(g, path, as, an, ms, mn);
	_cleanup_free_ char *why =
		r < 0 ? xstrdup(guestfs_last_error(g) ? guestfs_last_error(g) : "failed") : NULL;
	_cleanup_free_ char *attrs =
		r < 0 && guestfs_last_errno(g) == EPERM ? guestfs_get_e2attrs(g, path) : NULL;
	guestfs_pop_error_handler(g);
	if (r == 0)
		return 0;
	char flags[3] = "";
	size_t n = 0;
	if (attrs && strchr(attrs, 'i'))
		flags[n++] = 'i';
	if (attrs && strchr(attrs, 'a'))
		flags[n++] = 'a';
	flags[n] = '\0';
	if (!n)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "libguestfs: set the times of '%s': %s",
				      path, why);
	if (guestfs_set_e2attrs(g, path, flags, GUESTFS_SET_E2ATTRS_CLEAR, 1, -1) < 0)
		return guestfs_fail(g, err, "clear a file's immutable flag");
	r = guestfs_utimens(g, path, as, an, ms, mn) < 0
		    ? guestfs_fail(g, err, "set the times of an immutable file")
		    : 0;
	if (guestfs_set_e2attrs(g, path, flags, -1) < 0 && r == 0)
		r = guestfs_fail(g, err, "set a file's immutable flag again");
	return r;
}

static void clamp_drop_names(struct clamp *c)
{
	for (size_t i = 0; i < c->count; i++)
		free(c->names[i]);
	c->count = 0;
}

static int clamp_flush(struct clamp *c, struct imgf_error **err)
{
	if (!c->count)
		return 0;
	c->names[c->count] = NULL;
	struct guestfs_statns_list *l = guestfs_lstatnslist(c->g, c->dir, c->names);
	int r = l ? 0 : guestfs_fail(c->g, err, "stat the files written");
	for (uint32_t i = 0; l && r == 0 && i < l->len && i < c->count; i++) {
		const struct guestfs_statns *st = &l->val[i];
		bool a = after_epoch(st->st_atime_sec, st->st_atime_nsec, c->epoch);
		bool m = after_epoch(st->st_mtime_sec, st->st_mtime_nsec, c->epoch);
		if (st->st_ino == -1 || (!a && !m))
			continue;
		_cleanup_free_ char *path = path_join(c->dir, c->names[i]);
		if (set_times(c->g, path, a ? c->epoch : st->st_atime_sec,
			      a ? 0 : st->st_atime_nsec, m ? c->epoch : st->st_mtime_sec,
			      m ? 0 : st->st_mtime_nsec, err) < 0)
			r = -1;
		else
			c->changed++;
	}
	if (l)
		guestfs_free_statns_list(l);
	clamp_drop_names(c);
	return r;
}

/* One path from find0 ("a/b/c", relative to "/"): batched with the names of its directory. */
static int clamp_add(struct clamp *c, const char *rel, struct imgf_error **err)
{
	while (*rel == '/')
		rel++;
	if (!*rel)
		return 0;
	const char *slash = strrchr(rel, '/');
	size_t len = slash ? (size_t)(slash - rel) : 0; /* of the parent, without the leading '/' */
	bool same = strlen(c->dir) == len + 1 && strncmp(c->dir + 1, rel, len) == 0;
	if ((c->count == CLAMP_BATCH || !same) && clamp_flush(c, err) < 0)
		return -1;
	if (!same) {
		free(c->dir);
		c->dir = xasprintf("/%.*s", (int)len, rel);
	}
	c->names[c->count++] = xstrdup(slash ? slash + 1 : rel);
	return 0;
}

static int clamp_times(struct imgf_build *b, struct qemu_target *qt, int64_t epoch,
		       const char *from, struct imgf_error **err)
{
	_cleanup_free_ char *list = path_join(qt->work_dir, "files.list");
	if (guestfs_find0(qt->g, "/", list) < 0)
		return guestfs_fail(qt->g, err, "list the image's files");
	int r = 0;
	/* The root itself first: find0 lists what is under it. */
	struct clamp c = {.g = qt->g, .epoch = epoch, .dir = xstrdup("/")};
	c.names[c.count++] = xstrdup(".");
	FILE *f = fopen(list, "re");
	if (!f)
		r = imgf_error_errno(err, errno, "open '%s'", list);
	char *line = NULL;
	size_t cap = 0;
	while (r == 0 && getdelim(&line, &cap, '\0', f) > 0)
		r = clamp_add(&c, line, err);
	if (r == 0 && ferror(f))
		r = imgf_error_errno(err, errno, "read '%s'", list);
	if (r == 0)
		r = clamp_flush(&c, err);
	clamp_drop_names(&c);
	free(c.dir);
	free(line);
	if (f)
		fclose(f);
	unlink(list);
	if (r == 0)
		log_info("%s: %zu file times clamped to %" PRId64 " (%s)", b->def->name, c.changed,
			 epoch, from);
	return r;
}

/*
 * containerd's metadata database in the canonical form (bolt.h) the docker builder's squash
 * gives it too: its page layout follows the order in which the images step's imports freed
 * and reused pages, and its records carry the build's times. Not a bolt database: kept as it
 * is, with a warning.
 */
static int normalize_bolt(struct imgf_build *b, guestfs_h *g, int64_t epoch, const char *from,
			  struct imgf_error **err)
{
	static const char path[] = "/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db";
	guestfs_push_error_handler(g, NULL, NULL);
	int is = guestfs_is_file(g, path);
	guestfs_pop_error_handler(g);
	if (is <= 0)
		return 0;
	int64_t size = guestfs_filesize(g, path);
	if (size < 0)
		return guestfs_fail(g, err, "size of containerd's meta.db");
	if (size > IMGF_BOLT_MAX) {
		log_warn("%s: '%s' is larger than %u bytes: kept as it is (the image will not be "
			 "reproducible)",
			 b->def->name, path, IMGF_BOLT_MAX);
		return 0;
	}
	size_t len = 0;
	_cleanup_free_ char *raw = guestfs_read_file(g, path, &len);
	if (!raw)
		return guestfs_fail(g, err, "read containerd's meta.db");
	struct strbuf out = STRBUF_INIT;
	struct imgf_error *e = NULL;
	if (imgf_bolt_normalize((const unsigned char *)raw, len, epoch, &out, &e) < 0) {
		log_warn("%s: '%s': %s: kept as it is (the image will not be reproducible)",
			 b->def->name, path, e->msg);
		imgf_error_free(e);
		strbuf_release(&out);
		return 0;
	}
	int r = guestfs_write(g, path, out.buf, out.len) < 0 ||
				guestfs_utimens(g, path, epoch, 0, epoch, 0) < 0
			? guestfs_fail(g, err, "write containerd's meta.db")
			: 0;
	strbuf_release(&out);
	if (r == 0)
		log_info("%s: containerd's meta.db rewritten in canonical form (times clamped to "
			 "%" PRId64 ", %s)",
			 b->def->name, epoch, from);
	return r;
}

/*
 * What the guest runs once at first boot (cloud-init): the runtime must really work, so
 * besides versions and units it starts a pod sandbox through CRI (containerd, runc and the
 * preloaded pause image, host network, as kubelet starts static pods) and removes it.
 */
static char *boot_script(const struct imgf_build *b, enum boot_mode mode)
{
	const char *kv = b->contract->kubernetes_version;
	const char *fw = firmware(b);
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

static int boot_check(struct imgf_build *b, struct qemu_target *qt, const char *image,
		      const char *console, enum boot_mode mode, struct imgf_error **err)
{
	_cleanup_free_ char *overlay = path_join(qt->work_dir, "boot.qcow2");
	_cleanup_free_ char *seed = path_join(qt->work_dir, "seed.iso");
	_cleanup_free_ char *nvram = path_join(qt->work_dir, "nvram.fd");
	char *create[] = {"qemu-img", "create", "-q",	       "-f",	"qcow2", "-F",
			  "qcow2",    "-b",	(char *)image, overlay, NULL};
	if (imgf_run(create, NULL, err) < 0 || disk_private(overlay, err) < 0)
		return -1;
	_cleanup_free_ char *script = boot_script(b, mode);
	struct imgf_cidata cd = {.instance_id = "imgforge-boot-check",
				 .hostname = "imgforge-boot-check",
				 .boot_script = script};
	if (imgf_cidata_write_iso(&cd, seed, err) < 0 || disk_private(seed, err) < 0)
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
	bool kvm = use_kvm(b);
	const char *fw = firmware(b);
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

static int qemu_commit(struct imgf_build *b, struct imgf_target *t, struct imgf_artifact *out,
		       struct imgf_error **err)
{
	struct qemu_target *qt = (struct qemu_target *)t;
	guestfs_h *g = qt->g;
	double t0 = imgf_now();
	int64_t epoch = b->contract->epoch.value;
	const char *from = b->contract->epoch.from;
	if (check_generic(g, err) < 0 || normalize_bolt(b, g, epoch, from, err) < 0 ||
	    clamp_times(b, qt, epoch, from, err) < 0)
		return -1;
	if (guestfs_fstrim(g, "/", -1) < 0)
		log_warn("fstrim: %s (free space is not trimmed)", guestfs_last_error(g));
	if (guestfs_umount_all(g) < 0 || guestfs_shutdown(g) < 0)
		return guestfs_fail(g, err, "close the disk");
	guestfs_close(g);
	qt->g = NULL;

	_cleanup_free_ char *file = xasprintf("%s.qcow2", b->contract->dir_name);
	_cleanup_free_ char *tmp_image = path_join(qt->work_dir, file);
	log_info("%s: writing the compressed image", b->def->name);
	char *convert[] = {"qemu-img", "convert",   "-q",      "-c", "-O",
			   "qcow2",    qt->overlay, tmp_image, NULL};
	if (imgf_run(convert, NULL, err) < 0 || disk_private(tmp_image, err) < 0)
		return -1;
	unlink(qt->overlay);
	imgf_build_phase(b, "compact", imgf_now() - t0);

	_cleanup_free_ char *console = path_join(qt->work_dir, "console.log");
	int r = 0;
	enum boot_mode mode = (enum boot_mode)boot_mode(b);
	if (mode != BOOT_NONE) {
		t0 = imgf_now();
		r = boot_check(b, qt, tmp_image, console, mode, err);
		imgf_build_phase(b, "boot-check", imgf_now() - t0);
	}

	/* The console log always lands in the output directory; the image only on success. */
	if (mkdir_p(b->out_dir, 0755, r < 0 ? NULL : err) < 0)
		return -1;
	_cleanup_free_ char *console_out = path_join(b->out_dir, "console.log");
	bool have_console = access(console, F_OK) == 0;
	if (have_console) {
		/* The work directory may be on another filesystem than the output. */
		struct imgf_error *e = NULL;
		if (move_file(console, console_out, &e) < 0) {
			have_console = false;
			if (r == 0) {
				*err = e;
				return imgf_error_prefix(err, "keep the console log");
			}
			log_warn("%s: keep the console log: %s", b->def->name, e->msg);
			imgf_error_free(e);
		}
	}
	if (r < 0)
		return -1;
	_cleanup_free_ char *image_out = path_join(b->out_dir, file);
	if (move_file(tmp_image, image_out, err) < 0)
		return imgf_error_prefix(err, "move the image to the output directory");
	/* the output is readable as before; only the work copies were not */
	chmod(image_out, 0644);
	if (have_console)
		chmod(console_out, 0644);
	/* Its .sha256 comes from the checksum post-processor. */
	out->id = xstrdup(image_out);
	out->disk = xstrdup(image_out);
	out->firmware = firmware(b);
	out->files = strv_push(xcalloc(1, sizeof(char *)), xstrdup(file));
	if (have_console)
		out->files = strv_push(out->files, xstrdup("console.log"));
	return 0;
}

static void qemu_cleanup(struct imgf_build *b, struct imgf_target *t, bool keep)
{
	struct qemu_target *qt = (struct qemu_target *)t;
	if (qt->g) {
		guestfs_umount_all(qt->g);
		guestfs_shutdown(qt->g);
		guestfs_close(qt->g);
	}
	if (keep && qt->overlay && access(qt->overlay, F_OK) == 0) {
		log_warn("%s: keeping the build disk '%s' (--on-error=abort); its base is the "
			 "cached, verified download",
			 b->def->name, qt->overlay);
		imgf_event("kept", json_pack("{s:s}", "disk", qt->overlay), NULL);
	} else if (qt->work_dir) {
		rm_rf(qt->work_dir, NULL);
	}
	free(qt->work_dir);
	free(qt->overlay);
	free(qt->t.name);
	free(qt);
}

/* What only the boot check reads: a UEFI check of an image built for BIOS reruns no step. */
static const char *const qemu_late_keys[] = {
	"boot_check", "boot_timeout", "boot_memory_mb", "boot_cpus", "firmware", NULL,
};

static const struct imgf_builder_cache_ops qemu_cache = {
	.late_keys = qemu_late_keys,
	.base = qemu_cache_base,
	.save = qemu_cache_save,
	.adopt = qemu_cache_adopt,
	.check = qemu_cache_check,
	.drop = qemu_cache_drop,
	.keep = qemu_cache_keep,
	.reuse = qemu_cache_reuse,
};

const struct imgf_builder_ops imgf_qemu_builder = {
	.name = "qemu",
	.keys = qemu_keys,
	.disk_ext = "qcow2",
	.validate = qemu_validate,
	.prepare = qemu_prepare,
	.commit = qemu_commit,
	.cleanup = qemu_cleanup,
	.cache = &qemu_cache,
};
