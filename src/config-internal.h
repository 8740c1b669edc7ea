/*
 * What the parts of the config code share: config-interpolate.c (references and
 * interpolation) and config.c (loading, which resolves variables and interpolates image
 * definitions under one cap for the whole config). Not for other users.
 */
#ifndef IMGF_CONFIG_INTERNAL_H
#define IMGF_CONFIG_INTERNAL_H

#include <stddef.h>

#include <jansson.h>

struct imgf_error;

/* All of a config's interpolated strings (variables and image definitions) together, and its
 * variables: many variables of INTERPOLATED_MAX each would take gigabytes and minutes. The
 * shipped configs use a few KiB and under a hundred variables. */
#define INTERPOLATED_TOTAL_MAX (64u << 20)
#define VARIABLES_MAX 10000u

/* The reference `{{ name }}` at s (which points at "{{"): name is [*nb, *ne), the return
 * value points past "}}"; NULL when it is not well-formed. */
const char *imgf_template_scan_ref(const char *s, const char **nb, const char **ne);

/* imgf_interpolate and imgf_interpolate_json, adding the results' lengths to *total, which
 * may not pass INTERPOLATED_TOTAL_MAX. */
int imgf_interpolate_counted(const char *in, json_t *vars, const char *where, size_t *total,
			     char **out, struct imgf_error **err);
int imgf_interpolate_json_counted(json_t *in, json_t *vars, const char *where, size_t *total,
				  json_t **out, struct imgf_error **err);

#endif
