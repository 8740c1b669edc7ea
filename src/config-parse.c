/*
 * Reading a config file: JSON, or YAML turned into the same JSON (plain scalars get JSON's
 * types, quoted ones stay strings; one document, no aliases), errors at file:line:column.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "util.h"

#define CONFIG_MAX_BYTES (16u << 20)
#define YAML_MAX_DEPTH 64

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
