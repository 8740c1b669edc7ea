/* kubernetes_source "local": a directory as a Kubernetes build leaves it (kubesrc.h). Its
 * files have no upstream checksum: they are hashed and recorded as local inputs. */
#include <sys/stat.h>
#include <time.h>

#include "build.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "kubesrc-internal.h"
#include "provisioner.h"
#include "util.h"

/* The directories of a local build that may hold binaries, newest-first order decided later. */
static char **local_bin_dirs(const char *dir, const char *arch)
{
	char **v = NULL;
	v = strv_push(v, xasprintf("%s/_output/local/bin/linux/%s", dir, arch));
	v = strv_push(v, xasprintf("%s/_output/bin", dir));
	v = strv_push(v, xasprintf("%s/_output/dockerized/bin/linux/%s", dir, arch));
	v = strv_push(v, xasprintf("%s/_output/release-images/%s", dir, arch));
	v = strv_push(v, xstrdup(dir));
	return v;
}

/* The newest regular file called `name` among a local build's directories (NULL if none). */
static char *local_find(const char *dir, const char *arch, const char *name)
{
	_cleanup_strv_ char **dirs = local_bin_dirs(dir, arch);
	char *best = NULL;
	struct timespec best_t = {0, 0};
	for (size_t i = 0; dirs[i]; i++) {
		_cleanup_free_ char *p = path_join(dirs[i], name);
		struct stat st;
		if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (!best || st.st_mtim.tv_sec > best_t.tv_sec ||
		    (st.st_mtim.tv_sec == best_t.tv_sec && st.st_mtim.tv_nsec > best_t.tv_nsec)) {
			free(best);
			best = xstrdup(p);
			best_t = st.st_mtim;
		}
	}
	return best;
}

char *kubesrc_local_find(const struct imgf_step *s, const char *name)
{
	_cleanup_free_ char *dir = kubesrc_abs_path(imgf_cfg_str(s->cfg, "local_dir", ""));
	return local_find(dir, kubesrc_arch(s), name);
}

static int local_validate(struct imgf_step *s, const char *const *need, struct imgf_error **err)
{
	const char *dir = imgf_cfg_str(s->cfg, "local_dir", "");
	struct stat st;
	if (!*dir)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "local_dir: kubernetes_source 'local' needs the directory of "
				      "a Kubernetes build");
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "local_dir: '%s' is not a directory",
				      dir);
	for (size_t i = 0; need && need[i]; i++) {
		_cleanup_free_ char *p = local_find(dir, kubesrc_arch(s), need[i]);
		if (!p)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"local_dir: '%s' has no '%s' (looked in _output/local/bin/linux/%s, "
				"_output/bin, _output/dockerized/bin/linux/%s, "
				"_output/release-images/%s and the directory itself)",
				dir, need[i], kubesrc_arch(s), kubesrc_arch(s), kubesrc_arch(s));
	}
	return 0;
}

/* Nothing to download. */
static void local_inputs(struct imgf_step *s, const char *const *names)
{
}

static int local_stage(struct imgf_step *s, const char *const *need, const char *const *may,
		       json_t *out, struct imgf_error **err)
{
	_cleanup_free_ char *dir = kubesrc_abs_path(imgf_cfg_str(s->cfg, "local_dir", ""));
	for (int pass = 0; pass < 2; pass++) {
		const char *const *names = pass ? may : need;
		for (size_t i = 0; names && names[i]; i++) {
			_cleanup_free_ char *p = local_find(dir, kubesrc_arch(s), names[i]);
			if (!p && !pass)
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "local_dir: '%s' has no '%s' any more", dir,
						      names[i]);
			if (!p || json_object_get(out, names[i]))
				continue;
			if (kubesrc_record_local(s, names[i], p, err) < 0)
				return -1;
			json_object_set_new(out, names[i], json_string(p));
		}
	}
	return 0;
}

const struct kubesrc_ops kubesrc_local = {
	.name = "local",
	.type = KUBESRC_LOCAL,
	.host_key = "local_dir",
	.validate = local_validate,
	.inputs = local_inputs,
	.stage = local_stage,
};
