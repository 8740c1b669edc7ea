/*
 * The qemu builder's step cache: a chain of qcow2 overlays in CACHE/steps/qemu, one disk per
 * step, each hashed into a sidecar and checked before it is used again; the finished image
 * kept in CACHE/steps/qemu/artifacts and given out again when nothing changed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <guestfs.h>

#include "build.h"
#include "builder.h"
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
#include "util.h"
#include "builders/qemu-internal.h"

static int qemu_cache_base(struct imgf_build *b, bool pull, char **digest, struct imgf_error **err)
{
	(void)pull; /* the base disk's digest is known before it is fetched */
	struct imgf_input in;
	imgf_qemu_base_input(b, &in);
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
		return imgf_qemu_guestfs_fail(qt->g, err, "close the disk");
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
		else if (imgf_qemu_launch(b, qt, false, &e) < 0)
			log_warn("%s: %s", b->def->name, e->msg);
		imgf_error_free(e);
		return -1;
	}
	*size = st.st_size;
	*id = xstrdup(dest);
	if (imgf_run(create, NULL, err) < 0 || imgf_qemu_disk_private(qt->overlay, err) < 0)
		return -1;
	return imgf_qemu_launch(b, qt, false, err);
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
		return imgf_qemu_guestfs_fail(qt->g, err, "close the disk");
	guestfs_close(qt->g);
	qt->g = NULL;
	_cleanup_free_ char *next = path_join(qt->work_dir, "adopt.qcow2");
	char *create[] = {"qemu-img", "create", "-q",	    "-f", "qcow2", "-F",
			  "qcow2",    "-b",	(char *)id, next, NULL};
	int r = imgf_run(create, NULL, err);
	if (r == 0)
		r = imgf_qemu_disk_private(next, err);
	if (r == 0 && rename(next, qt->overlay) < 0)
		r = imgf_error_errno(err, errno, "rename '%s'", next);
	if (r < 0) {
		unlink(next);
		struct imgf_error *e = NULL;
		if (imgf_qemu_launch(b, qt, false, &e) < 0)
			log_warn("%s: %s", b->def->name, e->msg);
		imgf_error_free(e);
		return -1;
	}
	log_info("%s: the disk goes on from the cached step disk '%s'", b->def->name, id);
	return imgf_qemu_launch(b, qt, false, err);
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
	out->firmware = imgf_qemu_firmware(b);
	out->files = strv_push(xcalloc(1, sizeof(char *)), xstrdup(file));
	return 0;
}

#define OVERLAY_TYPE "application/vnd.imgforge.qemu.overlay.v1+qcow2"

/* `qemu-img info` of a qcow2 disk (no probing: a registry's file is taken for nothing else). */
static int qcow2_info(const char *path, json_t **out, struct imgf_error **err)
{
	char *argv[] = {"qemu-img", "info", "-f", "qcow2", "--output=json", (char *)path, NULL};
	struct strbuf sb = STRBUF_INIT;
	*out = NULL;
	int r = imgf_run(argv, &sb, err);
	if (r == 0 && !json_is_object(*out = json_loads(sb.buf, 0, NULL)))
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "qemu-img info '%s': not JSON", path);
	strbuf_release(&sb);
	if (r < 0) {
		json_decref(*out);
		*out = NULL;
	}
	return r;
}

/* --cache-to: a step's disk is its own overlay; what it stands on is the previous step's. */
static int qemu_cache_export_file(struct imgf_build *b, const char *id, char **file,
				  char digest[72], const char **type, char **below,
				  struct imgf_error **err)
{
	(void)b;
	char hex[IMGF_DIGEST_HEX_MAX];
	if (!cache_owned(id) || !disk_intact(id, hex))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "the step disk '%s' is not intact", id);
	json_t *info = NULL;
	if (qcow2_info(id, &info, err) < 0)
		return -1;
	const char *backing = json_string_value(json_object_get(info, "backing-filename"));
	*below = backing && cache_owned(backing) ? xstrdup(backing) : NULL;
	json_decref(info);
	snprintf(digest, 72, "sha256:%.64s", hex);
	*type = OVERLAY_TYPE;
	*file = xstrdup(id);
	return 0;
}

/* The base disk, fetched and verified, and its format, for the first step's overlay. */
static int base_disk(struct imgf_build *b, char **path, char **format, struct imgf_error **err)
{
	struct imgf_input in;
	imgf_qemu_base_input(b, &in);
	int r = imgf_fetch_all(&in, 1, &b->fetch, err);
	struct strbuf sb = STRBUF_INIT;
	json_t *info = NULL;
	char *argv[] = {"qemu-img", "info", "--output=json", in.path, NULL};
	if (r == 0)
		r = imgf_run(argv, &sb, err);
	const char *fmt = NULL;
	if (r == 0) {
		info = json_loads(sb.buf, 0, NULL);
		fmt = json_string_value(json_object_get(info, "format"));
		if (!fmt || (strcmp(fmt, "qcow2") != 0 && strcmp(fmt, "raw") != 0) ||
		    json_object_get(info, "backing-filename"))
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'%s' is no standalone qcow2 or raw disk", in.path);
	}
	if (r == 0) {
		*path = xstrdup(in.path);
		*format = xstrdup(fmt);
	}
	json_decref(info);
	strbuf_release(&sb);
	imgf_input_release(&in);
	return r < 0 ? imgf_error_prefix(err, "base image") : 0;
}

/*
 * --cache-from: an overlay from a registry (its digest checked) becomes the step's cached disk,
 * its backing file set to the disk below it here (or the base): a qcow2 that names an external
 * data file is refused, as it would pull a host file into the image.
 */
static int qemu_cache_import_file(struct imgf_build *b, const char *key, const char *file,
				  const char *below, char **id, int64_t *size,
				  struct imgf_error **err)
{
	json_t *info = NULL;
	if (qcow2_info(file, &info, err) < 0)
		return imgf_error_prefix(err, "the step disk from the registry");
	bool data_file =
		json_object_get(json_object_get(json_object_get(info, "format-specific"), "data"),
				"data-file") != NULL;
	json_decref(info);
	if (data_file)
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"the step disk from the registry names an external data file");
	_cleanup_free_ char *base = NULL, *fmt = NULL;
	if (!below && base_disk(b, &base, &fmt, err) < 0)
		return -1;
	_cleanup_free_ char *dir = xasprintf("%s/steps/qemu", b->cache_dir);
	if (cache_mkdir(dir, err) < 0)
		return -1;
	char rnd[9];
	snprintf(rnd, sizeof(rnd), "%08x", (unsigned)(getpid() ^ (unsigned)time(NULL) ^ rand()));
	_cleanup_free_ char *dest = xasprintf("%s/%.16s-%s.qcow2", dir, key, rnd);
	char *rebase[] = {"qemu-img", "rebase",
			  "-q",	      "-u",
			  "-f",	      "qcow2",
			  "-b",	      below ? (char *)below : base,
			  "-F",	      below ? "qcow2" : fmt,
			  dest,	      NULL};
	char hex[IMGF_DIGEST_HEX_MAX];
	struct stat st;
	int r = move_file(file, dest, err);
	if (r == 0 && chmod(dest, 0600) < 0)
		r = imgf_error_errno(err, errno, "chmod '%s'", dest);
	if (r == 0)
		r = imgf_run(rebase, NULL, err);
	if (r == 0)
		r = imgf_sidecar_write(dest, hex, err);
	if (r == 0 && stat(dest, &st) < 0)
		r = imgf_error_errno(err, errno, "stat '%s'", dest);
	if (r < 0) {
		unlink(dest);
		_cleanup_free_ char *side = xasprintf("%s.sha256", dest);
		unlink(side);
		return -1;
	}
	*size = st.st_size;
	*id = STEAL_POINTER(&dest);
	return 0;
}

/* What only the boot check reads: a UEFI check of an image built for BIOS reruns no step. */
static const char *const qemu_late_keys[] = {
	"boot_check", "boot_timeout", "boot_memory_mb", "boot_cpus", "firmware", NULL,
};

const struct imgf_builder_cache_ops imgf_qemu_cache = {
	.late_keys = qemu_late_keys,
	.base = qemu_cache_base,
	.save = qemu_cache_save,
	.adopt = qemu_cache_adopt,
	.check = qemu_cache_check,
	.drop = qemu_cache_drop,
	.keep = qemu_cache_keep,
	.reuse = qemu_cache_reuse,
	.export_file = qemu_cache_export_file,
	.import_file = qemu_cache_import_file,
};
