/* kubernetes_source "tarball": kubernetes-server-linux-ARCH.tar.gz by URL (its checksum beside
 * it or given) or by path; only the members kubernetes/server/bin/NAME asked for are taken
 * (kubesrc.h). */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "build.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "kubesrc-internal.h"
#include "log.h"
#include "provisioner.h"
#include "util.h"

#define TARBALL_INPUT "kubernetes-server"
#define TARBALL_DIR "kubernetes/server/bin" /* where the server tarball keeps its files */

static bool in_list(const char *const *v, const char *s)
{
	for (size_t i = 0; v && v[i]; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

static bool is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int tarball_validate(struct imgf_step *s, const char *const *need, struct imgf_error **err)
{
	const char *tarball = imgf_cfg_str(s->cfg, "tarball", "");
	if (!*tarball)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "tarball: kubernetes_source 'tarball' needs the URL or path "
				      "of a kubernetes-server-linux-%s.tar.gz",
				      kubesrc_arch(s));
	if (!kubesrc_is_url(tarball) && !is_file(tarball))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "tarball: '%s' is neither a URL nor an existing file "
				      "(expected kubernetes-server-linux-%s.tar.gz)",
				      tarball, kubesrc_arch(s));
	return 0;
}

static void tarball_inputs(struct imgf_step *s, const char *const *names)
{
	const char *tarball = imgf_cfg_str(s->cfg, "tarball", "");
	const char *ck = imgf_cfg_str(s->cfg, "tarball_checksum", "");
	if (!kubesrc_is_url(tarball) && !*ck)
		return; /* a local file: hashed at stage time */
	_cleanup_free_ char *a = kubesrc_is_url(tarball) ? NULL : kubesrc_abs_path(tarball);
	_cleanup_free_ char *url = a ? xasprintf("file://%s", a) : xstrdup(tarball);
	_cleanup_free_ char *beside = xasprintf("%s.sha256", url);
	imgf_step_add_input(s, TARBALL_INPUT, url, *ck ? ck : beside, "tarball",
			    *ck ? "tarball_checksum" : NULL);
}

/* The needed members of the server tarball, copied into DIR/NAME; a missing one fails. */
static int tarball_members(struct imgf_step *s, const char *tarball, const char *const *need,
			   const char *const *may, const char *dir, json_t *out,
			   struct imgf_error **err)
{
	const char **only = NULL;
	size_t n = 0;
	for (size_t i = 0; need && need[i]; i++) {
		only = xrealloc(only, (n + 2) * sizeof(*only));
		only[n++] = need[i];
	}
	for (size_t i = 0; may && may[i]; i++)
		if (!in_list(need, may[i])) {
			only = xrealloc(only, (n + 2) * sizeof(*only));
			only[n++] = may[i];
		}
	if (!only)
		return 0;
	only[n] = NULL;
	_cleanup_free_ char *tar = xasprintf("%s.tar", dir);
	int r = -1;
	struct imgf_tar *w = imgf_tar_open(tar, err);
	if (w) {
		/* kubernetes/server/bin/NAME -> NAME */
		r = imgf_tar_add_archive(w, tarball, 3, "", only, err);
		if (r == 0)
			r = imgf_tar_close(w, err);
		imgf_tar_free(w);
	}
	if (r < 0)
		imgf_error_prefix(err,
				  "tarball '%s' (expected a kubernetes-server-linux-%s.tar.gz "
				  "with %s/NAME)",
				  tarball, kubesrc_arch(s), TARBALL_DIR);
	if (r == 0 && (r = mkdir_p(dir, 0755, err)) == 0)
		r = imgf_archive_extract(tar, dir, err);
	unlink(tar);
	for (size_t i = 0; r == 0 && only[i]; i++)
		json_object_set_new(out, only[i], json_sprintf("%s/%s", dir, only[i]));
	free(only);
	return r;
}

static int tarball_stage(struct imgf_step *s, const char *const *need, const char *const *may,
			 json_t *out, struct imgf_error **err)
{
	const struct imgf_input *in = imgf_step_input(s, TARBALL_INPUT);
	_cleanup_free_ char *path =
		in ? xstrdup(in->path) : kubesrc_abs_path(imgf_cfg_str(s->cfg, "tarball", ""));
	if (!in && kubesrc_record_local(s, path_basename(path), path, err) < 0)
		return -1;
	_cleanup_free_ char *dir = xasprintf("%s/kube-%zu", s->build->stage_dir, s->index);
	if (tarball_members(s, path, need, may, dir, out, err) < 0)
		return -1;
	log_info("%s: %zu file(s) from %s, nothing else unpacked", s->label, json_object_size(out),
		 path_basename(in ? in->url : path));
	return 0;
}

const struct kubesrc_ops kubesrc_tarball = {
	.name = "tarball",
	.type = KUBESRC_TARBALL,
	.host_key = "tarball",
	.validate = tarball_validate,
	.inputs = tarball_inputs,
	.stage = tarball_stage,
};
