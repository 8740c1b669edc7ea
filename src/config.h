/*
 * Configuration: JSON or YAML files (same meaning) with the keys
 *   include    list of files, relative to the including file, processed first, later wins
 *   variables  object of scalar values; `{{ name }}` in any string interpolates one
 *   images     list of image definition files (relative to the file that names them)
 * Image definitions hold name, description, builder, provisioners, post_processors.
 * Variable precedence, low to high: included files in order, the file itself, --var-files in
 * order, --vars.
 */
#ifndef IMGF_CONFIG_H
#define IMGF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct imgf_error;

struct imgf_image_def {
	char *name;
	char *file;		 /* the definition's path, for messages */
	json_t *builder;	 /* interpolated object with "type" */
	json_t *provisioners;	 /* interpolated array of objects with "type" */
	json_t *post_processors; /* interpolated array (may be empty) */
	json_t *raw;		 /* the definition before interpolation */
};

struct imgf_config {
	char *path;	  /* the top-level file */
	json_t *vars;	  /* name -> string, fully interpolated */
	json_t *var_from; /* name -> where its winning value was set ("FILE" or "--var") */
	json_t *files;	  /* every file read, in order: [{path, role, sha256}], role "config",
			   * "include", "var-file" or "image" (for provenance) */
	struct imgf_image_def *images;
	size_t nimages;
};

struct imgf_config_opts {
	char **var_files; /* NULL-terminated or NULL */
	char **vars;	  /* "k=v", NULL-terminated or NULL */
};

/* Parse a JSON or YAML file into a JSON value; errors carry file:line:column. */
int imgf_config_parse_file(const char *path, json_t **out, struct imgf_error **err);
/* Parse YAML text (for tests and fuzzing); `name` is used in messages. */
int imgf_config_parse_yaml(const char *name, const char *text, size_t len, json_t **out,
			   struct imgf_error **err);

int imgf_config_load(const char *path, const struct imgf_config_opts *opts,
		     struct imgf_config **out, struct imgf_error **err);
void imgf_config_free(struct imgf_config *c);

/* A resolved variable or NULL. */
const char *imgf_config_var(const struct imgf_config *c, const char *name);

/*
 * Interpolate `{{ name }}` in `in` from `vars` (name -> string). `where` names the place
 * ("FILE: key.path") for the error on an undefined variable.
 */
int imgf_interpolate(const char *in, json_t *vars, const char *where, char **out,
		     struct imgf_error **err);
/* Interpolate every string inside a JSON value (a deep copy is returned). */
int imgf_interpolate_json(json_t *in, json_t *vars, const char *where, json_t **out,
			  struct imgf_error **err);
/* The first variable `{{ name }}` referenced in a template string (newly allocated) or NULL. */
char *imgf_template_first_var(const char *tmpl);

/*
 * Reading a config object (a builder's, a provisioner step's, a post-processor's) after its
 * key check (keys.h), `def` when the key is absent: a string; a bool (true/false, or the
 * strings "true"/"false" a variable makes); a whole number (or a string of digits); a string
 * list as a NULL-terminated vector (a single string counts as one; never NULL, caller frees).
 */
const char *imgf_cfg_str(json_t *obj, const char *key, const char *def);
bool imgf_cfg_bool(json_t *obj, const char *key, bool def);
long imgf_cfg_int(json_t *obj, const char *key, long def);
char **imgf_cfg_strv(json_t *obj, const char *key);

#endif
