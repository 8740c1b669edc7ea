/* What builders, provisioners and post-processors use of the build they run in (build.h). */
#include <string.h>
#include <time.h>

#include "build.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "manifest.h"
#include "util.h"

const char *imgf_build_var(const struct imgf_build *b, const char *name)
{
	return imgf_config_var(b->config, name);
}

void imgf_build_record_input(struct imgf_build *b, const char *name, const char *url,
			     const char *sha256)
{
	json_array_append_new(
		b->inputs, json_pack("{s:s,s:s,s:s}", "name", name, "url", url, "sha256", sha256));
	_cleanup_free_ char *label = xasprintf("io.imgforge.input.%s", name);
	_cleanup_free_ char *value = xasprintf("sha256:%s", sha256);
	json_object_set_new(b->labels, label, json_string(value));
}

void imgf_build_record_local_input(struct imgf_build *b, const char *name, const char *path,
				   const char *sha256)
{
	json_array_append_new(b->inputs, json_pack("{s:s,s:s,s:s,s:b}", "name", name, "path", path,
						   "sha256", sha256, "local", 1));
	_cleanup_free_ char *label = xasprintf("io.imgforge.input.%s", name);
	_cleanup_free_ char *value = xasprintf("sha256:%s", sha256);
	json_object_set_new(b->labels, label, json_string(value));
}

double imgf_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void imgf_build_phase(const struct imgf_build *b, const char *phase, double seconds)
{
	imgf_event("phase",
		   json_pack("{s:s,s:s,s:f}", "image", b->def->name, "phase", phase, "seconds",
			     seconds),
		   NULL);
	log_debug("%s: %s took %.1fs", b->def->name, phase, seconds);
}

int imgf_build_dir_name(const struct imgf_config *c, char **out, struct imgf_error **err)
{
	const char *name = imgf_config_var(c, "build_name");
	const char *kv = imgf_config_var(c, "kubernetes_semver");
	if (!name || !kv)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: variables 'build_name' and 'kubernetes_semver' must be "
				      "defined",
				      c->path);
	*out = imgf_output_name(name, kv);
	if (!*out)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: build_name '%s' and kubernetes_semver '%s' must be "
				      "non-empty and contain no '/'",
				      c->path, name, kv);
	return 0;
}
