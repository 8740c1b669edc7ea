#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "config.h"
#include "data.h"
#include "error.h"
#include "provisioner.h"
#include "strbuf.h"
#include "util.h"

/* The provisioners registered (imgf_plugins_register, src/plugins.c). */
static const struct imgf_provisioner_ops *provisioners[32];
static size_t nprovisioners;

void imgf_provisioner_register(const struct imgf_provisioner_ops *ops)
{
	if (imgf_provisioner_find(ops->name))
		return;
	if (nprovisioners == ARRAY_SIZE(provisioners))
		abort();
	provisioners[nprovisioners++] = ops;
}

const struct imgf_provisioner_ops *imgf_provisioner_find(const char *name)
{
	for (size_t i = 0; i < nprovisioners; i++)
		if (!strcmp(provisioners[i]->name, name))
			return provisioners[i];
	return NULL;
}

char *imgf_provisioner_names(void)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < nprovisioners; i++)
		strbuf_addf(&sb, "%s'%s'", i ? ", " : "", provisioners[i]->name);
	return strbuf_detach(&sb, NULL);
}

/* "variable 'containerd_url'" when the key's raw value names one, else the key's place. */
static char *step_key_origin(const struct imgf_step *s, const char *key)
{
	const char *raw = json_string_value(json_object_get(s->raw, key));
	_cleanup_free_ char *var = raw ? imgf_template_first_var(raw) : NULL;
	if (var)
		return xasprintf("variable '%s'", var);
	return xasprintf("%s: %s", s->where, key);
}

struct imgf_input *imgf_step_add_input(struct imgf_step *s, const char *name, const char *url,
				       const char *checksum, const char *url_key,
				       const char *checksum_key)
{
	s->inputs = xrealloc(s->inputs, (s->ninputs + 1) * sizeof(*s->inputs));
	struct imgf_input *in = &s->inputs[s->ninputs++];
	memset(in, 0, sizeof(*in));
	in->name = xstrdup(name);
	in->url = xstrdup(url);
	in->checksum = xstrdup(checksum);
	in->origin = url_key ? step_key_origin(s, url_key) : NULL;
	in->checksum_origin = checksum_key ? step_key_origin(s, checksum_key) : NULL;
	return in;
}

const struct imgf_input *imgf_step_input(const struct imgf_step *s, const char *name)
{
	for (size_t i = 0; i < s->ninputs; i++)
		if (!strcmp(s->inputs[i].name, name))
			return &s->inputs[i];
	return NULL;
}

bool imgf_word_is_path(const char *word)
{
	return word[0] == '/' || str_has_prefix(word, "./") || str_has_prefix(word, "../");
}

char **imgf_step_host_paths(const struct imgf_step *s)
{
	char **v = xcalloc(1, sizeof(*v));
	for (const struct imgf_key *k = s->ops->keys; k->name; k++) {
		if (k->type != IMGF_KEY_HOST_PATH && k->type != IMGF_KEY_HOST_PATH_WORDS)
			continue;
		const char *val = json_string_value(json_object_get(s->cfg, k->name));
		if (!val || !*val || (s->ops->reads_host && !s->ops->reads_host(s, k->name)))
			continue;
		if (k->type == IMGF_KEY_HOST_PATH) {
			if (!strstr(val, "://"))
				v = strv_push(v, xstrdup(val));
			continue;
		}
		for (const char *p = val; *p;) {
			p += strspn(p, " \t\n,");
			size_t n = strcspn(p, " \t\n,");
			_cleanup_free_ char *w = xstrndup(p, n);
			if (n && imgf_word_is_path(w))
				v = strv_push(v, STEAL_POINTER(&w));
			p += n;
		}
	}
	return v;
}

const char *imgf_step_var(const struct imgf_step *s, const char *name)
{
	return imgf_build_var(s->build, name);
}

int imgf_step_data(const struct imgf_step *s, const char *path, char **out, size_t *len,
		   struct imgf_error **err)
{
	return imgf_step_data_with(s, path, NULL, out, len, err);
}

int imgf_step_data_with(const struct imgf_step *s, const char *path, json_t *extra, char **out,
			size_t *len, struct imgf_error **err)
{
	_cleanup_free_ char *full = xasprintf("provisioners/%s", path);
	const struct imgf_data_file *f = imgf_data_find(full);
	if (!f)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "data file '%s' is not built in", full);
	json_t *vars = s->build->config->vars;
	if (extra) {
		vars = json_copy(vars);
		json_object_update(vars, extra);
	}
	int r = imgf_interpolate((const char *)f->data, vars, full, out, err);
	if (extra)
		json_decref(vars);
	if (r < 0)
		return -1;
	if (len)
		*len = strlen(*out);
	return 0;
}

bool imgf_provisioner_quick(const struct imgf_step *s)
{
	(void)s;
	return true;
}
