/*
 * The qemu builder: a Cluster API VM image. The build works on a qcow2 overlay of the
 * verified base cloud image (the base is never written), provisioned through libguestfs
 * (no SSH, no boot during the build), trimmed and written compressed with qemu-img, then
 * booted once through libvirt with a NoCloud seed to check it from inside.
 *
 * This file holds the builder's options and their validation, the commit (the image made
 * reproducible, trimmed and compressed) and the ops table; the build disk, the appliance and
 * the target ops are in qemu-guest.c, the step cache in qemu-cache.c, the boot check in
 * qemu-boot.c (what they share: qemu-internal.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <guestfs.h>

#include "bolt.h"
#include "build.h"
#include "builder.h"
#include "checksum.h"
#include "contract.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "run.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"
#include "builders/qemu-internal.h"

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

static int qemu_validate(struct imgf_build *b, struct imgf_error **err)
{
	const char *fw = imgf_qemu_firmware(b);
	if (!fw)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "firmware: '%s': expected bios or uefi",
				      imgf_cfg_str(b->builder_cfg, "firmware", ""));
	/* The boot check runs on this host (the disks are local files): OVMF must be here. */
	if (!strcmp(fw, "uefi") && imgf_qemu_boot_mode(b) != BOOT_NONE)
		for (const char *const *f = (const char *const[]){OVMF_CODE, OVMF_VARS, NULL}; *f;
		     f++)
			if (access(*f, R_OK) != 0)
				return imgf_error_errno(err, errno,
							"firmware: uefi: the boot check boots "
							"with OVMF (Debian's ovmf package): '%s'",
							*f);
	if (imgf_qemu_boot_mode(b) < 0) {
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

/* ---- commit: clamp, trim, compress, then the boot check (qemu-boot.c) ---------------------- */

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
		return imgf_qemu_guestfs_fail(g, err, "clear a file's immutable flag");
	r = guestfs_utimens(g, path, as, an, ms, mn) < 0
		    ? imgf_qemu_guestfs_fail(g, err, "set the times of an immutable file")
		    : 0;
	if (guestfs_set_e2attrs(g, path, flags, -1) < 0 && r == 0)
		r = imgf_qemu_guestfs_fail(g, err, "set a file's immutable flag again");
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
	int r = l ? 0 : imgf_qemu_guestfs_fail(c->g, err, "stat the files written");
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
		return imgf_qemu_guestfs_fail(qt->g, err, "list the image's files");
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
		return imgf_qemu_guestfs_fail(g, err, "size of containerd's meta.db");
	if (size > IMGF_BOLT_MAX) {
		log_warn("%s: '%s' is larger than %u bytes: kept as it is (the image will not be "
			 "reproducible)",
			 b->def->name, path, IMGF_BOLT_MAX);
		return 0;
	}
	size_t len = 0;
	_cleanup_free_ char *raw = guestfs_read_file(g, path, &len);
	if (!raw)
		return imgf_qemu_guestfs_fail(g, err, "read containerd's meta.db");
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
			? imgf_qemu_guestfs_fail(g, err, "write containerd's meta.db")
			: 0;
	strbuf_release(&out);
	if (r == 0)
		log_info("%s: containerd's meta.db rewritten in canonical form (times clamped to "
			 "%" PRId64 ", %s)",
			 b->def->name, epoch, from);
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
		return imgf_qemu_guestfs_fail(g, err, "close the disk");
	guestfs_close(g);
	qt->g = NULL;

	_cleanup_free_ char *file = xasprintf("%s.qcow2", b->contract->dir_name);
	_cleanup_free_ char *tmp_image = path_join(qt->work_dir, file);
	log_info("%s: writing the compressed image", b->def->name);
	char *convert[] = {"qemu-img", "convert",   "-q",      "-c", "-O",
			   "qcow2",    qt->overlay, tmp_image, NULL};
	if (imgf_run(convert, NULL, err) < 0 || imgf_qemu_disk_private(tmp_image, err) < 0)
		return -1;
	unlink(qt->overlay);
	imgf_build_phase(b, "compact", imgf_now() - t0);

	_cleanup_free_ char *console = path_join(qt->work_dir, "console.log");
	int r = 0;
	enum boot_mode mode = (enum boot_mode)imgf_qemu_boot_mode(b);
	if (mode != BOOT_NONE) {
		t0 = imgf_now();
		r = imgf_qemu_boot_check(b, qt, tmp_image, console, mode, err);
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
	out->firmware = imgf_qemu_firmware(b);
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

const struct imgf_builder_ops imgf_qemu_builder = {
	.name = "qemu",
	.keys = qemu_keys,
	.disk_ext = "qcow2",
	.validate = qemu_validate,
	.prepare = imgf_qemu_prepare,
	.commit = qemu_commit,
	.cleanup = qemu_cleanup,
	.cache = &imgf_qemu_cache,
};
