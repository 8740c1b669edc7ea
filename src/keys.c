#include <string.h>

#include "error.h"
#include "keys.h"
#include "strbuf.h"
#include "util.h"

static const char *type_name(enum imgf_key_type t)
{
	switch (t) {
	case IMGF_KEY_STRING:
	case IMGF_KEY_HOST_PATH:
	case IMGF_KEY_HOST_PATH_WORDS:
		return "a string";
	case IMGF_KEY_BOOL:
		return "true or false";
	case IMGF_KEY_INT:
		return "an integer";
	case IMGF_KEY_STRING_LIST:
		return "a list of strings";
	case IMGF_KEY_OBJECT:
		return "an object";
	case IMGF_KEY_ANY:
		break;
	}
	return "a value";
}

static bool type_ok(json_t *v, enum imgf_key_type t)
{
	switch (t) {
	case IMGF_KEY_STRING:
	case IMGF_KEY_HOST_PATH:
	case IMGF_KEY_HOST_PATH_WORDS:
		return json_is_string(v);
	case IMGF_KEY_BOOL:
		/* Interpolation yields strings, so "true"/"false" count. */
		return json_is_boolean(v) ||
		       (json_is_string(v) && (!strcmp(json_string_value(v), "true") ||
					      !strcmp(json_string_value(v), "false")));
	case IMGF_KEY_INT:
		if (json_is_integer(v))
			return true;
		if (json_is_string(v)) {
			const char *s = json_string_value(v);
			if (!*s)
				return false;
			for (; *s; s++)
				if (*s < '0' || *s > '9')
					return false;
			return true;
		}
		return false;
	case IMGF_KEY_STRING_LIST:
		if (json_is_string(v))
			return true;
		if (!json_is_array(v))
			return false;
		for (size_t i = 0; i < json_array_size(v); i++)
			if (!json_is_string(json_array_get(v, i)))
				return false;
		return true;
	case IMGF_KEY_OBJECT:
		return json_is_object(v);
	case IMGF_KEY_ANY:
		return true;
	}
	return false;
}

int imgf_keys_check(json_t *obj, const struct imgf_key *keys, const char *where,
		    struct imgf_error **err)
{
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		if (!strcmp(k, "type") || !strcmp(k, "name"))
			continue;
		const struct imgf_key *key = NULL;
		for (const struct imgf_key *p = keys; p->name; p++)
			if (!strcmp(p->name, k))
				key = p;
		if (!key) {
			struct strbuf sb = STRBUF_INIT;
			for (const struct imgf_key *p = keys; p->name; p++)
				strbuf_addf(&sb, "%s'%s'", sb.len ? ", " : "", p->name);
			imgf_error_set(err, IMGF_EXIT_FAIL, "%s: unknown key '%s' (known keys: %s)",
				       where, k, sb.len ? sb.buf : "none");
			strbuf_release(&sb);
			return -1;
		}
		if (!type_ok(v, key->type))
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %s: expected %s", where, k,
					      type_name(key->type));
	}
	for (const struct imgf_key *p = keys; p->name; p++) {
		if (!p->required)
			continue;
		json_t *v2 = json_object_get(obj, p->name);
		if (!v2 || (json_is_string(v2) && !*json_string_value(v2)))
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %s: required, expected %s",
					      where, p->name, type_name(p->type));
	}
	return 0;
}
