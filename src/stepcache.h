/*
 * The content-addressed step cache. Every step of a build gets a key: the sha256 of the
 * previous step's key (the first step: the builder's type and config, the base's digest and
 * imgforge's version), the provisioner type, its interpolated config, the digests of its
 * inputs (the expected checksums, so a cached step downloads nothing), the digests of its
 * provisioner's data files and the variables they interpolate, and imgforge's version. The
 * builder keeps the state after each step but quick ones followed by another quick one
 * (imgf_stepcache_keeps; docker: an image labelled with the key; qemu: a qcow2 overlay backed
 * by the previous kept step's); a build reuses the longest cached prefix and runs only the
 * rest. The last step's key, the builder config and the artifact's labels make
 * the final key: a build with nothing changed gives out the artifact it made before.
 *
 * Index: CACHE/steps/KEY.json, one per entry: {key, image, step, index, builder, id, size,
 * created, used, final, inputs, superseded}. An entry whose builder state is missing or
 * damaged (a label that does not match, a disk that fails its check) is removed and rebuilt,
 * never trusted.
 *
 * Builds running at once share the cache: one key has one entry, and a state is never removed
 * while another build stands on it (CACHE/steps/KEY.save and KEY.use, see stepcache-entry.c). A
 * build that finishes a step a twin build has just cached goes on from the twin's state.
 */
#ifndef IMGF_STEPCACHE_H
#define IMGF_STEPCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct imgf_build;
struct imgf_error;
struct imgf_target;
struct imgf_artifact;
struct imgf_input;

struct imgf_stepcache {
	char *dir;	/* CACHE/steps */
	char **keys;	/* per step */
	json_t **found; /* per step: its index entry when cached and intact, else NULL */
	size_t hit;	/* the cached prefix: steps 0..hit-1 are not run */
	char *final_key;
	json_t *final_found; /* the artifact's entry when it can be given out again */
	size_t mark;	     /* json_array_size(b->inputs) when the cache opened */
	bool pending;	     /* the base was not at hand: no keys yet (imgf_stepcache_settle) */
	int *use;	     /* per step: the shared lock on KEY.use while the build stands on
			      * that key's state, else -1 (see stepcache-entry.c) */
	size_t nuse;
	int final_use; /* the same for the final key */
	bool put_off;  /* an export to --cache-to failed: no more are tried */
	/* --cache-from found every step and took the finished image alone: found[last] holds
	 * the last step's record (its inputs), not a state, and reuse must give the image out */
	bool artifact_only;
};

/* Compute the keys and find the longest cached prefix (and the artifact) of a build whose
 * builder keeps a cache; b->cache stays NULL (nothing cached) with --no-cache or a builder
 * without one. */
int imgf_stepcache_open(struct imgf_build *b, struct imgf_error **err);
void imgf_stepcache_free(struct imgf_stepcache *c);
/* After the inputs are fetched: when the base was not at hand at open, get it (the builder
 * pulls) and compute the keys; every step then runs. */
int imgf_stepcache_settle(struct imgf_build *b, struct imgf_error **err);

/* What an input will be before it is fetched, "ALG:HEX" (a checksum list is read): for a
 * builder's cache_base. */
int imgf_stepcache_input_digest(struct imgf_build *b, const struct imgf_input *in, char **out,
				struct imgf_error **err);
/* Say that step i comes from the cache (a line and a "step-cached" event). */
void imgf_stepcache_say_cached(struct imgf_build *b, size_t i);
/* The builder's id of the state the target starts from (NULL: the base). */
const char *imgf_stepcache_from(const struct imgf_build *b);
/* Replay what the cached steps recorded (their inputs, for the manifest and labels): called
 * for each cached step, acts at the last. */
void imgf_stepcache_replay(struct imgf_build *b, size_t step);
/*
 * Whether the state after step i is kept. A quick step (its provisioner's `quick`: a few
 * small files, or a verified download's, put in place) followed by another quick step is
 * not: running it again costs less than keeping it (a commit and a new container, or a new
 * overlay and appliance). The state after a run of quick steps is kept once, after the last
 * of them, and the last step's always is. The keys still chain through every step, and a
 * kept entry records the inputs of all steps before it, so a rebuild starts from the deepest
 * kept state before its first changed step and runs the quick steps between again.
 */
bool imgf_stepcache_keeps(const struct imgf_build *b, size_t i);
/* Keep the target's state after step i under its key when imgf_stepcache_keeps says so (a
 * failure only warns). */
void imgf_stepcache_step_done(struct imgf_build *b, struct imgf_target *t, size_t i);
/* The final key from the build's labels (call once every input is recorded). */
void imgf_stepcache_final_key(struct imgf_build *b);
/* Give out the cached artifact (saying so): 1 when done, 0 when it must be built. */
int imgf_stepcache_reuse(struct imgf_build *b, struct imgf_artifact *out, struct imgf_error **err);
/* Record the committed artifact under the final key, computed again from its labels. */
void imgf_stepcache_keep_artifact(struct imgf_build *b, const struct imgf_artifact *art);

/* imgforge cache ls: key, image, step, size, age (JSON events with json). */
int imgf_stepcache_ls(const char *cache_dir, bool json, struct imgf_error **err);
/* imgforge cache prune: entries older than older_than_s (>= 0), then the least recently used
 * until the cache holds at most max_size bytes (UINT64_MAX: no limit); with neither, all. */
int imgf_stepcache_prune(const char *cache_dir, uint64_t max_size, int64_t older_than_s,
			 struct imgf_error **err);
/* A duration: seconds, or a number with s, m, h, d or w ("7d"). */
int imgf_duration_parse(const char *s, int64_t *out);

#endif
