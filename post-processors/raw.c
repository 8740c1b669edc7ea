/*
 * raw: the disk artifact as NAME.raw (+ .sha256) in the output directory, a sparse raw disk
 * of the same virtual size, for consumers that take raw (metal3's Ironic, bare metal, dd).
 * qemu-img leaves holes where the disk reads as zeros; the sha256 is over every byte.
 */
#include "diskout.h"
#include "error.h"
#include "postprocessor.h"

static const struct imgf_key raw_keys[] = {{NULL, 0, false}};

static int raw_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	struct imgf_disk_out o;
	uint64_t size;
	int r = imgf_disk_out_begin(c, "raw", "raw", &o, err);
	if (r == 0)
		r = imgf_disk_out_raw(&o, o.tmp, 1, &size, err);
	if (r == 0)
		r = imgf_disk_out_publish(c, &o, NULL, NULL, err);
	imgf_disk_out_release(&o);
	return r < 0 ? imgf_error_prefix(err, "post-processor 'raw'") : 0;
}

const struct imgf_post_processor_ops imgf_raw_post_processor = {
	.name = "raw",
	.keys = raw_keys,
	.when = IMGF_PP_LISTED,
	.needs_disk = true,
	.ext = "raw",
	.run = raw_run,
};
