/*
 * The step cache in a registry: `build --cache-to REGISTRY/REPO` exports each step's state as
 * it is made, `build --cache-from REGISTRY/REPO` lets a build on another machine start from
 * the deepest step it finds there, as if it had built it (src/stepcache.h).
 *
 * An entry is two tags of REPO, both for the step key KEY (64 hex digits):
 *   step-KEY         the state: for a builder whose states are images (docker), the step's
 *                    image as the builder saves it (image_save), an OCI image of uncompressed
 *                    layers whose config is the engine's (docker pull gives the same image
 *                    ID); for one whose states are files stacked step on step (qemu's qcow2
 *                    overlays), an OCI artifact (artifactType IMGF_REGCACHE_ARTIFACT_TYPE)
 *                    whose one layer is the step's own file with the builder's media type
 *                    (export_file) and whose config names the key and the key below it;
 *   step-KEY.record  the record, pushed last: an OCI image of no layers whose config holds,
 *                    under "imgforge", the key chain that leads to KEY (every step key from the
 *                    first step on), the state (the image ID, or the file's digest) and its
 *                    manifest digest, the step, and
 *                    what the steps so far recorded (the build's inputs, URLs redacted).
 * The finished image of an image builder (docker: the squashed image, whose ID is what a
 * build with nothing changed gives out) is an entry too, under the final key (the step cache's
 * key of the artifact): i = the number of steps, `keys` every step key and then the final key,
 * so its record's chain is the whole build's.
 * A record is trusted no more than a local entry: its chain must be this build's, the state is
 * pulled by the manifest digest it names, every blob verified by digest on the way
 * (src/oci/registry.h), the config must be the image ID it names, and the builder checks what it
 * loaded (check: the image holds KEY). Any mismatch is a warning naming the blob or field and
 * the step, and the build looks for a shallower entry, else runs the steps.
 *
 * A file builder's step needs every step below it: --cache-from takes the steps past the local
 * prefix one by one up to the deepest the registry holds, each stacked on the one before
 * (import_file), each checked as a local entry is; the first that fails stops there.
 *
 * Registries are spoken to as --auth-file, --tls-verify and --ca-file say (b->opts->registry):
 * a refusal (401), a TLS failure or an unreachable registry is a warning, never a failed
 * build: the steps run.
 */
#ifndef IMGF_REGCACHE_H
#define IMGF_REGCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct imgf_build;
struct imgf_error;

/* Whether `s` is REGISTRY/REPO (a registry host, a repository, no tag or digest). */
int imgf_regcache_repo_check(const char *s, struct imgf_error **err);

/* "REPO:step-KEY" (what NULL) or "REPO:step-KEY.WHAT", newly allocated. */
char *imgf_regcache_ref(const char *repo, const char *key, const char *what);

#define IMGF_REGCACHE_ARTIFACT_TYPE "application/vnd.imgforge.step.v1"
#define IMGF_REGCACHE_CONFIG_TYPE "application/vnd.imgforge.step.config.v1+json"

/* Whether the builder of b can keep its step states in a registry. */
bool imgf_regcache_supported(const struct imgf_build *b);

/*
 * The record of step i (0-based) of a build whose step keys are keys[0..i]: `state` its image
 * ID, `manifest` the state's manifest digest, `inputs` (borrowed) what the steps recorded.
 * Newly allocated: the image config pushed as step-KEY.record.
 */
json_t *imgf_regcache_record_new(const char *const *keys, size_t i, const char *builder,
				 const char *image, const char *step, const char *state,
				 const char *manifest, const char *arch, json_t *inputs);
/*
 * Check a record read back against this build: its builder, key and chain are those of step i
 * of `keys`, and its state and manifest are digests. The error names the field that differs.
 */
int imgf_regcache_record_check(json_t *record, const char *const *keys, size_t i,
			       const char *builder, struct imgf_error **err);

/* --cache-to: push step i's state `id` (keys: the step cache's keys, b->cache->keys) and its
 * record with `inputs` (borrowed). A file builder's state must stand on `below`, the state of
 * step `below_step` (the kept step below i: quick steps in a run are kept once, with the last
 * of them), or on the base when below_step is -1 (below NULL), else it is not pushed. */
int imgf_regcache_put(struct imgf_build *b, const char *const *keys, size_t i, const char *id,
		      long below_step, const char *below, json_t *inputs, struct imgf_error **err);

/* --cache-from: what step i's record says the steps so far recorded (*inputs, a new
 * reference), its chain checked: 1, 0 when the registry has none, < 0 with *err. */
int imgf_regcache_record_inputs(struct imgf_build *b, const char *const *keys, size_t i,
				json_t **inputs, struct imgf_error **err);

/* Whether REPO has step i's record, of this build's chain: 1 yes, 0 no (or not this build's),
 * < 0 with *err when the registry cannot be asked (refusing, away). */
int imgf_regcache_probe(struct imgf_build *b, const char *repo, const char *const *keys, size_t i,
			struct imgf_error **err);

/* Whether --cache-to's registry has step i's record, of this build's chain (a failure to look
 * is a no). */
bool imgf_regcache_has(struct imgf_build *b, const char *const *keys, size_t i);

/*
 * --cache-from: step i's entry from the registry, checked and loaded into the builder: 1 and
 * *id (the state, newly allocated), *size (what it adds to the cache, 0 when unknown) and
 * *inputs (new reference) when it is used; 0 when the registry has none; < 0 with *err when it
 * is there but not usable (then *unreachable says whether the registry itself failed, when
 * looking further is pointless). A file builder's step i goes on `below`, the state here of
 * step `below_step` (the kept step below i), or on the base when below_step is -1 (ignored for
 * an image builder).
 */
int imgf_regcache_get(struct imgf_build *b, const char *const *keys, size_t i, long below_step,
		      const char *below, char **id, int64_t *size, json_t **inputs,
		      bool *unreachable, struct imgf_error **err);

#endif
