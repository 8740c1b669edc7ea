#include <stdlib.h>
#include <string.h>

#include "builder.h"
#include "strbuf.h"
#include "util.h"

/* The builders registered (imgf_plugins_register, src/plugins.c), in that order. */
static const struct imgf_builder_ops *builders[8];
static size_t nbuilders;

void imgf_builder_register(const struct imgf_builder_ops *ops)
{
	if (imgf_builder_find(ops->name))
		return;
	if (nbuilders == ARRAY_SIZE(builders))
		abort();
	builders[nbuilders++] = ops;
}

const struct imgf_builder_ops *imgf_builder_find(const char *name)
{
	for (size_t i = 0; i < nbuilders; i++)
		if (!strcmp(builders[i]->name, name))
			return builders[i];
	return NULL;
}

char *imgf_builder_names(void)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < nbuilders; i++)
		strbuf_addf(&sb, "%s'%s'", i ? ", " : "", builders[i]->name);
	return strbuf_detach(&sb, NULL);
}

char **imgf_builder_disk_exts(void)
{
	char **v = xcalloc(1, sizeof(*v));
	for (size_t i = 0; i < nbuilders; i++)
		if (builders[i]->disk_ext)
			v = strv_push(v, xstrdup(builders[i]->disk_ext));
	return v;
}

void imgf_artifact_release(struct imgf_artifact *a)
{
	free(a->id);
	free(a->disk);
	strv_free(a->files);
	json_decref(a->extra);
	memset(a, 0, sizeof(*a));
}
