/* shell: run inline commands or a host script in the target, like Packer's shell provisioner. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "provisioner.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

static const struct imgf_key shell_keys[] = {
	{"inline", IMGF_KEY_STRING_LIST, false}, /* commands, run in one `sh -e` */
	{"script", IMGF_KEY_HOST_PATH, false},	 /* a host script file */
	{"env", IMGF_KEY_STRING_LIST, false},	 /* K=V */
	{NULL, 0, false},
};

static int shell_validate(struct imgf_step *s, struct imgf_error **err)
{
	bool has_inline = json_object_get(s->cfg, "inline") != NULL;
	const char *script = imgf_cfg_str(s->cfg, "script", NULL);
	if (has_inline == (script != NULL))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "give exactly one of 'inline' or 'script'");
	if (script && access(script, R_OK) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "script: '%s' cannot be read", script);
	_cleanup_strv_ char **env = imgf_cfg_strv(s->cfg, "env");
	for (size_t i = 0; env[i]; i++)
		if (!strchr(env[i], '=') || env[i][0] == '=')
			return imgf_error_set(err, IMGF_EXIT_FAIL, "env: '%s' is not NAME=VALUE",
					      env[i]);
	return 0;
}

static int shell_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	_cleanup_strv_ char **env = imgf_cfg_strv(s->cfg, "env");
	const char *script = imgf_cfg_str(s->cfg, "script", NULL);
	if (!script) {
		_cleanup_strv_ char **lines = imgf_cfg_strv(s->cfg, "inline");
		struct strbuf sb = STRBUF_INIT;
		for (size_t i = 0; lines[i]; i++)
			strbuf_addf(&sb, "%s\n", lines[i]);
		int r = imgf_target_sh(t, s->label, sb.buf, env, err);
		strbuf_release(&sb);
		return r;
	}
	_cleanup_free_ char *dest = xasprintf("/tmp/imgforge-script-%zu", s->index);
	if (imgf_target_put_file(t, script, dest, 0755, err) < 0)
		return -1;
	char *argv[] = {"/bin/sh", "-e", dest, NULL};
	int r = imgf_target_run(t, s->label, argv, env, err);
	char *rm[] = {"rm", "-f", dest, NULL};
	struct imgf_error *e2 = NULL;
	imgf_target_run(t, s->label, rm, NULL, &e2);
	imgf_error_free(e2);
	return r;
}

const struct imgf_provisioner_ops imgf_shell_provisioner = {
	.name = "shell",
	.keys = shell_keys,
	.validate = shell_validate,
	.run = shell_run,
};
