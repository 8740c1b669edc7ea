/*
 * The images provisioner: what the step's keys say (the references, the image tars, the
 * archives and the images made from binaries, the mirrors), for images*.c.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "config.h"
#include "contract.h"
#include "images-internal.h"
#include "kubesrc.h"
#include "provisioner.h"
#include "registry.h"
#include "util.h"

/*
 * The step's registry_mirrors as a JSON object (a new reference), checked; NULL on error. The
 * shipped images set it to the variable, which the contract has parsed and checked already
 * when it is valid.
 */
json_t *images_mirrors(struct imgf_step *s, struct imgf_error **err)
{
	const char *text = imgf_cfg_str(s->cfg, "registry_mirrors", NULL);
	const struct imgf_contract *k = s->build->contract;
	if (text && k->mirrors && !strcmp(text, k->registry_mirrors))
		return json_incref(k->mirrors);
	return imgf_registry_mirrors_parse(text, err);
}

const char *images_arch(const struct imgf_step *s)
{
	return kubesrc_arch(s);
}

/* An additional_images entry that names a file rather than a registry reference. */
bool images_is_path(const char *e)
{
	return imgf_word_is_path(e);
}

/* Push the words of p (separated by whitespace or commas) onto v. */
char **images_words(char **v, const char *p)
{
	while (*p) {
		p += strspn(p, " \t\n,");
		size_t n = strcspn(p, " \t\n,");
		if (n)
			v = strv_push(v, xstrndup(p, n));
		p += n;
	}
	return v;
}

/* The additional_images entries (whitespace-separated). */
char **images_additional(const struct imgf_step *s)
{
	return images_words(xcalloc(1, sizeof(char *)),
			    imgf_cfg_str(s->cfg, "additional_images", ""));
}

/* The `images` references: an entry may hold several, or none (an empty variable). */
char **images_refs(const struct imgf_step *s)
{
	_cleanup_strv_ char **raw = imgf_cfg_strv(s->cfg, "images");
	char **v = xcalloc(1, sizeof(*v));
	for (size_t i = 0; raw[i]; i++)
		v = images_words(v, raw[i]);
	return v;
}

/* Whether the step asks the target's kubeadm for its images (default: with archives). */
bool images_asks_kubeadm(const struct imgf_step *s)
{
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	return imgf_cfg_bool(s->cfg, "kubeadm", archives[0] != NULL);
}

/* "kube-apiserver.tar" -> "kube-apiserver" (newly allocated). */
char *images_component(const char *archive)
{
	size_t n = strlen(archive);
	return xstrndup(archive, str_has_suffix(archive, ".tar") ? n - 4 : n);
}

/* The name kubeadm looks for: registry.k8s.io/NAME:VERSION ('+' becomes '_', as in kubeadm). */
char *images_made_name(const struct imgf_step *s, const char *component)
{
	char *v = xstrdup(imgf_cfg_str(s->cfg, "version", ""));
	for (char *p = v; *p; p++)
		if (*p == '+')
			*p = '_';
	char *name = xasprintf("registry.k8s.io/%s:%s", component, v);
	free(v);
	return name;
}

/* With a local source: whether the archive must be made from its binary. */
bool images_made_from_binary(const struct imgf_step *s, const char *archive)
{
	if (kubesrc_type_of(s) != KUBESRC_LOCAL)
		return false;
	_cleanup_free_ char *p = kubesrc_local_find(s, archive);
	return !p;
}

/* The image config of an image made from a binary. */
json_t *images_made_config(const char *component)
{
	_cleanup_free_ char *entry = xasprintf("/usr/local/bin/%s", component);
	return json_pack("{s:[s],s:[s]}", "Env",
			 "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			 "Entrypoint", entry);
}
