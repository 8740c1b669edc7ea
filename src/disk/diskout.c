/* Disk outputs of post-processors (diskout.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "contract.h"
#include "digest.h"
#include "diskout.h"
#include "error.h"
#include "fsutil.h"
#include "gpt.h"
#include "log.h"
#include "postprocessor.h"
#include "qemuimg.h"
#include "sidecar.h"
#include "util.h"

int imgf_disk_out_begin(struct imgf_pp_ctx *c, const char *pp, const char *ext,
			struct imgf_disk_out *o, struct imgf_error **err)
{
	struct imgf_build *b = c->build;
	*o = (struct imgf_disk_out){.pp = pp, .disk = c->art->disk};
	if (!o->disk) /* needs_disk keeps such an artifact from the run */
		return imgf_error_set(err, IMGF_EXIT_FAIL, "the artifact has no disk");
	o->file = xasprintf("%s.%s", b->contract->dir_name, ext);
	o->final = path_join(b->out_dir, o->file);
	/* qemu-img reads the disk before anything is made: a bad disk leaves nothing */
	if (imgf_qemu_img_info(o->disk, &o->format, &o->virtual_size, err) < 0)
		return imgf_error_prefix(err, "disk '%s'", o->disk);
	char *work = xasprintf("%s/.%s.XXXXXX", b->out_dir, o->file);
	if (!mkdtemp(work)) {
		int e = errno;
		free(work);
		return imgf_error_errno(err, e, "create a work directory in '%s'", b->out_dir);
	}
	o->work = work;
	o->tmp = path_join(o->work, o->file);
	return 0;
}

int imgf_disk_out_raw(const struct imgf_disk_out *o, const char *path, uint64_t align,
		      uint64_t *size, struct imgf_error **err)
{
	if (imgf_qemu_img_convert(o->disk, o->format, "raw", NULL, path, err) < 0)
		return imgf_error_prefix(err, "disk '%s'", o->disk);
	struct stat st;
	if (stat(path, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", path);
	uint64_t have = (uint64_t)st.st_size;
	if (have != o->virtual_size)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s' is %" PRIu64
				      " bytes; the disk's virtual size is %" PRIu64,
				      path, have, o->virtual_size);
	uint64_t want = align > 1 ? (have + align - 1) / align * align : have;
	if (want != have) {
		if (truncate(path, (off_t)want) < 0)
			return imgf_error_errno(err, errno, "extend '%s' to %" PRIu64 " bytes",
						path, want);
		log_info("%s: the disk's %" PRIu64 " bytes extended to %" PRIu64
			 " (a multiple of %" PRIu64 ")",
			 o->pp, have, want, align);
		/* a GPT's backup belongs in the last sector, which is now further on */
		bool moved;
		if (imgf_gpt_relocate_backup(path, want, &moved, err) < 0)
			return imgf_error_prefix(err, "disk '%s'", o->disk);
		if (moved)
			log_info("%s: the backup GPT moved to the new last sector", o->pp);
	}
	*size = want;
	return 0;
}

int imgf_disk_out_publish(struct imgf_pp_ctx *c, const struct imgf_disk_out *o, const char *hex,
			  const struct stat *hashed, struct imgf_error **err)
{
	_cleanup_free_ char *side = xasprintf("%s.sha256", o->final);
	/* A stale .sha256 must never sit beside a new file, so it goes first and comes last. */
	if (unlink(side) < 0 && errno != ENOENT)
		return imgf_error_errno(err, errno, "remove '%s'", side);
	if (rename(o->tmp, o->final) < 0)
		return imgf_error_errno(err, errno, "rename to '%s'", o->final);
	char own[IMGF_DIGEST_HEX_MAX];
	int r = hex ? imgf_sidecar_write_hex(o->final, hex, hashed, err)
		    : imgf_sidecar_write(o->final, own, err);
	if (r < 0) {
		unlink(o->final);
		return -1;
	}
	log_info("%s: wrote '%s' (sha256 %s)", o->pp, o->final, hex ? hex : own);
	c->art->files = strv_push(c->art->files, xstrdup(o->file));
	c->art->files = strv_push(c->art->files, xasprintf("%s.sha256", o->file));
	return 0;
}

void imgf_disk_out_release(struct imgf_disk_out *o)
{
	if (o->work) {
		struct imgf_error *rm_err = NULL;
		if (rm_rf(o->work, &rm_err) < 0) {
			log_warn("%s", rm_err->msg);
			imgf_error_free(rm_err);
		}
	}
	free(o->file);
	free(o->work);
	free(o->tmp);
	free(o->final);
	*o = (struct imgf_disk_out){0};
}
