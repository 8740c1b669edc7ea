/*
 * A small OCI distribution client: pulls one image for one platform from its registry,
 * every blob verified by its digest, into an OCI image-layout tar that `ctr images import`
 * reads. Anonymous bearer tokens are fetched as registries ask; loopback registries
 * (127.0.0.0/8, localhost, [::1]) are spoken to over plain HTTP, like Docker's default.
 */
#ifndef IMGF_REGISTRY_H
#define IMGF_REGISTRY_H

#include <stdbool.h>

#include "imageref.h"

struct imgf_error;
struct imgf_fetch_opts;

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

#endif
