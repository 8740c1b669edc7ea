#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "strbuf.h"
#include "util.h"

#define CONFIG_MAX_BYTES (16u << 20)
#define INCLUDE_MAX_DEPTH 16
#define YAML_MAX_DEPTH 64
/* One interpolated string: variables that double each other would otherwise grow without end. */
#define INTERPOLATED_MAX (1u << 20)
/* All of a config's interpolated strings (variables and image definitions) together, and its
 * variables: many variables of INTERPOLATED_MAX each would take gigabytes and minutes. The
 * shipped configs use a few KiB and under a hundred variables. */
#define INTERPOLATED_TOTAL_MAX (64u << 20)
#define VARIABLES_MAX 10000u

static bool is_yaml_path(const char *path)
{
	return str_has_suffix(path, ".yaml") || str_has_suffix(path, ".yml");
}

/* ---- YAML to JSON ---------------------------------------------------------------------- */

struct yaml_ctx {
	yaml_parser_t parser;
	const char *name;
	struct imgf_error **err;
};

static int yaml_fail(struct yaml_ctx *y, const yaml_mark_t *m, const char *what)
{
	return imgf_error_set(y->err, IMGF_EXIT_FAIL, "%s:%zu:%zu: %s", y->name, m->line + 1,
			      m->column + 1, what);
}

static int yaml_next(struct yaml_ctx *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->parser, ev)) {
		const yaml_mark_t *m = &y->parser.problem_mark;
		return imgf_error_set(
			y->err, IMGF_EXIT_FAIL, "%s:%zu:%zu: %s%s%s", y->name, m->line + 1,
			m->column + 1, y->parser.problem ? y->parser.problem : "syntax error",
			y->parser.context ? " " : "", y->parser.context ? y->parser.context : "");
	}
	return 0;
}

/* Plain scalars get JSON's types; quoted ones are always strings. */
static json_t *yaml_scalar(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.tag)
		return json_stringn(v, len);
	if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
		return json_true();
	if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
		return json_false();
	if (!strcmp(v, "null") || !strcmp(v, "~") || !strcmp(v, "Null") || len == 0)
		return json_null();
	char *end;
	errno = 0;
	long long i = strtoll(v, &end, 10);
	if (len && *end == '\0' && errno == 0 && (isdigit((unsigned char)v[0]) || v[0] == '-'))
		return json_integer(i);
	double d = strtod(v, &end);
	if (len && *end == '\0' && (isdigit((unsigned char)v[0]) || v[0] == '-' || v[0] == '.') &&
	    strpbrk(v, "0123456789"))
		return json_real(d);
	return json_stringn(v, len);
}

static int yaml_node(struct yaml_ctx *y, yaml_event_t *ev, int depth, json_t **out);

static int yaml_collection(struct yaml_ctx *y, bool mapping, int depth, json_t **out)
{
	json_t *c = mapping ? json_object() : json_array();
	for (;;) {
		yaml_event_t ev;
		if (yaml_next(y, &ev) < 0)
			goto fail;
		if (ev.type == (mapping ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT)) {
			yaml_event_delete(&ev);
			break;
		}
		if (mapping) {
			if (ev.type != YAML_SCALAR_EVENT) {
				yaml_fail(y, &ev.start_mark, "mapping keys must be scalars");
				yaml_event_delete(&ev);
				goto fail;
			}
			char *key =
				xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
			yaml_mark_t km = ev.start_mark;
			yaml_event_delete(&ev);
			if (json_object_get(c, key)) {
				char *m = xasprintf("duplicate key '%s'", key);
				yaml_fail(y, &km, m);
				free(m);
				free(key);
				goto fail;
			}
			json_t *val;
			if (yaml_next(y, &ev) < 0) {
				free(key);
				goto fail;
			}
			int r = yaml_node(y, &ev, depth + 1, &val);
			if (r < 0) {
				free(key);
				goto fail;
			}
			json_object_set_new(c, key, val);
			free(key);
		} else {
			json_t *val;
			if (yaml_node(y, &ev, depth + 1, &val) < 0)
				goto fail;
			json_array_append_new(c, val);
		}
	}
	*out = c;
	return 0;
fail:
	json_decref(c);
	return -1;
}

/* Consumes ev. */
static int yaml_node(struct yaml_ctx *y, yaml_event_t *ev, int depth, json_t **out)
{
	int r = 0;
	if (depth > YAML_MAX_DEPTH) {
		r = yaml_fail(y, &ev->start_mark, "nesting too deep");
	} else if (ev->type == YAML_SCALAR_EVENT) {
		*out = yaml_scalar(ev);
		if (!*out)
			r = yaml_fail(y, &ev->start_mark, "scalar is not valid UTF-8");
	} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
		r = yaml_collection(y, false, depth, out);
	} else if (ev->type == YAML_MAPPING_START_EVENT) {
		r = yaml_collection(y, true, depth, out);
	} else if (ev->type == YAML_ALIAS_EVENT) {
		r = yaml_fail(y, &ev->start_mark, "aliases are not supported");
	} else {
		r = yaml_fail(y, &ev->start_mark, "unexpected YAML event");
	}
	yaml_event_delete(ev);
	return r;
}

int imgf_config_parse_yaml(const char *name, const char *text, size_t len, json_t **out,
			   struct imgf_error **err)
{
	struct yaml_ctx y = {.name = name, .err = err};
	json_t *doc = NULL;
	yaml_event_t ev;
	int r = -1;

	yaml_parser_initialize(&y.parser);
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);
	for (;;) {
		if (yaml_next(&y, &ev) < 0)
			goto out;
		yaml_event_type_t t = ev.type;
		if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT ||
		    t == YAML_DOCUMENT_END_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		if (t == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (doc) {
			yaml_fail(&y, &ev.start_mark, "only one document is allowed");
			yaml_event_delete(&ev);
			goto out;
		}
		if (yaml_node(&y, &ev, 0, &doc) < 0)
			goto out;
	}
	*out = doc ? doc : json_object();
	doc = NULL;
	r = 0;
out:
	json_decref(doc);
	yaml_parser_delete(&y.parser);
	return r;
}

int imgf_config_parse_file(const char *path, json_t **out, struct imgf_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (read_file(path, CONFIG_MAX_BYTES, &text, &len, err) < 0)
		return -1;
	if (is_yaml_path(path))
		return imgf_config_parse_yaml(path, text, len, out, err);
	json_error_t je;
	json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!v)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s:%d:%d: %s", path, je.line, je.column,
				      je.text);
	*out = v;
	return 0;
}

/* ---- interpolation --------------------------------------------------------------------- */

static bool is_var_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

/*
 * Scan `{{ name }}` at s (which points at "{{"); on success name is [*nb, *ne) and the
 * return value points past "}}". NULL when this is not a well-formed reference.
 */
static const char *scan_ref(const char *s, const char **nb, const char **ne)
{
	const char *p = s + 2;
	while (*p == ' ' || *p == '\t')
		p++;
	*nb = p;
	while (is_var_char(*p))
		p++;
	*ne = p;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*ne == *nb || p[0] != '}' || p[1] != '}')
		return NULL;
	return p + 2;
}

char *imgf_template_first_var(const char *tmpl)
{
	for (const char *s = strstr(tmpl, "{{"); s; s = strstr(s + 2, "{{")) {
		const char *nb, *ne;
		if (scan_ref(s, &nb, &ne))
			return xstrndup(nb, (size_t)(ne - nb));
	}
	return NULL;
}

int imgf_interpolate(const char *in, json_t *vars, const char *where, char **out,
		     struct imgf_error **err)
{
	struct strbuf sb = STRBUF_INIT;
	sb.max = INTERPOLATED_MAX;
	const char *s = in;
	for (;;) {
		const char *open = strstr(s, "{{");
		if (!open) {
			strbuf_addstr(&sb, s);
			break;
		}
		strbuf_add(&sb, s, (size_t)(open - s));
		const char *nb, *ne;
		const char *end = scan_ref(open, &nb, &ne);
		if (!end) {
			strbuf_release(&sb);
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "%s: malformed reference in '%s': expected "
					      "'{{ name }}'",
					      where, in);
		}
		_cleanup_free_ char *name = xstrndup(nb, (size_t)(ne - nb));
		json_t *v = json_object_get(vars, name);
		if (!v || !json_is_string(v)) {
			strbuf_release(&sb);
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: undefined variable '%s'",
					      where, name);
		}
		strbuf_addstr(&sb, json_string_value(v));
		if (sb.overflow)
			break;
		s = end;
	}
	if (sb.overflow) {
		strbuf_release(&sb);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: the interpolated value is longer than %u bytes (the cap "
				      "for one string)",
				      where, INTERPOLATED_MAX);
	}
	*out = strbuf_detach(&sb, NULL);
	return 0;
}

/* imgf_interpolate, adding the result's length to *total, which may not pass the cap. */
static int interpolate_counted(const char *in, json_t *vars, const char *where, size_t *total,
			       char **out, struct imgf_error **err)
{
	if (imgf_interpolate(in, vars, where, out, err) < 0)
		return -1;
	*total += strlen(*out);
	if (*total > INTERPOLATED_TOTAL_MAX) {
		free(*out);
		*out = NULL;
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: the interpolated config is longer than %u bytes in all "
				      "(the cap for its variables and image definitions together)",
				      where, INTERPOLATED_TOTAL_MAX);
	}
	return 0;
}

static int interpolate_json_at(json_t *in, json_t *vars, struct strbuf *path, size_t *total,
			       json_t **out, struct imgf_error **err)
{
	size_t mark = path->len;
	if (json_is_string(in)) {
		char *s;
		if (interpolate_counted(json_string_value(in), vars, path->buf, total, &s, err) < 0)
			return -1;
		*out = json_string(s);
		free(s);
		if (!*out)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: not valid UTF-8",
					      path->buf);
		return 0;
	}
	if (json_is_array(in)) {
		json_t *a = json_array();
		size_t i;
		json_t *v;
		json_array_foreach(in, i, v)
		{
			json_t *nv;
			strbuf_addf(path, "[%zu]", i);
			int r = interpolate_json_at(v, vars, path, total, &nv, err);
			path->len = mark;
			path->buf[mark] = '\0';
			if (r < 0) {
				json_decref(a);
				return -1;
			}
			json_array_append_new(a, nv);
		}
		*out = a;
		return 0;
	}
	if (json_is_object(in)) {
		json_t *o = json_object();
		const char *k;
		json_t *v;
		json_object_foreach(in, k, v)
		{
			json_t *nv;
			strbuf_addf(path, ".%s", k);
			int r = interpolate_json_at(v, vars, path, total, &nv, err);
			path->len = mark;
			path->buf[mark] = '\0';
			if (r < 0) {
				json_decref(o);
				return -1;
			}
			json_object_set_new(o, k, nv);
		}
		*out = o;
		return 0;
	}
	*out = json_incref(in);
	return 0;
}

static int interpolate_json_counted(json_t *in, json_t *vars, const char *where, size_t *total,
				    json_t **out, struct imgf_error **err)
{
	struct strbuf path = STRBUF_INIT;
	strbuf_addstr(&path, where);
	int r = interpolate_json_at(in, vars, &path, total, out, err);
	strbuf_release(&path);
	return r;
}

int imgf_interpolate_json(json_t *in, json_t *vars, const char *where, json_t **out,
			  struct imgf_error **err)
{
	size_t total = 0;
	return interpolate_json_counted(in, vars, where, &total, out, err);
}

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
		if (!scan_ref(s, &nb, &ne))
			continue;
		_cleanup_free_ char *ref = xstrndup(nb, (size_t)(ne - nb));
		if (resolve_var(ref, raw, from, done, busy, total, err) < 0)
			return -1;
	}
	_cleanup_free_ char *where =
		xasprintf("%s: variables.%s", json_string_value(json_object_get(from, name)), name);
	char *val;
	if (interpolate_counted(tmpl, done, where, total, &val, err) < 0)
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
	if (interpolate_json_counted(b, c->vars, wb, total, &def->builder, err) < 0 ||
	    interpolate_json_counted(p ? p : empty, c->vars, wp, total, &def->provisioners, err) <
		    0 ||
	    interpolate_json_counted(pp ? pp : empty, c->vars, wpp, total, &def->post_processors,
				     err) < 0)
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
