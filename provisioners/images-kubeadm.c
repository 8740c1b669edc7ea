/*
 * The images provisioner and kubeadm: the target's `kubeadm config images list` checked
 * against what the step preloads, what it asks for beside that pulled (pause, etcd, CoreDNS);
 * and for `imgforge mirror`, which has no target, the pulls with those named.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "config.h"
#include "error.h"
#include "imageref.h"
#include "images-internal.h"
#include "log.h"
#include "ociimage.h"
#include "provisioner.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

/* Of `names`, the one with w's registry and repository (at any tag), or NULL. */
static const char *same_repository(char **names, const struct imgf_image_ref *w)
{
	for (size_t i = 0; names[i]; i++) {
		struct imgf_image_ref got;
		if (imgf_image_ref_parse(names[i], &got, NULL) < 0)
			continue;
		bool same = !strcmp(got.registry, w->registry) &&
			    !strcmp(got.repository, w->repository);
		imgf_image_ref_release(&got);
		if (same)
			return names[i];
	}
	return NULL;
}

/* Whether an archive (NAME.tar) makes the image: registry.k8s.io/NAME. */
static bool from_archive(char **archives, const struct imgf_image_ref *w)
{
	for (size_t i = 0; archives[i]; i++) {
		_cleanup_free_ char *comp = images_component(archives[i]);
		if (!strcmp(w->registry, "registry.k8s.io") && !strcmp(w->repository, comp))
			return true;
	}
	return false;
}

/*
 * What kubeadm's image list (`list`: the output of `kubeadm config images list`) asks of a
 * step that preloads `given`: the archives' images are checked after import; an image given
 * at another tag (or from another registry) is an error, since kubeadm or the kubelet would
 * pull what it asks for when a cluster is created; the rest (pause, etcd, CoreDNS whose
 * variables are empty) are pushed onto *pull. Every name goes into `expect` (may be NULL);
 * *pause (newly allocated) receives kubeadm's pause image.
 */
static int kubeadm_plan(const struct imgf_step *s, const char *list, char **given, char ***pull,
			struct strbuf *expect, char **pause, struct imgf_error **err)
{
	const char *v = imgf_cfg_str(s->cfg, "version", "");
	_cleanup_strv_ char **want = images_words(xcalloc(1, sizeof(char *)), list);
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	if (!want[0])
		return imgf_error_set(err, IMGF_EXIT_FAIL, "kubeadm %s lists no images", v);
	for (size_t i = 0; want[i]; i++) {
		struct imgf_image_ref w;
		if (!str_is_shell_word(want[i]) || imgf_image_ref_parse(want[i], &w, NULL) < 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "kubeadm %s lists '%s', which is not an image "
					      "reference",
					      v, want[i]);
		if (expect)
			strbuf_addf(expect, " %s", want[i]);
		const char *slash = strrchr(w.repository, '/');
		if (!strcmp(slash ? slash + 1 : w.repository, "pause") && !*pause)
			*pause = xstrdup(want[i]);
		const char *have = same_repository(given, &w);
		int r = 0;
		if (have && strcmp(have, want[i]))
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'%s' is preloaded, but kubeadm %s asks for '%s', which "
					   "it would pull when a cluster is created (leave the "
					   "image's variable empty to take kubeadm's)",
					   have, v, want[i]);
		else if (!have && !from_archive(archives, &w))
			*pull = strv_push(*pull, xstrdup(want[i]));
		imgf_image_ref_release(&w);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* The names the staged images will have. */
static char **staged_names(json_t *staged)
{
	char **v = xcalloc(1, sizeof(*v));
	size_t i, j;
	json_t *e, *n;
	json_array_foreach(staged, i, e) json_array_foreach(json_object_get(e, "names"), j, n) v =
		strv_push(v, xstrdup(json_string_value(n)));
	return v;
}

/* Ask the target's kubeadm (kubeadm_plan) and pull what it wants that is not staged yet. */
int images_kubeadm(struct imgf_step *s, struct imgf_target *t, struct strbuf *expect, char **pause,
		   struct imgf_error **err)
{
	const char *v = imgf_cfg_str(s->cfg, "version", "");
	/* kubeadm defaults the node name from the hostname and refuses one that is no DNS name:
	 * the libguestfs appliance's is "(none)". Only that kernel's name is changed, not the
	 * image's (the version is a shell word, checked by validate). */
	_cleanup_free_ char *script =
		xasprintf("case $(cat /proc/sys/kernel/hostname 2>/dev/null) in\n"
			  "*[!a-z0-9.-]*) echo imgforge-build >/proc/sys/kernel/hostname ;;\n"
			  "esac\n"
			  "exec kubeadm config images list --kubernetes-version %s\n",
			  v);
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	_cleanup_free_ char *out = NULL;
	if (imgf_target_capture(t, s->label, argv, &out, err) < 0)
		return imgf_error_prefix(err, "ask the target's kubeadm which images %s needs", v);
	_cleanup_strv_ char **given = staged_names(s->staged);
	_cleanup_strv_ char **pull = xcalloc(1, sizeof(char *));
	if (kubeadm_plan(s, out, given, &pull, expect, pause, err) < 0)
		return -1;
	json_t *mirrors = images_mirrors(s, err);
	if (!mirrors)
		return -1;
	int r = 0;
	for (size_t i = 0; pull[i] && r == 0; i++) {
		log_info("%s: kubeadm %s asks for '%s'", s->label, v, pull[i]);
		r = images_stage_pull(s, pull[i], mirrors, err);
	}
	json_decref(mirrors);
	return r;
}

/* Of the images kubeadm asks for beside the control plane's, those `refs` names none of (by
 * repository name): the shipped configs' variables for them, space-separated. */
static char *kubeadm_missing(char **refs)
{
	static const struct {
		const char *repo, *var;
	} kinds[] = {
		{"pause", "pause_image"}, {"etcd", "etcd_image"}, {"coredns", "coredns_image"}};
	struct strbuf sb = STRBUF_INIT;
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		bool have = false;
		for (size_t i = 0; refs[i] && !have; i++) {
			struct imgf_image_ref r;
			if (imgf_image_ref_parse(refs[i], &r, NULL) < 0)
				continue;
			const char *slash = strrchr(r.repository, '/');
			have = !strcmp(slash ? slash + 1 : r.repository, kinds[k].repo);
			imgf_image_ref_release(&r);
		}
		if (!have)
			strbuf_addf(&sb, "%s%s", sb.len ? ", " : "", kinds[k].var);
	}
	return strbuf_detach(&sb, NULL);
}

/*
 * For `imgforge mirror`: the references the step pulls. A mirror has no target to ask kubeadm
 * in, and runs nothing from a download on the host: where a build would take kubeadm's pause,
 * etcd and CoreDNS, the mirror needs them named (a build from the mirror still asks its
 * target's kubeadm, and refuses an image kubeadm does not want).
 */
char **images_pulls(struct imgf_step *s, json_t **mirrors, struct imgf_error **err)
{
	if (!(*mirrors = images_mirrors(s, err)))
		return NULL;
	char **refs = images_refs(s);
	_cleanup_strv_ char **more = images_additional(s);
	for (size_t i = 0; more[i]; i++)
		if (!images_is_path(more[i]))
			refs = strv_push(refs, xstrdup(more[i]));
	if (!images_asks_kubeadm(s))
		return refs;
	const char *v = imgf_cfg_str(s->cfg, "version", "");
	_cleanup_free_ char *missing = kubeadm_missing(refs);
	if (!*missing)
		return refs;
	imgf_error_set(err, IMGF_EXIT_FAIL,
		       "kubeadm %s's images: a mirror has no target to ask kubeadm in, and "
		       "imgforge runs no downloaded binary on the host; set %s to what "
		       "`kubeadm config images list --kubernetes-version %s` prints (a build "
		       "from the mirror checks them against its target's kubeadm), or set the "
		       "step's 'kubeadm' false",
		       v, missing, v);
	strv_free(refs);
	json_decref(*mirrors);
	*mirrors = NULL;
	return NULL;
}
