/*
 * sbom: IMAGE.spdx.json beside the artifact, an SPDX 2.3 SBOM of the image (attest.h): the
 * artifact (docker image ID or files with their sha256), every distro package with its purl,
 * every input with where it came from and its sha256, every pulled image by digest. Runs for
 * every image, after the listed post-processors and before manifest, which lists the file.
 */
#include "attest.h"
#include "build.h"
#include "error.h"
#include "log.h"
#include "postprocessor.h"
#include "util.h"

static const struct imgf_key sbom_keys[] = {{NULL, 0, false}};

static int sbom_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	struct imgf_attest a;
	if (imgf_attest_gather(c, &a, err) < 0)
		return imgf_error_prefix(err, "sbom");
	json_t *doc = imgf_attest_spdx(&a);
	_cleanup_free_ char *name = xasprintf("%s" IMGF_SBOM_SUFFIX, a.image);
	int r = imgf_attest_write(c, doc, name, err);
	if (r == 0)
		log_info("%s: SBOM: %s (%zu packages)", a.image, name,
			 json_array_size(json_object_get(doc, "packages")));
	json_decref(doc);
	imgf_attest_release(&a);
	return r < 0 ? imgf_error_prefix(err, "sbom") : 0;
}

const struct imgf_post_processor_ops imgf_sbom_post_processor = {
	.name = "sbom",
	.keys = sbom_keys,
	.when = IMGF_PP_LAST,
	.run = sbom_run,
};
