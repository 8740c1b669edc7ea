/*
 * Writing an OCI image layout as a tar (oci-layout, index.json, blobs/sha256/...) from
 * uncompressed layer tars on the host: for images imgforge makes itself from binaries.
 * `ctr images import` reads it and names the image from the index's annotations.
 */
#ifndef IMGF_OCIIMAGE_H
#define IMGF_OCIIMAGE_H

#include <stddef.h>

#include <jansson.h>

struct imgf_error;

struct imgf_oci_image {
	const char *name; /* full reference with tag, "registry.k8s.io/kube-proxy:v1.31.2" */
	const char *arch; /* GOARCH: "amd64", "arm64" */
	const char *const *layers; /* uncompressed layer tars, bottom first; NULL-terminated */
	json_t *config;		   /* the image config's "config" object (Env, Entrypoint, ...) */
};

/*
 * Write the layout tar to out_tar (atomically: a temp file beside it, renamed). The config's
 * "created" is SOURCE_DATE_EPOCH when set, else the Unix epoch, so the same layers give the
 * same image ID. On success *image_id (if not NULL) is the config digest "sha256:HEX".
 */
int imgf_oci_write(const struct imgf_oci_image *img, const char *out_tar, char **image_id,
		   struct imgf_error **err);
/*
 * imgf_oci_write, also handing out the image config's bytes (*config_json, newly allocated):
 * a docker-archive of the same layers and config (squash.h) loads into the Docker Engine as
 * the same image ID.
 */
int imgf_oci_write_config(const struct imgf_oci_image *img, const char *out_tar, char **image_id,
			  char **config_json, struct imgf_error **err);

/* One blob of a layout: in memory (data, len) or a file (path). */
struct imgf_oci_blob {
	const char *digest; /* "sha256:HEX" */
	const void *data;
	size_t len;
	const char *path; /* when not NULL, the blob's file */
};

/*
 * Write an OCI image-layout tar: oci-layout, index.json (as given), blobs/sha256/HEX for each
 * blob in order, a digest seen before only once; atomically (a temp file beside out_tar,
 * renamed). The blobs are not verified here.
 */
int imgf_oci_layout_write(const char *out_tar, const char *index_json,
			  const struct imgf_oci_blob *blobs, size_t n, struct imgf_error **err);

/* The RFC 3339 time of SOURCE_DATE_EPOCH, or of 0 when it is unset (newly allocated). */
char *imgf_oci_created(void);

/*
 * The image names an image tar carries: a docker-archive's manifest.json RepoTags, or an OCI
 * layout's index.json io.containerd.image.name annotations (or ref.name when it is a full
 * reference). *names is a NULL-terminated list (possibly empty); a tar with neither file, or
 * with unreadable JSON, is an error.
 */
int imgf_image_tar_names(const char *tar, char ***names, struct imgf_error **err);

/*
 * Check an OCI layout tar (as imgforge writes them): every blobs/sha256/HEX member hashes to
 * HEX, index.json names one manifest, that manifest, its config and its layers are verified
 * blobs, and (when arch is not NULL) the config is for linux/ARCH. Every member name must be
 * plain (no absolute name, no ".", ".." or empty component) and index.json appear once. On
 * success manifest_digest receives "sha256:HEX".
 */
int imgf_oci_verify(const char *tar, const char *arch, char manifest_digest[72],
		    struct imgf_error **err);

/*
 * What `ctr images import` is given of a layout tar not written by imgforge (a file://
 * mirror's): the tar is read once, checked as imgf_oci_verify does, its blobs kept as they are
 * hashed; out_tar is then a new layout of exactly those bytes: oci-layout, an index.json
 * written here naming only the verified manifest, under `name` (io.containerd.image.name, and
 * the tag as org.opencontainers.image.ref.name), and the manifest, config and layer blobs.
 * Nothing else of the tar (a manifest.json, other index entries or annotations, other blobs)
 * is carried over. manifest_digest receives "sha256:HEX".
 */
int imgf_oci_import_layout(const char *tar, const char *arch, const char *name, const char *out_tar,
			   char manifest_digest[72], struct imgf_error **err);

#endif
