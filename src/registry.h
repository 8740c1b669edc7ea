/*
 * A small OCI distribution client: pulls one image for one platform from its registry,
 * every blob verified by its digest, into an OCI image-layout tar that `ctr images import`
 * reads. Anonymous bearer tokens are fetched as registries ask; loopback registries
 * (127.0.0.0/8, localhost, [::1]) are spoken to over plain HTTP, like Docker's default.
 */
#ifndef IMGF_REGISTRY_H
#define IMGF_REGISTRY_H

#include <stdbool.h>

struct imgf_error;
struct imgf_fetch_opts;

struct imgf_image_ref {
	char *registry;	  /* "registry.k8s.io", "docker.io" -> API host registry-1.docker.io */
	char *repository; /* "pause", "library/busybox" */
	char *tag;	  /* may be NULL when only a digest is given */
	char *digest;	  /* "sha256:..." or NULL */
	char *full;	  /* normalized "registry/repository:tag[@digest]" */
};

int imgf_image_ref_parse(const char *ref, struct imgf_image_ref *out, struct imgf_error **err);
void imgf_image_ref_release(struct imgf_image_ref *r);

/*
 * Pull `ref` for linux/`arch` into `out_tar` (an OCI layout whose index names the image
 * ref->full in the annotation io.containerd.image.name). Blobs go through the download
 * cache. `manifest_digest` receives "sha256:HEX" of the platform manifest.
 *
 * `mirror` MAY be NULL; otherwise it is "HOST[:PORT][/PATH]" (see imgf_registry_mirror_valid)
 * and the image is fetched from there, as REPOSITORY under PATH, but still stored under its
 * canonical name, as containerd's registry mirrors do.
 */
int imgf_registry_pull_oci(const char *ref, const char *mirror, const char *arch,
			   const struct imgf_fetch_opts *o, const char *out_tar,
			   char manifest_digest[72], struct imgf_error **err);

/* Whether `m` is a mirror "HOST[:PORT][/PATH]"; *why (to free) says what is wrong if not. */
bool imgf_registry_mirror_valid(const char *m, char **why);

/* Whether `host` is a registry name "HOST[:PORT]" as image references use it. */
bool imgf_registry_host_valid(const char *host, char **why);

#endif
