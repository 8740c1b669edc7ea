/*
 * provenance: IMAGE.provenance.json beside the artifact, a SLSA v1 provenance predicate in an
 * in-toto Statement v1 (attest.h): the artifact as subject, imgforge as builder, the config
 * and var files with their sha256, the resolved variables (secrets and URL credentials
 * redacted), every input as a resolved dependency, and when the build started and finished
 * (real times: the file is not part of the image). Runs for every image, before manifest.
 */
#include "attest.h"
#include "build.h"
#include "error.h"
#include "postprocessor.h"
#include "util.h"

static const struct imgf_key provenance_keys[] = {{NULL, 0, false}};

static int provenance_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	struct imgf_attest a;
	if (imgf_attest_gather(c, &a, err) < 0)
		return imgf_error_prefix(err, "provenance");
	json_t *doc = imgf_attest_provenance(&a);
	_cleanup_free_ char *name = xasprintf("%s" IMGF_PROVENANCE_SUFFIX, a.image);
	int r = imgf_attest_write(c, doc, name, err);
	json_decref(doc);
	imgf_attest_release(&a);
	return r < 0 ? imgf_error_prefix(err, "provenance") : 0;
}

const struct imgf_post_processor_ops imgf_provenance_post_processor = {
	.name = "provenance",
	.keys = provenance_keys,
	.when = IMGF_PP_LAST,
	.run = provenance_run,
};
