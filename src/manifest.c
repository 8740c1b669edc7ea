#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fsutil.h"
#include "manifest.h"
#include "redact.h"
#include "util.h"

json_t *imgf_manifest_new(void)
{
	/* last_run_uuid keeps Packer readers happy; ours is the build time as an id. */
	return json_pack("{s:o,s:s}", "builds", json_array(), "imgforge_version", IMGF_VERSION);
}

int imgf_manifest_write(json_t *manifest, const char *dir, struct imgf_error **err)
{
	_cleanup_free_ char *path = path_join(dir, "manifest.json");
	_cleanup_free_ char *raw = json_dumps(manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!raw)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "encode '%s'", path);
	/* Input URLs are recorded as given: a mirror's credentials stay out of the file. */
	_cleanup_free_ char *text = imgf_redact(raw);
	size_t len = strlen(text);
	text = xrealloc(text, len + 2);
	text[len] = '\n';
	text[len + 1] = '\0';
	return write_file_atomic(path, text, len + 1, 0644, err);
}

int imgf_manifest_read(const char *dir, json_t **out, struct imgf_error **err)
{
	_cleanup_free_ char *path = path_join(dir, "manifest.json");
	json_error_t je;
	json_t *m = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!m)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s:%d:%d: %s", path, je.line, je.column,
				      je.text);
	json_t *builds = json_object_get(m, "builds");
	if (!json_is_array(builds)) {
		json_decref(m);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: builds: expected a list", path);
	}
	*out = m;
	return 0;
}

char *imgf_output_name(const char *build_name, const char *kube_version)
{
	if (!*build_name || !*kube_version || strchr(build_name, '/') || strchr(kube_version, '/'))
		return NULL;
	return xasprintf("%s+kube-%s", build_name, kube_version);
}
