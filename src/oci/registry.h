/*
 * A small OCI distribution client: pulls one image for one platform from its registry,
 * every blob verified by its digest, into an OCI image-layout tar that `ctr images import`
 * reads. Anonymous bearer tokens are fetched as registries ask; loopback registries
 * (127.0.0.0/8, localhost, [::1]) are spoken to over plain HTTP, like Docker's default.
 */
#ifndef IMGF_REGISTRY_H
#define IMGF_REGISTRY_H

#include <stdbool.h>

#include <jansson.h>

#include "imageref.h"

struct imgf_error;
struct imgf_fetch_opts;
struct imgf_push_opts;

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

/*
 * imgf_registry_pull_oci (no mirror) speaking to the registry as a push does (regpush.h):
 * `access` MAY be NULL (anonymous, TLS verified); else its auth_file (NULL: the default docker
 * config, when there is one) gives the credentials a Basic challenge or a token realm asks
 * for, and tls_no_verify and ca_file how the registry's certificate is checked. A 401 names
 * whose access was refused (the user, or anonymous access), never the password.
 */
int imgf_registry_pull_oci_as(const char *ref, const char *arch, const struct imgf_fetch_opts *o,
			      const struct imgf_push_opts *access, const char *out_tar,
			      char manifest_digest[72], struct imgf_error **err);

/*
 * The same, without the layout: `ref`'s manifest (*manifest, a new reference) and its blobs in
 * the download cache, each verified by digest (*paths: the config first, then the layers in
 * order, NULL-terminated, newly allocated).
 */
int imgf_registry_fetch_image(const char *ref, const char *arch, const struct imgf_fetch_opts *o,
			      const struct imgf_push_opts *access, json_t **manifest, char ***paths,
			      char manifest_digest[72], struct imgf_error **err);

#endif
