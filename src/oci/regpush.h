/*
 * Pushing to an OCI registry (the Registry HTTP API v2): an image from a `docker save`
 * archive, every blob verified by its digest before it leaves, sent only when the registry
 * lacks it (HEAD), mounted from another repository of the same registry when one is named,
 * else uploaded (POST, then one PUT), the manifest last; and an OCI image index joining
 * images already pushed. Authentication as the registry asks: none, basic, or a bearer token
 * from its realm, with the credentials of a docker-style config.json. Loopback registries are
 * spoken to over plain HTTP (as Docker does), others over HTTPS, verified unless turned off.
 */
#ifndef IMGF_REGPUSH_H
#define IMGF_REGPUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct imgf_error;

struct imgf_push_opts {
	const char *auth_file;	/* docker config.json; NULL = $DOCKER_CONFIG/config.json, else
				   ~/.docker/config.json, when present */
	bool tls_no_verify;	/* HTTPS without verifying the registry (warned about) */
	const char *ca_file;	/* CA certificates to verify the registry with, or NULL */
	const char *mount_from; /* a repository of the same registry to mount blobs from */
	int gzip_level;		/* 1..9: layers pushed gzip-compressed at this level; 0: as they
				   are (uncompressed tars) */
	bool remove_archive;	/* remove the archive once unpacked (it is as large as the image) */
	int max_attempts;	/* per request; 0 = 5 */
	long retry_base_ms;	/* the first backoff; 0 = IMGFORGE_RETRY_BASE_MS, else 1000 */
};

/* What a push did with the blobs (config and layers) it had to send. */
struct imgf_push_stats {
	unsigned blobs;	   /* config and layers */
	unsigned existed;  /* already in the repository (HEAD) */
	unsigned mounted;  /* mounted from another repository */
	unsigned uploaded; /* sent */
	uint64_t bytes_uploaded;
};

/*
 * Push the one image of `archive` (the tar GET /images/{id}/get writes, legacy or OCI
 * flavour) as `ref` ("HOST[:PORT]/REPO:TAG"), as an OCI image manifest (layers uncompressed, or
 * gzip-compressed as o->gzip_level says: the image ID is the same either way). Before anything is
 * sent, the config must hash to `image_id` ("sha256:HEX", when not NULL) and each layer to its
 * diff_id in the config. `work_dir` holds the unpacked blobs for the while. On success
 * manifest_digest is the pushed manifest's "sha256:HEX".
 */
int imgf_registry_push_archive(const char *archive, const char *image_id, const char *ref,
			       const char *work_dir, const struct imgf_push_opts *o,
			       char manifest_digest[72], struct imgf_push_stats *stats,
			       struct imgf_error **err);

/* One file of an artifact: its bytes, media type and digest ("sha256:HEX", as the caller knows
 * it: the registry checks it against the bytes it receives). */
struct imgf_push_file {
	const char *path;
	const char *media_type;
	const char *digest;
	const char *title; /* org.opencontainers.image.title, or NULL */
};

/*
 * Push an OCI artifact as `ref` (a tag): an OCI image manifest with `artifact_type`, the
 * config `config_json` (media type config_type) and `files` as its layers, in order; each blob
 * sent only when the repository lacks it, the manifest last (its digest into manifest_digest).
 */
int imgf_registry_push_artifact(const char *ref, const char *artifact_type, const char *config_type,
				const char *config_json, const struct imgf_push_file *files,
				size_t n, const struct imgf_push_opts *o, char manifest_digest[72],
				struct imgf_push_stats *stats, struct imgf_error **err);

/*
 * Push an OCI image index as `ref` listing the images `images` (NULL-terminated references on
 * the same registry, each one image manifest, not an index), each entry's platform read from
 * its config. An image in another repository is first mounted into ref's (its blobs) and its
 * manifest put there by digest. Two images of one platform are an error.
 */
int imgf_registry_push_index(const char *ref, const char *const *images,
			     const struct imgf_push_opts *o, char index_digest[72],
			     struct imgf_error **err);

/* ---- the parts, for tests ---- */

/*
 * The URL a monolithic upload is finished at: the upload's Location (absolute, or relative to
 * `base`, "https://HOST[:PORT]") with digest=DIGEST added to its query (digest NULL: nothing
 * added). NULL when it is no URL.
 */
char *imgf_reg_upload_url(const char *base, const char *location, const char *digest);
/* "BASE/v2/REPO/blobs/uploads/" and, with `from`, "?mount=DIGEST&from=FROM". */
char *imgf_reg_mount_url(const char *base, const char *repo, const char *digest, const char *from);

/* One image of an index: its manifest and the platform its config names. */
struct imgf_index_entry {
	const char *media_type;
	const char *digest;
	uint64_t size;
	const char *os, *architecture, *variant; /* variant may be NULL */
};
/* The index's JSON (compact, entries in the given order); NULL and *err when two entries
 * name the same platform. */
char *imgf_reg_index_json(const struct imgf_index_entry *e, size_t n, struct imgf_error **err);

/* Whether `repo` is a repository name as the distribution spec allows ("a/b-c/d_e"). */
bool imgf_reg_repository_valid(const char *repo);

#endif
