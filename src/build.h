/*
 * One image being built: what the engine hands its builder, provisioner steps and
 * post-processors. The engine (engine.h) plans and runs builds; this header is what they may
 * use of one, so none of them needs the engine's header.
 */
#ifndef IMGF_BUILD_H
#define IMGF_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "config.h"
#include "fetch.h"

struct imgf_builder_ops;
struct imgf_contract;
struct imgf_push_opts;
struct imgf_error;
struct imgf_step;

enum imgf_on_error {
	IMGF_ON_ERROR_CLEANUP,
	IMGF_ON_ERROR_ABORT,
};

/* How the engine runs builds (`imgforge build` and friends); steps read no_cache. */
struct imgf_build_opts {
	char **only;   /* image names, NULL = all */
	char **except; /* image names */
	enum imgf_on_error on_error;
	bool force;
	bool no_cache; /* run every step (their cache entries are refreshed, none is reused) */
	const char *cache_to;	/* REGISTRY/REPO: each step's state exported there (regcache.h) */
	const char *cache_from; /* REGISTRY/REPO: cached steps looked up there too */
	/* how --cache-to and --cache-from speak to their registries: --auth-file, --tls-verify,
	 * --ca-file (regpush.h); NULL: the default docker config, TLS verified */
	const struct imgf_push_opts *registry;
	const char *output_dir; /* parent of BUILD_NAME+kube-VERSION, default "output" */
	bool validate_only;
	bool inspect; /* for `inspect`: its output is the plan, with no warnings among it */
	const char *mirror_dir;	  /* `imgforge mirror`: fetch every input into it, build nothing */
	unsigned parallel_builds; /* images built at once; 0 = all the selected ones */
	json_t *lock_doc;	  /* `imgforge lock`: resolve the images' packages into it */
};

struct imgf_build {
	const struct imgf_config *config;
	const struct imgf_image_def *def;
	const struct imgf_build_opts *opts;
	const struct imgf_contract *contract; /* the run's contract variables (src/contract.h) */
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

/* Record a distro package the build installed (a manifest input of kind "deb", see
 * provisioners/common.h); takes the reference. No label: an image holds hundreds. */
void imgf_build_record_package(struct imgf_build *b, json_t *entry);

/*
 * Records made on the calling thread (the three above) go into the array `into` instead of
 * the build, until this is called with NULL: a thread that fetches ahead of the steps holds
 * them, and the build's thread records them in step order (imgf_build_record_held).
 */
void imgf_build_hold_records(json_t *into);
void imgf_build_record_held(struct imgf_build *b, json_t *held);

/* kubernetes_semver: [v]MAJOR.MINOR.PATCH[-pre][+build] or an error; with `warn`, a minor
 * upstream no longer supports is logged as a warning that names the supported ones. */
int imgf_kube_version_check(const struct imgf_config *c, bool warn, struct imgf_error **err);

#endif
