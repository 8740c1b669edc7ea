/* packages: install distro packages with apt or dnf (detected), record each .deb (name,
 * version, architecture, sha256, archive) in the manifest's inputs, then clean the lists. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "error.h"
#include "provisioner.h"
#include "target.h"
#include "util.h"

static const struct imgf_key packages_keys[] = {
	{"packages", IMGF_KEY_STRING_LIST, true},
	{"manager", IMGF_KEY_STRING, false}, /* auto (default), apt, dnf */
	{"update", IMGF_KEY_BOOL, false},    /* refresh lists before installing (default true) */
	{"clean", IMGF_KEY_BOOL, false},     /* remove caches and lists afterwards (default true) */
	{NULL, 0, false},
};

/* Entries may hold several names separated by spaces, so one variable can carry a list. */
static char **package_list(const struct imgf_step *s)
{
	_cleanup_strv_ char **raw = imgf_cfg_strv(s->cfg, "packages");
	char **v = xcalloc(1, sizeof(*v));
	for (size_t i = 0; raw[i]; i++) {
		char *save = NULL;
		for (char *w = strtok_r(raw[i], " \t\n", &save); w;
		     w = strtok_r(NULL, " \t\n", &save))
			v = strv_push(v, xstrdup(w));
	}
	return v;
}

static int packages_validate(struct imgf_step *s, struct imgf_error **err)
{
	const char *m = imgf_cfg_str(s->cfg, "manager", "auto");
	if (strcmp(m, "auto") && strcmp(m, "apt") && strcmp(m, "dnf"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "manager: '%s' is not one of 'auto', 'apt', 'dnf'", m);
	_cleanup_strv_ char **pkgs = package_list(s);
	_cleanup_free_ char *script = NULL;
	return prov_packages_script(pkgs, true, true, m, &script, err);
}

static int packages_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	_cleanup_strv_ char **pkgs = package_list(s);
	return prov_packages_install(s, t, pkgs, imgf_cfg_bool(s->cfg, "update", true),
				     imgf_cfg_bool(s->cfg, "clean", true),
				     imgf_cfg_str(s->cfg, "manager", "auto"), err);
}

const struct imgf_provisioner_ops imgf_packages_provisioner = {
	.name = "packages",
	.keys = packages_keys,
	.validate = packages_validate,
	.run = packages_run,
};
