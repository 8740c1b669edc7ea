/* The build engine: for each selected image, fetch, prepare, provision, commit, post-process. */
#ifndef IMGF_ENGINE_H
#define IMGF_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "config.h"
#include "fetch.h"
#include "provisioner.h"

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
	const char *output_dir; /* parent of BUILD_NAME+kube-VERSION, default "output" */
	bool validate_only;
	const char *mirror_dir; /* `imgforge mirror`: fetch every input into it, build nothing */
};

/* One image being built. */
struct imgf_build {
	const struct imgf_config *config;
	const struct imgf_image_def *def;
	const struct imgf_build_opts *opts;
	const struct imgf_builder_ops *builder;
	json_t *builder_cfg;
	struct imgf_step *steps;
	size_t nsteps;
	struct imgf_fetch_opts fetch;
	char *cache_dir;
	char *stage_dir; /* host temp dir for this build, removed at the end */
	char *out_dir;	 /* output/BUILD_NAME+kube-VERSION */
	json_t *labels;	 /* name -> value, filled by the engine for the artifact */
	json_t *inputs;	 /* [{name, url, sha256}] every artifact used, for the manifest */
	void *builder_priv;
	struct imgf_stepcache *cache; /* NULL: nothing cached (src/stepcache.h) */
};

const char *imgf_build_var(const struct imgf_build *b, const char *name);
/* A timed phase of a build, as a "phase" event (and a debug line): for benchmarks. */
void imgf_build_phase(const struct imgf_build *b, const char *phase, double seconds);
/* Seconds since an arbitrary start, monotonic. */
double imgf_now(void);
/* Record an artifact the build used (manifest inputs[] and the image's labels). */
void imgf_build_record_input(struct imgf_build *b, const char *name, const char *url,
			     const char *sha256);
/* Record a local file the build used, which has no upstream checksum: {name, path, sha256,
 * local: true} in the manifest. */
void imgf_build_record_local_input(struct imgf_build *b, const char *name, const char *path,
				   const char *sha256);

/* Validate (and with !opts->validate_only, build) the selected images of a config. */
int imgf_engine_run(const struct imgf_config *c, const struct imgf_build_opts *opts,
		    struct imgf_error **err);

/* Everything `inspect` shows, as JSON. */
json_t *imgf_engine_inspect(const struct imgf_config *c, const struct imgf_build_opts *opts);

/* The output directory name for a config: BUILD_NAME+kube-KUBERNETES_VERSION. */
int imgf_build_dir_name(const struct imgf_config *c, char **out, struct imgf_error **err);

#endif
