/*
 * manifest: the image's entry in the run's manifest.json (manifest.h): name, builder_type,
 * build_time, artifact_id, custom_data, inputs, files with their sizes, and what the builder
 * and earlier post-processors added (artifact extra). Runs for every image, last; the engine
 * writes the file once every image is done.
 */
#include <sys/stat.h>

#include "build.h"
#include "builder.h"
#include "postprocessor.h"
#include "util.h"

static const struct imgf_key manifest_keys[] = {{NULL, 0, false}};

static json_t *custom_data(const struct imgf_config *c)
{
	static const char *const names[] = {"build_name",	 "kubernetes_semver",
					    "kubernetes_series", "containerd_version",
					    "runc_version",	 "kubernetes_cni_semver",
					    "crictl_version",	 "distro_name",
					    "distro_version",	 "arch",
					    "upload_bucket"};
	json_t *cd = json_object();
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		const char *v = imgf_config_var(c, names[i]);
		if (v)
			json_object_set_new(cd, names[i], json_string(v));
	}
	return cd;
}

static int manifest_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	(void)err; /* adds the entry to the run's manifest in memory: nothing fails */
	struct imgf_build *b = c->build;
	struct imgf_artifact *art = c->art;
	json_t *entry = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "name", b->def->name, "builder_type",
				  b->builder->name, "build_time", (json_int_t)c->start,
				  "artifact_id", c->artifact_id, "custom_data",
				  custom_data(b->config), "inputs", json_deep_copy(b->inputs));
	json_t *files = json_array();
	for (size_t i = 0; art->files && art->files[i]; i++) {
		_cleanup_free_ char *p = path_join(b->out_dir, art->files[i]);
		struct stat st;
		json_array_append_new(files,
				      json_pack("{s:s,s:I}", "name", art->files[i], "size",
						(json_int_t)(stat(p, &st) == 0 ? st.st_size : 0)));
	}
	json_object_set_new(entry, "files", files);
	if (art->extra)
		json_object_update(entry, art->extra);
	json_array_append_new(json_object_get(c->manifest, "builds"), entry);
	return 0;
}

const struct imgf_post_processor_ops imgf_manifest_post_processor = {
	.name = "manifest",
	.keys = manifest_keys,
	.when = IMGF_PP_LAST,
	.run = manifest_run,
};
