/*
 * vhd: the disk artifact as NAME.vhd (+ .sha256), a fixed VHD as Azure takes it (vhd.h): the
 * disk as raw bytes, extended with zeros to a whole MiB, then the 512-byte footer, which is
 * read back from the file and checked before the VHD is put in place. The data stays sparse
 * on the host; the sha256 is over every byte. The footer's time is SOURCE_DATE_EPOCH (or
 * imgforge's commit time) and its unique id comes from the name and that time, so the same
 * disk gives the same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "contract.h"
#include "digest.h"
#include "diskout.h"
#include "error.h"
#include "postprocessor.h"
#include "util.h"
#include "vhd.h"

static const struct imgf_key vhd_keys[] = {{NULL, 0, false}};

/* A name-based id (RFC 9562 version 8: the sha256 of the file name and the time). */
static void vhd_unique_id(const char *file, int64_t when, unsigned char id[16])
{
	char hex[IMGF_DIGEST_HEX_MAX];
	_cleanup_free_ char *seed = xasprintf("imgforge vhd\n%s\n%" PRId64, file, when);
	imgf_digest_buffer(IMGF_SHA256, seed, strlen(seed), hex);
	for (size_t i = 0; i < 16; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		id[i] = (unsigned char)v;
	}
	id[6] = (unsigned char)((id[6] & 0x0f) | 0x80);
	id[8] = (unsigned char)((id[8] & 0x3f) | 0x80);
}

/* The footer's time `when` is the build's SOURCE_DATE_EPOCH (or imgforge's commit time). */
static int vhd_append_footer(const struct imgf_disk_out *o, uint64_t size, int64_t when,
			     struct imgf_error **err)
{
	unsigned char id[16], footer[IMGF_VHD_FOOTER_SIZE];
	vhd_unique_id(o->file, when, id);
	imgf_vhd_footer(footer, size, when, id);
	_cleanup_close_ int fd = open(o->tmp, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", o->tmp);
	ssize_t n = pwrite(fd, footer, sizeof(footer), (off_t)size);
	if (n < 0)
		return imgf_error_errno(err, errno, "write '%s'", o->tmp);
	if (n != (ssize_t)sizeof(footer))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': short write", o->tmp);
	/* what is checked is what reached the disk, read back through the file (the advice
	 * drops the cached page where the kernel allows) */
	if (fdatasync(fd) < 0)
		return imgf_error_errno(err, errno, "write '%s'", o->tmp);
	(void)posix_fadvise(fd, (off_t)size, sizeof(footer), POSIX_FADV_DONTNEED);
	return imgf_vhd_check(fd, o->tmp, err);
}

static int vhd_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	struct imgf_disk_out o;
	uint64_t size;
	int r = imgf_disk_out_begin(c, "vhd", "vhd", &o, err);
	if (r == 0)
		r = imgf_disk_out_raw(&o, o.tmp, IMGF_VHD_ALIGN, &size, err);
	if (r == 0)
		r = vhd_append_footer(&o, size, c->build->contract->epoch.value, err);
	if (r == 0)
		r = imgf_disk_out_publish(c, &o, NULL, NULL, err);
	imgf_disk_out_release(&o);
	return r < 0 ? imgf_error_prefix(err, "post-processor 'vhd'") : 0;
}

const struct imgf_post_processor_ops imgf_vhd_post_processor = {
	.name = "vhd",
	.keys = vhd_keys,
	.when = IMGF_PP_LISTED,
	.needs_disk = true,
	.ext = "vhd",
	.run = vhd_run,
};
