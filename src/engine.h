/* The build engine: for each selected image, fetch, prepare, provision, commit, post-process. */
#ifndef IMGF_ENGINE_H
#define IMGF_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "build.h" /* struct imgf_build_opts */

struct imgf_config;
struct imgf_error;

/* Validate (and with !opts->validate_only, build) the selected images of a config. */
int imgf_engine_run(const struct imgf_config *c, const struct imgf_build_opts *opts,
		    struct imgf_error **err);

/* Everything `inspect` shows, as JSON. */
json_t *imgf_engine_inspect(const struct imgf_config *c, const struct imgf_build_opts *opts);

#endif
