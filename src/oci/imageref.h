/*
 * Image references ("registry.k8s.io/pause:3.10", "busybox@sha256:...") parsed and
 * normalized as Docker does, and the registry host and mirror names around them.
 */
#ifndef IMGF_IMAGEREF_H
#define IMGF_IMAGEREF_H

#include <stdbool.h>

struct imgf_error;

struct imgf_image_ref {
	char *registry;	  /* "registry.k8s.io", "docker.io" -> API host registry-1.docker.io */
	char *repository; /* "pause", "library/busybox" */
	char *tag;	  /* may be NULL when only a digest is given */
	char *digest;	  /* "sha256:..." or NULL */
	char *full;	  /* normalized "registry/repository:tag[@digest]" */
};

int imgf_image_ref_parse(const char *ref, struct imgf_image_ref *out, struct imgf_error **err);
void imgf_image_ref_release(struct imgf_image_ref *r);

/* Whether `m` is a mirror "HOST[:PORT][/PATH]"; *why (to free) says what is wrong if not. */
bool imgf_registry_mirror_valid(const char *m, char **why);

/* Whether `host` is a registry name "HOST[:PORT]" as image references use it. */
bool imgf_registry_host_valid(const char *host, char **why);

/* A mirror "HOST[:PORT][/PATH]" split: the host (newly allocated), *path its path or NULL. */
char *imgf_registry_mirror_split(const char *m, const char **path);
/* Whether a registry "HOST[:PORT]" is loopback (127.0.0.0/8, localhost, [::1]). */
bool imgf_registry_is_loopback(const char *registry);
/* Whether d is "sha256:" and 64 lowercase hex digits. */
bool imgf_registry_digest_valid(const char *d);

#endif
