/*
 * Builders make a target from a base, turn it into an artifact and clean up. One file per
 * builder under builders/, each defining one `const struct imgf_builder_ops`, listed in
 * src/plugins.c's table (imgf_plugins_register).
 *
 *   name, prepare, commit, cleanup  MUST be set
 *   keys                            MUST list every config key the builder accepts
 *   validate                        MAY be NULL (nothing beyond the key check)
 *   disk_ext                        MAY be NULL: its artifacts carry no disk; else they do
 *                                   (imgf_artifact.disk, OUTPUT/NAME.EXT), which post-processors
 *                                   that convert a disk need and image-upload sends
 *   cache                           MAY be NULL: the builder keeps no step cache (every build
 *                                   runs every step); else its hooks (struct
 *                                   imgf_builder_cache_ops below), which the step cache
 *                                   (src/stepcache*.c) alone calls
 *   image_save                      MAY be NULL: its artifacts are no container images (the
 *                                   push post-processor refuses such a builder)
 */
#ifndef IMGF_BUILDER_H
#define IMGF_BUILDER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "keys.h"

struct imgf_error;
struct imgf_target;
struct imgf_build;

struct imgf_artifact {
	char *id;      /* docker image ID, or the disk file's path */
	char *disk;    /* the disk image in the output dir, for post-processors (NULL: none) */
	char **files;  /* output files relative to the build's output dir (NULL-terminated) */
	json_t *extra; /* builder-specific manifest data (may be NULL) */
	/* What the disk boots with: "bios" or "uefi" (a static string; NULL: no disk) */
	const char *firmware;
};

/*
 * The step cache's hooks (src/stepcache.h), apart from what every builder implements:
 *   base, save, check, drop  MUST be set
 *   adopt                    MAY be NULL: a build whose step a twin build has just cached goes
 *                            on with its own state, which is not kept
 *   reuse                    MAY be NULL: the artifact is made again from the last step's state
 *   keep                     MAY be NULL: the artifact's own id is kept
 *   load                     MAY be NULL: the builder's states cannot come from a registry
 *                            as images (--cache-from, src/regcache.h); with image_save it
 *                            exports them (--cache-to)
 *   export_file, import_file MAY be NULL, both or neither: the builder's states are files
 *                            stacked on the previous step's (qemu's overlays), which a
 *                            registry keeps one per step as an OCI artifact (src/regcache.h)
 *   late_keys                MAY be NULL: the config keys that act only once the steps have
 *                            run (qemu's boot check, the firmware the image boots with); they
 *                            are left out of every step's cache key (not of the finished
 *                            image's), so changing one reruns no step
 */
struct imgf_builder_cache_ops {
	const char *const *late_keys; /* NULL-terminated */
	/* The digest of the base, the first link of the key chain: docker the base image's ID,
	 * qemu the base disk's checksum. Without pull, a base that is not at hand (docker: to
	 * be pulled) gives *digest NULL: the build asks again, with pull, once its inputs are
	 * fetched, so a bad input fails first. */
	int (*base)(struct imgf_build *b, bool pull, char **digest, struct imgf_error **err);
	/* Keep the target's state after a step under `key`; *id names it (an image ID, a
	 * file), *size is what it adds to the cache in bytes. prepare() starts from such a
	 * state when imgf_stepcache_from(b) is not NULL. */
	int (*save)(struct imgf_build *b, struct imgf_target *t, const char *key, const char *step,
		    char **id, int64_t *size, struct imgf_error **err);
	/* Whether the state `id` saved under `key` is there and intact (1) or missing or
	 * damaged (0); a damaged one is removed. Final: the artifact rather than a step. */
	int (*check)(struct imgf_build *b, const char *key, const char *id, bool final,
		     struct imgf_error **err);
	/* Make the target go on from the state `id` another build saved under the same key (as
	 * if this build had started from it) rather than keep its own: what the step did to
	 * the target is dropped, and the next step starts from `id`, as after save. */
	int (*adopt)(struct imgf_build *b, struct imgf_target *t, const char *id,
		     struct imgf_error **err);
	/* Remove a saved state (imgforge cache prune); b is NULL there. */
	int (*drop)(const char *id, bool final, struct imgf_error **err);
	/* Keep a committed artifact for reuse under the final `key`: *id names what is kept
	 * (qemu: a link to the disk in the cache), *size what it adds in bytes. */
	int (*keep)(struct imgf_build *b, const struct imgf_artifact *art, const char *key,
		    char **id, int64_t *size, struct imgf_error **err);
	/* Give out again the artifact `id` an earlier build committed with the same key. */
	int (*reuse)(struct imgf_build *b, const char *id, struct imgf_artifact *out,
		     struct imgf_error **err);
	/* Load a step's state another machine exported: `archive` is what image_save writes
	 * (a docker-archive), whose image must then be known as `id`. */
	int (*load)(struct imgf_build *b, const char *archive, const char *id,
		    struct imgf_error **err);
	/* The file that holds state `id`'s own step, its digest ("sha256:HEX") and its media
	 * type, and the state it stands on (*below, NULL: the base); newly allocated, *type
	 * static. */
	int (*export_file)(struct imgf_build *b, const char *id, char **file, char digest[72],
			   const char **type, char **below, struct imgf_error **err);
	/* Make `file` (from a registry, verified by digest; the hook takes it) the state of step
	 * `key` on top of the state `below` (NULL: the base): *id and *size as save gives them. */
	int (*import_file)(struct imgf_build *b, const char *key, const char *file,
			   const char *below, char **id, int64_t *size, struct imgf_error **err);
};

struct imgf_builder_ops {
	const char *name;
	const struct imgf_key *keys;
	const char *disk_ext;
	int (*validate)(struct imgf_build *b, struct imgf_error **err);
	/* Make the target from the base (config in b->builder_cfg). */
	int (*prepare)(struct imgf_build *b, struct imgf_target **out, struct imgf_error **err);
	/* Turn the provisioned target into the artifact. */
	int (*commit)(struct imgf_build *b, struct imgf_target *t, struct imgf_artifact *out,
		      struct imgf_error **err);
	/* Always runs once prepare has returned a target. With keep (--on-error=abort after a
	 * failure) the target stays and its whereabouts are logged; otherwise it is removed. */
	void (*cleanup)(struct imgf_build *b, struct imgf_target *t, bool keep);
	const struct imgf_builder_cache_ops *cache;

	/* Write the image artifact `id` to out_tar as `docker save` does (manifest.json, the
	 * config, the uncompressed layers); out_tar is removed on failure. */
	int (*image_save)(struct imgf_build *b, const char *id, const char *out_tar,
			  struct imgf_error **err);
};

/* Make a builder known by its name (a second one of the same name is ignored). */
void imgf_builder_register(const struct imgf_builder_ops *ops);
const struct imgf_builder_ops *imgf_builder_find(const char *name);
/* "'docker', 'qemu'" for messages (newly allocated). */
char *imgf_builder_names(void);
/* Every builder's disk_ext that is set, in table order (NULL-terminated, newly allocated). */
char **imgf_builder_disk_exts(void);
void imgf_artifact_release(struct imgf_artifact *a);

#endif
