/*
 * checksum: ARTIFACT.sha256 beside the builder's disk image (sidecar.h), listed right after it
 * in the artifact's files, its sha256 in the manifest entry. Runs for every image, first, so
 * later post-processors see the disk already summed; a builder that makes no file (docker)
 * leaves it nothing to do. The ova post-processor writes its .ova's sidecar itself, from the
 * sha256 it computes while writing the file.
 */
#include <string.h>

#include "build.h"
#include "builder.h"
#include "log.h"
#include "postprocessor.h"
#include "sidecar.h"
#include "util.h"

static const struct imgf_key checksum_keys[] = {{NULL, 0, false}};

static int checksum_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	struct imgf_artifact *art = c->art;
	if (!art->disk)
		return 0;
	char hex[IMGF_DIGEST_HEX_MAX];
	const char *why = NULL;
	/* A builder that hashed the disk already (the step cache) left a stamped sidecar. */
	if (imgf_sidecar_reuse(art->disk, hex, &why))
		log_debug("%s: the sidecar of '%s' is current", c->build->def->name, art->disk);
	else if (imgf_sidecar_write(art->disk, hex, err) < 0)
		return -1;
	/* The sidecar goes right after the disk in files[], where a reader looks for it. */
	const char *disk_name = path_basename(art->disk);
	char **files = xcalloc(1, sizeof(*files));
	bool added = false;
	for (size_t i = 0; art->files && art->files[i]; i++) {
		files = strv_push(files, xstrdup(art->files[i]));
		if (!added && !strcmp(art->files[i], disk_name)) {
			files = strv_push(files, xasprintf("%s.sha256", disk_name));
			added = true;
		}
	}
	if (!added)
		files = strv_push(files, xasprintf("%s.sha256", disk_name));
	strv_free(art->files);
	art->files = files;
	if (!art->extra)
		art->extra = json_object();
	json_object_set_new(art->extra, "sha256", json_string(hex));
	log_info("%s: %s (sha256 %s)", c->build->def->name, art->disk, hex);
	return 0;
}

const struct imgf_post_processor_ops imgf_checksum_post_processor = {
	.name = "checksum",
	.keys = checksum_keys,
	.when = IMGF_PP_FIRST,
	.run = checksum_run,
};
