/* What the Kubernetes sources (kubesrc-*.c) and kubesrc.c share, below both. */
#include <limits.h>
#include <unistd.h>

#include "build.h"
#include "config.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "kubesrc-internal.h"
#include "kubesrc.h"
#include "log.h"
#include "provisioner.h"
#include "util.h"

const char *kubesrc_arch(const struct imgf_step *s)
{
	const char *a = imgf_cfg_str(s->cfg, "arch", NULL);
	if (!a)
		a = s->build->contract->arch;
	return a && *a ? a : "amd64";
}

bool kubesrc_is_url(const char *s)
{
	return str_has_prefix(s, "http://") || str_has_prefix(s, "https://") ||
	       str_has_prefix(s, "file://");
}

char *kubesrc_abs_path(const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(p);
	return path_join(cwd, p);
}

int kubesrc_record_local(struct imgf_step *s, const char *name, const char *path,
			 struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	/* The server tarball is read by both the kubernetes and the images step: hashed once. */
	if (imgf_digest_file_once(path, IMGF_SHA256, hex, err) < 0)
		return imgf_error_prefix(err, "%s", name);
	log_info("%s: %s: local file '%s' (no upstream checksum), sha256 %s", s->label, name, path,
		 hex);
	imgf_build_record_local_input(s->build, name, path, hex);
	return 0;
}
