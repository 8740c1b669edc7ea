/*
 * imgforge image-upload and image-list: build outputs to a GCS-style bucket, the way
 * image-builder's image-upload did it, with resumable, verified uploads.
 *
 *   gs://BUCKET/{release|ci}/KUBERNETES_VERSION/BUILD_NAME+kube-KUBERNETES_VERSION.EXT
 *   and beside each its .sha256 (bare hex), written last. EXT is each of imgf_upload_exts
 *   (postprocessor.h): the builders' disks (qcow2) and the post-processors' outputs (ova, ...).
 */
#ifndef IMGF_UPLOAD_H
#define IMGF_UPLOAD_H

#include <stdbool.h>

struct imgf_error;

enum imgf_upload_channel {
	IMGF_CHANNEL_AUTO,    /* release when the version matches ^v?N.N.N(-N)?$, else ci */
	IMGF_CHANNEL_CI,      /* --ci */
	IMGF_CHANNEL_RELEASE, /* --release */
};

struct imgf_upload_opts {
	const char *key_file; /* --key-file, else GOOGLE_APPLICATION_CREDENTIALS; unused with
				 STORAGE_EMULATOR_HOST */
	const char *bucket;   /* --bucket, else the manifest's upload_bucket custom data */
	enum imgf_upload_channel channel;
	bool dry_run; /* print what would be uploaded, upload nothing */
	bool json;    /* --json events */
};

/* Upload the artifacts of each BUILD_DIR (NULL-terminated); see the header comment. */
int imgf_upload_run(const struct imgf_upload_opts *o, char *const *build_dirs,
		    struct imgf_error **err);
/* List images under gs://BUCKET/PREFIX with size, sha256 and download URL. */
int imgf_image_list(const struct imgf_upload_opts *o, const char *gs_url, struct imgf_error **err);

#endif
