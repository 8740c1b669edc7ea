/*
 * `{{ name }}` in config strings: finding references, and interpolating a string or every
 * string inside a JSON value, with a cap on one result and on a whole config's results.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config-internal.h"
#include "config.h"
#include "error.h"
#include "strbuf.h"
#include "util.h"

/* One interpolated string: variables that double each other would otherwise grow without end. */
#define INTERPOLATED_MAX (1u << 20)

/* ---- interpolation --------------------------------------------------------------------- */

static bool is_var_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

/*
 * Scan `{{ name }}` at s (which points at "{{"); on success name is [*nb, *ne) and the
 * return value points past "}}". NULL when this is not a well-formed reference.
 */
const char *imgf_template_scan_ref(const char *s, const char **nb, const char **ne)
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
		if (imgf_template_scan_ref(s, &nb, &ne))
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
		const char *end = imgf_template_scan_ref(open, &nb, &ne);
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
int imgf_interpolate_counted(const char *in, json_t *vars, const char *where, size_t *total,
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
		if (imgf_interpolate_counted(json_string_value(in), vars, path->buf, total, &s,
					     err) < 0)
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

int imgf_interpolate_json_counted(json_t *in, json_t *vars, const char *where, size_t *total,
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
	return imgf_interpolate_json_counted(in, vars, where, &total, out, err);
}
