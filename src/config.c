/*
 * Loading a config: the top-level file and its includes, the variables layered from them,
 * --var-files and --vars and resolved against each other, then the image definitions,
 * interpolated; and reading values out of the loaded config objects. Parsing a file is in
 * config-parse.c, interpolation in config-interpolate.c.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config-internal.h"
#include "config.h"
#include "digest.h"
#include "error.h"
#include "strbuf.h"
#include "util.h"

#define INCLUDE_MAX_DEPTH 16

/* ---- loading and layering -------------------------------------------------------------- */

struct loader {
	json_t *raw_vars; /* name -> uninterpolated string */
	json_t *var_from; /* name -> origin */
	json_t *images;	  /* array of absolute-ish paths, from the last file that set it */
	char **stack;	  /* files being loaded, for include cycles */
	size_t total;	  /* bytes interpolated so far (INTERPOLATED_TOTAL_MAX) */
	json_t *files;	  /* imgf_config.files */
};

/* A file the config was read from, with its sha256 (for provenance). */
static void note_file(json_t *files, const char *path, const char *role)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	struct imgf_error *e = NULL;
	if (imgf_digest_file(path, IMGF_SHA256, hex, &e) < 0) {
		imgf_error_free(e); /* it was just read: only a race gets here */
		return;
	}
	json_array_append_new(
		files, json_pack("{s:s,s:s,s:s}", "path", path, "role", role, "sha256", hex));
}

static const char *const config_keys[] = {"include", "variables", "images", NULL};

static int unknown_key(const char *file, const char *where, const char *key,
		       const char *const *known, struct imgf_error **err)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; known[i]; i++)
		strbuf_addf(&sb, "%s'%s'", i ? ", " : "", known[i]);
	imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %sunknown key '%s' (known keys: %s)", file, where,
		       key, sb.buf);
	strbuf_release(&sb);
	return -1;
}

static int check_keys(const char *file, const char *where, json_t *obj, const char *const *known,
		      struct imgf_error **err)
{
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		bool ok = false;
		for (size_t i = 0; known[i] && !ok; i++)
			ok = strcmp(k, known[i]) == 0;
		if (!ok)
			return unknown_key(file, where, k, known, err);
	}
	return 0;
}

/* Variables are scalars; numbers and booleans become their JSON text. */
static int scalar_to_string(json_t *v, char **out)
{
	if (json_is_string(v))
		*out = xstrdup(json_string_value(v));
	else if (json_is_true(v))
		*out = xstrdup("true");
	else if (json_is_false(v))
		*out = xstrdup("false");
	else if (json_is_integer(v))
		*out = xasprintf("%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		*out = xasprintf("%g", json_real_value(v));
	else
		return -1;
	return 0;
}

static int set_vars(struct loader *ld, json_t *vars, const char *origin, struct imgf_error **err)
{
	if (!json_is_object(vars))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: 'variables' must be an object of name: value", origin);
	const char *k;
	json_t *v;
	json_object_foreach(vars, k, v)
	{
		char *s;
		if (scalar_to_string(v, &s) < 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "%s: variables.%s: expected a string, number or "
					      "boolean",
					      origin, k);
		json_t *js = json_string(s);
		free(s);
		if (!js)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "%s: variables.%s: not valid UTF-8", origin, k);
		json_object_set_new(ld->raw_vars, k, js);
		json_object_set_new(ld->var_from, k, json_string(origin));
		if (json_object_size(ld->raw_vars) > VARIABLES_MAX)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"%s: variables.%s: more than %u variables (the cap for "
				"a whole config)",
				origin, k, VARIABLES_MAX);
	}
	return 0;
}

static int load_file(struct loader *ld, const char *path, int depth, struct imgf_error **err)
{
	if (depth > INCLUDE_MAX_DEPTH)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: includes nested deeper than %d",
				      path, INCLUDE_MAX_DEPTH);
	for (size_t i = 0; ld->stack && ld->stack[i]; i++)
		if (!strcmp(ld->stack[i], path))
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: include cycle", path);

	json_t *doc;
	if (imgf_config_parse_file(path, &doc, err) < 0)
		return -1;
	note_file(ld->files, path, depth ? "include" : "config");
	int r = -1;
	ld->stack = strv_push(ld->stack, xstrdup(path));
	_cleanup_free_ char *dir = path_dirname(path);

	if (!json_is_object(doc)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "%s: expected an object at the top level",
			       path);
		goto out;
	}
	if (check_keys(path, "", doc, config_keys, err) < 0)
		goto out;

	json_t *inc = json_object_get(doc, "include");
	if (inc) {
		if (json_is_string(inc)) {
			json_t *a = json_array();
			json_array_append(a, inc);
			json_object_set_new(doc, "include", a);
			inc = a;
		}
		if (!json_is_array(inc)) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "%s: include: expected a list of file names", path);
			goto out;
		}
		size_t i;
		json_t *v;
		json_array_foreach(inc, i, v)
		{
			if (!json_is_string(v)) {
				imgf_error_set(err, IMGF_EXIT_FAIL,
					       "%s: include[%zu]: expected a file name", path, i);
				goto out;
			}
			_cleanup_free_ char *p = path_join(dir, json_string_value(v));
			if (load_file(ld, p, depth + 1, err) < 0) {
				imgf_error_prefix(err, "%s: include[%zu]", path, i);
				goto out;
			}
		}
	}
	json_t *vars = json_object_get(doc, "variables");
	if (vars && set_vars(ld, vars, path, err) < 0)
		goto out;
	json_t *images = json_object_get(doc, "images");
	if (images) {
		if (!json_is_array(images)) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "%s: images: expected a list of image definition files",
				       path);
			goto out;
		}
		json_t *list = json_array();
		size_t i;
		json_t *v;
		json_array_foreach(images, i, v)
		{
			if (!json_is_string(v)) {
				json_decref(list);
				imgf_error_set(err, IMGF_EXIT_FAIL,
					       "%s: images[%zu]: expected a file name", path, i);
				goto out;
			}
			char *p = path_join(dir, json_string_value(v));
			json_array_append_new(list, json_string(p));
			free(p);
		}
		json_decref(ld->images);
		ld->images = list;
	}
	r = 0;
out:
	free(ld->stack[strv_len(ld->stack) - 1]);
	ld->stack[strv_len(ld->stack) - 1] = NULL;
	json_decref(doc);
	return r;
}

/* Resolve one variable, following references; `busy` detects cycles. */
static int resolve_var(const char *name, json_t *raw, json_t *from, json_t *done, json_t *busy,
		       size_t *total, struct imgf_error **err)
{
	if (json_object_get(done, name))
		return 0;
	json_t *rv = json_object_get(raw, name);
	if (!rv)
		return 0;
	if (json_object_get(busy, name))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: variables.%s: refers to itself through other variables",
				      json_string_value(json_object_get(from, name)), name);
	json_object_set_new(busy, name, json_true());
	const char *tmpl = json_string_value(rv);
	/* Resolve what it refers to first. */
	for (const char *s = strstr(tmpl, "{{"); s; s = strstr(s + 2, "{{")) {
		const char *nb, *ne;
		if (!imgf_template_scan_ref(s, &nb, &ne))
			continue;
		_cleanup_free_ char *ref = xstrndup(nb, (size_t)(ne - nb));
		if (resolve_var(ref, raw, from, done, busy, total, err) < 0)
			return -1;
	}
	_cleanup_free_ char *where =
		xasprintf("%s: variables.%s", json_string_value(json_object_get(from, name)), name);
	char *val;
	if (imgf_interpolate_counted(tmpl, done, where, total, &val, err) < 0)
		return -1;
	json_t *jv = json_string(val);
	free(val);
	if (!jv)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: not valid UTF-8", where);
	json_object_set_new(done, name, jv);
	json_object_del(busy, name);
	return 0;
}

static int load_image_def(struct imgf_config *c, const char *path, struct imgf_image_def *def,
			  size_t *total, struct imgf_error **err)
{
	static const char *const image_keys[] = {"name",	 "description",	    "builder",
						 "provisioners", "post_processors", NULL};
	json_t *doc;
	if (imgf_config_parse_file(path, &doc, err) < 0)
		return -1;
	note_file(c->files, path, "image");
	def->file = xstrdup(path);
	def->raw = doc;
	if (!json_is_object(doc))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: expected an image definition object", path);
	if (check_keys(path, "", doc, image_keys, err) < 0)
		return -1;
	json_t *name = json_object_get(doc, "name");
	if (!json_is_string(name) || !*json_string_value(name))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: name: expected a non-empty string",
				      path);
	def->name = xstrdup(json_string_value(name));
	json_t *b = json_object_get(doc, "builder");
	if (!json_is_object(b) || !json_is_string(json_object_get(b, "type")))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: builder: expected an object with a 'type'", path);
	json_t *p = json_object_get(doc, "provisioners");
	if (p && !json_is_array(p))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: provisioners: expected a list",
				      path);
	json_t *pp = json_object_get(doc, "post_processors");
	if (pp && !json_is_array(pp))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: post_processors: expected a list",
				      path);
	_cleanup_free_ char *wb = xasprintf("%s: builder", path);
	_cleanup_free_ char *wp = xasprintf("%s: provisioners", path);
	_cleanup_free_ char *wpp = xasprintf("%s: post_processors", path);
	json_t *empty = json_array();
	int r = 0;
	if (imgf_interpolate_json_counted(b, c->vars, wb, total, &def->builder, err) < 0 ||
	    imgf_interpolate_json_counted(p ? p : empty, c->vars, wp, total, &def->provisioners,
					  err) < 0 ||
	    imgf_interpolate_json_counted(pp ? pp : empty, c->vars, wpp, total,
					  &def->post_processors, err) < 0)
		r = -1;
	json_decref(empty);
	return r;
}

int imgf_config_load(const char *path, const struct imgf_config_opts *opts,
		     struct imgf_config **out, struct imgf_error **err)
{
	struct loader ld = {
		.raw_vars = json_object(),
		.var_from = json_object(),
		.files = json_array(),
	};
	struct imgf_config *c = xcalloc(1, sizeof(*c));
	c->path = xstrdup(path);
	c->files = json_incref(ld.files);
	int r = -1;

	if (load_file(&ld, path, 0, err) < 0)
		goto out;
	for (size_t i = 0; opts && opts->var_files && opts->var_files[i]; i++) {
		const char *vf = opts->var_files[i];
		json_t *doc;
		if (imgf_config_parse_file(vf, &doc, err) < 0)
			goto out;
		note_file(ld.files, vf, "var-file");
		/* A var file is either {"variables": {...}} or a flat object of variables. */
		json_t *vars = json_is_object(doc) && json_object_get(doc, "variables")
				       ? json_object_get(doc, "variables")
				       : doc;
		int sr = set_vars(&ld, vars, vf, err);
		json_decref(doc);
		if (sr < 0)
			goto out;
	}
	for (size_t i = 0; opts && opts->vars && opts->vars[i]; i++) {
		const char *kv = opts->vars[i];
		const char *eq = strchr(kv, '=');
		if (!eq || eq == kv) {
			imgf_error_set(err, IMGF_EXIT_USAGE, "--var '%s': expected NAME=VALUE", kv);
			goto out;
		}
		_cleanup_free_ char *k = xstrndup(kv, (size_t)(eq - kv));
		json_t *jv = json_string(eq + 1);
		if (!jv || json_object_set_new(ld.raw_vars, k, jv) < 0) {
			imgf_error_set(err, IMGF_EXIT_FAIL, "--var '%s': not valid UTF-8", k);
			goto out;
		}
		json_object_set_new(ld.var_from, k, json_string("--var"));
		if (json_object_size(ld.raw_vars) > VARIABLES_MAX) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "--var '%s': more than %u variables (the cap for a whole "
				       "config)",
				       k, VARIABLES_MAX);
			goto out;
		}
	}

	c->vars = json_object();
	json_t *busy = json_object();
	const char *k;
	json_t *v;
	int vr = 0;
	json_object_foreach(ld.raw_vars, k, v)
	{
		if (resolve_var(k, ld.raw_vars, ld.var_from, c->vars, busy, &ld.total, err) < 0) {
			vr = -1;
			break;
		}
	}
	json_decref(busy);
	if (vr < 0)
		goto out;
	c->var_from = json_incref(ld.var_from);

	size_t n = ld.images ? json_array_size(ld.images) : 0;
	c->images = xcalloc(n ? n : 1, sizeof(*c->images));
	for (size_t i = 0; i < n; i++) {
		const char *ip = json_string_value(json_array_get(ld.images, i));
		c->nimages++;
		if (load_image_def(c, ip, &c->images[i], &ld.total, err) < 0)
			goto out;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(c->images[j].name, c->images[i].name)) {
				imgf_error_set(err, IMGF_EXIT_FAIL,
					       "%s: image name '%s' is already used by '%s'", ip,
					       c->images[i].name, c->images[j].file);
				goto out;
			}
	}
	*out = STEAL_POINTER(&c);
	r = 0;
out:
	json_decref(ld.raw_vars);
	json_decref(ld.var_from);
	json_decref(ld.images);
	json_decref(ld.files);
	strv_free(ld.stack);
	imgf_config_free(c);
	return r;
}

void imgf_config_free(struct imgf_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nimages; i++) {
		struct imgf_image_def *d = &c->images[i];
		free(d->name);
		free(d->file);
		json_decref(d->builder);
		json_decref(d->provisioners);
		json_decref(d->post_processors);
		json_decref(d->raw);
	}
	free(c->images);
	json_decref(c->vars);
	json_decref(c->var_from);
	json_decref(c->files);
	free(c->path);
	free(c);
}

const char *imgf_config_var(const struct imgf_config *c, const char *name)
{
	return json_string_value(json_object_get(c->vars, name));
}

const char *imgf_cfg_str(json_t *obj, const char *key, const char *def)
{
	json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : def;
}

bool imgf_cfg_bool(json_t *obj, const char *key, bool def)
{
	json_t *v = json_object_get(obj, key);
	if (json_is_boolean(v))
		return json_is_true(v);
	if (json_is_string(v))
		return !strcmp(json_string_value(v), "true");
	return def;
}

long imgf_cfg_int(json_t *obj, const char *key, long def)
{
	json_t *v = json_object_get(obj, key);
	if (json_is_integer(v))
		return (long)json_integer_value(v);
	if (json_is_string(v))
		return strtol(json_string_value(v), NULL, 10);
	return def;
}

char **imgf_cfg_strv(json_t *obj, const char *key)
{
	char **v = xcalloc(1, sizeof(*v));
	json_t *j = json_object_get(obj, key);
	if (json_is_string(j))
		return strv_push(v, xstrdup(json_string_value(j)));
	size_t i;
	json_t *e;
	json_array_foreach(j, i, e)
	{
		if (json_is_string(e))
			v = strv_push(v, xstrdup(json_string_value(e)));
	}
	return v;
}
