/*
 * The qemu builder's guest: the build disk, a qcow2 overlay on the verified base image (or on
 * a cached step's disk), the libguestfs appliance over it (KVM where it works, else TCG) with
 * the root filesystem grown to disk_size and the guest's filesystems mounted, and the target
 * ops that run the steps in it. The builder's ops are in qemu.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <guestfs.h>

#include "build.h"
#include "builder.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "log.h"
#include "run.h"
#include "stepcache.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"
#include "builders/qemu-internal.h"

#define GUEST_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define OUT_FILE "/tmp/.imgforge-exec.out"
#define STATUS_FILE "/tmp/.imgforge-exec.status"
#define ERR_FILE "/tmp/.imgforge-exec.err"

int imgf_qemu_guestfs_fail(guestfs_h *g, struct imgf_error **err, const char *what)
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

bool imgf_qemu_use_kvm(const struct imgf_build *b)
{
	const char *a = imgf_cfg_str(b->builder_cfg, "accelerator", "auto");
	if (!strcmp(a, "kvm"))
		return true;
	if (!strcmp(a, "tcg"))
		return false;
	return kvm_works();
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
		return imgf_qemu_guestfs_fail(qt->g, err, "run a command in the guest");
	free(r);

	static const char *const files[] = {OUT_FILE, ERR_FILE};
	for (int stream = 1; stream <= (x->on_output ? 2 : 1); stream++) {
		_cleanup_free_ char *host = imgf_target_stage_path(t, "exec-out");
		if (guestfs_download(qt->g, files[stream - 1], host) < 0)
			return imgf_qemu_guestfs_fail(qt->g, err, "read the command's output");
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
		return imgf_qemu_guestfs_fail(qt->g, err, "read the command's status");
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
		return imgf_qemu_guestfs_fail(qt->g, err, "unpack into the guest");
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
		return imgf_qemu_guestfs_fail(qt->g, err, "pack a file in the guest");
	free(r);
	int rc = guestfs_download(qt->g, "/tmp/.imgforge-get.tar", out_tar);
	guestfs_rm_f(qt->g, "/tmp/.imgforge-get.tar");
	if (rc < 0)
		return imgf_qemu_guestfs_fail(qt->g, err, "copy out of the guest");
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
		return imgf_qemu_guestfs_fail(g, err, "find the root disk");
	_cleanup_free_ char *ptype = guestfs_part_get_parttype(g, dev);
	if (!ptype)
		return imgf_qemu_guestfs_fail(g, err, "read the partition table type");
	int64_t disk_bytes = guestfs_blockdev_getsize64(g, dev);
	int sector = guestfs_blockdev_getss(g, dev);
	if (disk_bytes < 0 || sector < 0)
		return imgf_qemu_guestfs_fail(g, err, "read the disk's size");
	struct guestfs_partition_list *list = guestfs_part_list(g, dev);
	if (!list)
		return imgf_qemu_guestfs_fail(g, err, "list partitions");
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
		return imgf_qemu_guestfs_fail(g, err,
					      "move the GPT backup header to the disk's end");
	if (guestfs_part_resize(g, dev, partnum, (int64_t)plan.end_sector) < 0)
		return imgf_qemu_guestfs_fail(g, err, "grow the root partition");
	log_info("root partition %d (%s) grown to end at sector %" PRIu64, partnum, ptype,
		 plan.end_sector);
	_cleanup_free_ char *fs = guestfs_vfs_type(g, root);
	if (fs && str_has_prefix(fs, "ext")) {
		if (guestfs_e2fsck(g, root, GUESTFS_E2FSCK_FORCEALL, 1, -1) < 0 ||
		    guestfs_resize2fs(g, root) < 0)
			return imgf_qemu_guestfs_fail(g, err, "grow the root filesystem");
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
		return imgf_qemu_guestfs_fail(g, err, "read the guest's mount points");
	size_t n = strv_len(mps) / 2;
	qsort(mps, n, 2 * sizeof(char *), cmp_mountpoint);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++)
		if (guestfs_mount(g, mps[2 * i + 1], mps[2 * i]) < 0)
			r = imgf_qemu_guestfs_fail(g, err, "mount the guest's filesystems");
	strv_free(mps);
	if (r == 0 && grow_xfs && guestfs_xfs_growfs(g, "/", GUESTFS_XFS_GROWFS_DATASEC, 1, -1) < 0)
		r = imgf_qemu_guestfs_fail(g, err, "grow the root filesystem");
	return r;
}

void imgf_qemu_base_input(struct imgf_build *b, struct imgf_input *in)
{
	const char *url = imgf_cfg_str(b->builder_cfg, "base_image_url", "");
	*in = (struct imgf_input){0};
	in->name = xstrdup("base-image");
	in->url = url[0] == '/' ? xasprintf("file://%s", url) : xstrdup(url);
	in->checksum = xstrdup(imgf_cfg_str(b->builder_cfg, "base_image_checksum", ""));
	in->origin = xstrdup("variable 'qemu_base_image_url'");
	in->checksum_origin = xstrdup("variable 'qemu_base_image_checksum'");
}

int imgf_qemu_launch(struct imgf_build *b, struct qemu_target *qt, bool grow,
		     struct imgf_error **err)
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
	if (!imgf_qemu_use_kvm(b))
		guestfs_set_backend_setting(g, "force_tcg", "1");
	if (guestfs_add_drive_opts(g, qt->overlay, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2",
				   GUESTFS_ADD_DRIVE_OPTS_DISCARD, "besteffort", -1) < 0)
		return imgf_qemu_guestfs_fail(g, err, "add the disk");
	log_info("%s: starting the libguestfs appliance", b->def->name);
	if (guestfs_launch(g) < 0)
		return imgf_qemu_guestfs_fail(g, err, "launch the appliance");
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

int imgf_qemu_disk_private(const char *path, struct imgf_error **err)
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
	if (imgf_run(create, NULL, err) < 0 || imgf_qemu_disk_private(qt->overlay, err) < 0)
		return -1;
	log_info("%s: the disk starts from the cached step disk '%s' (%zu step%s)", b->def->name,
		 from, b->cache->hit, b->cache->hit == 1 ? "" : "s");
	return imgf_qemu_launch(b, qt, false, err);
}

int imgf_qemu_prepare(struct imgf_build *b, struct imgf_target **out, struct imgf_error **err)
{
	const char *from = imgf_stepcache_from(b);
	if (from)
		return prepare_from_cache(b, from, out, err);
	struct imgf_input in;
	imgf_qemu_base_input(b, &in);
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
	if (imgf_run(create, NULL, err) < 0 || imgf_qemu_disk_private(qt->overlay, err) < 0)
		goto out;
	r = imgf_qemu_launch(b, qt, true, err);
out:
	json_decref(info);
	imgf_input_release(&in);
	return r;
}
