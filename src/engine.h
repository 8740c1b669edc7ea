/* The build engine: for each selected image, fetch, prepare, provision, commit, post-process. */
#ifndef IMGF_ENGINE_H
#define IMGF_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct imgf_config;
struct imgf_error;

enum imgf_on_error {
	IMGF_ON_ERROR_CLEANUP,
	IMGF_ON_ERROR_ABORT,
};

struct imgf_build_opts {
	char **only;   /* image names, NULL = all */
	char **except; /* image names */
	enum imgf_on_error on_error;
	bool force;
	bool no_cache; /* run every step (their cache entries are refreshed, none is reused) */
	const char *cache_to;	/* REGISTRY/REPO: each step's state exported there (regcache.h) */
	const char *cache_from; /* REGISTRY/REPO: cached steps looked up there too */
	const char *output_dir; /* parent of BUILD_NAME+kube-VERSION, default "output" */
	bool validate_only;
	bool inspect; /* for `inspect`: its output is the plan, with no warnings among it */
	const char *mirror_dir;	  /* `imgforge mirror`: fetch every input into it, build nothing */
	unsigned parallel_builds; /* images built at once; 0 = all the selected ones */
	json_t *lock_doc;	  /* `imgforge lock`: resolve the images' packages into it */
};

/* Validate (and with !opts->validate_only, build) the selected images of a config. */
int imgf_engine_run(const struct imgf_config *c, const struct imgf_build_opts *opts,
		    struct imgf_error **err);

/* Everything `inspect` shows, as JSON. */
json_t *imgf_engine_inspect(const struct imgf_config *c, const struct imgf_build_opts *opts);

#endif
