/*
 * Provisioners change a target. One file per provisioner under provisioners/, each defining
 * one `const struct imgf_provisioner_ops`, listed in src/plugins.c's table. They never
 * know which builder they run under.
 *
 *   name, keys, run   MUST be set
 *   validate          MAY be NULL: config checks beyond the key table, no side effects
 *   inputs            MAY be NULL: declare the artifacts the step needs (imgf_step_add_input);
 *                     the engine fetches and verifies all of them on the host before the
 *                     target exists
 *   stage             MAY be NULL: host-side work after inputs are verified and before the
 *                     target exists (e.g. pulling registry images); no target access
 *   cache_key         MAY be NULL: what decides the step's effect beyond its config, inputs
 *                     and data files (packages: the lock's entry, or the archive's Release),
 *                     as JSON for the step cache's key; may fetch (the build's fetch options)
 *   lock              MAY be NULL: steps that install distro packages resolve them in the
 *                     target for `imgforge lock` (*entry: the lock's step entry, aptlock.h);
 *                     with `install` they also install them, as a later step needs
 *   reads_host        MAY be NULL: every key the keys table types IMGF_KEY_HOST_PATH(_WORDS)
 *                     names host paths the step reads whenever it is set; else whether that
 *                     key does in this step's config (file's `source` with direction
 *                     download is a path in the target)
 *   quick             MAY be NULL: whether the step is quick, only putting files from its
 *                     verified inputs or a few small files in place (runc, cni, crictl, kind,
 *                     sysprep; containerd from its release tarball), so that running it again
 *                     costs less than keeping its state: the step cache keeps the state after
 *                     a run of quick steps once, after the last of them (src/stepcache.h,
 *                     imgf_stepcache_keeps). imgf_provisioner_quick: always
 */
#ifndef IMGF_PROVISIONER_H
#define IMGF_PROVISIONER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "fetch.h"
#include "keys.h"

struct imgf_error;
struct imgf_target;
struct imgf_build;

struct imgf_step {
	const struct imgf_provisioner_ops *ops;
	struct imgf_build *build;
	size_t index;
	char *label; /* "containerd" or the step's "name" */
	char *where; /* "images/kind-node.json: provisioners[2] (containerd)" */
	json_t *cfg; /* interpolated */
	json_t *raw; /* before interpolation, for origins */
	struct imgf_input *inputs;
	size_t ninputs;
	json_t *staged; /* whatever stage() records for run(), e.g. host tar paths (may be NULL) */
};

struct imgf_provisioner_ops {
	const char *name;
	const struct imgf_key *keys;
	int (*validate)(struct imgf_step *s, struct imgf_error **err);
	int (*inputs)(struct imgf_step *s, struct imgf_error **err);
	int (*stage)(struct imgf_step *s, struct imgf_error **err);
	int (*run)(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err);
	/* Optional: the registry references the step pulls (NULL-terminated, newly allocated)
	 * and, in *mirrors, the registry_mirrors it pulls them through; for `imgforge mirror`. */
	char **(*pulls)(struct imgf_step *s, json_t **mirrors, struct imgf_error **err);
	bool (*reads_host)(const struct imgf_step *s, const char *key);
	int (*cache_key)(const struct imgf_step *s, json_t **extra, struct imgf_error **err);
	int (*lock)(struct imgf_step *s, struct imgf_target *t, bool install, json_t **entry,
		    struct imgf_error **err);
	bool (*quick)(const struct imgf_step *s);
};

/* For `quick`: a provisioner whose every step is quick. */
bool imgf_provisioner_quick(const struct imgf_step *s);

/* Make a provisioner known by its name (a second one of the same name is ignored). */
void imgf_provisioner_register(const struct imgf_provisioner_ops *ops);
const struct imgf_provisioner_ops *imgf_provisioner_find(const char *name);
char *imgf_provisioner_names(void);

/*
 * Declare an input. `url_key` and `checksum_key` name the config keys the URL and the
 * checksum came from, so a fetch error can name the variable behind them; NULL when there is
 * none (a NULL checksum_key means the checksum is derived from the URL).
 */
struct imgf_input *imgf_step_add_input(struct imgf_step *s, const char *name, const char *url,
				       const char *checksum, const char *url_key,
				       const char *checksum_key);
/* The verified input by name (after fetching) or NULL. */
const struct imgf_input *imgf_step_input(const struct imgf_step *s, const char *name);

/*
 * The host files and directories the step reads, as its config writes them (relative ones
 * are relative to the working directory, as the provisioners open them): the values of the
 * keys its provisioner types IMGF_KEY_HOST_PATH, and the words written as paths of those it
 * types IMGF_KEY_HOST_PATH_WORDS. NULL-terminated, newly allocated; for the step cache's key.
 */
char **imgf_step_host_paths(const struct imgf_step *s);
/* A word of an IMGF_KEY_HOST_PATH_WORDS value that names a host path: /…, ./… or ../… */
bool imgf_word_is_path(const char *word);

/* The step's config (s->cfg) is read with config.h's imgf_cfg_str/_bool/_int/_strv. */
/* A variable of the build (NULL when undefined). */
const char *imgf_step_var(const struct imgf_step *s, const char *name);
/* A provisioner data file (provisioners/NAME/FILE) with {{ vars }} interpolated. */
int imgf_step_data(const struct imgf_step *s, const char *path, char **out, size_t *len,
		   struct imgf_error **err);
/* The same, with the variables of `extra` (a JSON object; NULL for none) added. */
int imgf_step_data_with(const struct imgf_step *s, const char *path, json_t *extra, char **out,
			size_t *len, struct imgf_error **err);

#endif
