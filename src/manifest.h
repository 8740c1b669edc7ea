/*
 * manifest.json in the build's output directory: Packer-manifest compatible
 * (builds[] with name, builder_type, build_time, files[{name,size}], artifact_id,
 * custom_data) plus each build's inputs[] ({name, url, sha256}: every artifact used).
 */
#ifndef IMGF_MANIFEST_H
#define IMGF_MANIFEST_H

#include <jansson.h>

struct imgf_error;

json_t *imgf_manifest_new(void);
/* Write DIR/manifest.json atomically, keys sorted and indented for stable diffs. */
int imgf_manifest_write(json_t *manifest, const char *dir, struct imgf_error **err);
/* Read and check DIR/manifest.json (for image-upload and tests). */
int imgf_manifest_read(const char *dir, json_t **out, struct imgf_error **err);

/*
 * BUILD_NAME+kube-KUBERNETES_VERSION (newly allocated): the name of a build's output directory
 * and of the objects image-upload makes of its artifacts; NULL when a part is empty or holds
 * a '/'.
 */
char *imgf_output_name(const char *build_name, const char *kube_version);

#endif
