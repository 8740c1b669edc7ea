/*
 * file: copy a host file or directory, or inline content, into the target; or, with
 * direction "download", a file or directory of the target into a host directory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "common.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "provisioner.h"
#include "target.h"
#include "util.h"

static const struct imgf_key file_keys[] = {
	{"source", IMGF_KEY_HOST_PATH, false},	/* host file or directory */
	{"content", IMGF_KEY_STRING, false},	/* or the file's content inline */
	{"destination", IMGF_KEY_STRING, true}, /* absolute path in the target */
	{"mode", IMGF_KEY_STRING, false},	/* octal, e.g. "0644" */
	{"direction", IMGF_KEY_STRING, false},	/* upload (default) or download */
	{NULL, 0, false},
};

static int parse_mode(const char *s, mode_t *mode)
{
	char *end;
	errno = 0;
	long m = strtol(s, &end, 8);
	if (!*s || *end || errno || m < 0 || m > 07777)
		return -1;
	*mode = (mode_t)m;
	return 0;
}

static bool is_download(const struct imgf_step *s)
{
	return !strcmp(imgf_cfg_str(s->cfg, "direction", "upload"), "download");
}

/* With direction download, `source` is a path in the target. */
static bool file_reads_host(const struct imgf_step *s, const char *key)
{
	return strcmp(key, "source") != 0 || !is_download(s);
}

static int file_validate(struct imgf_step *s, struct imgf_error **err)
{
	const char *dir = imgf_cfg_str(s->cfg, "direction", "upload");
	if (strcmp(dir, "upload") && strcmp(dir, "download"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "direction: '%s' is not one of 'upload', 'download'", dir);
	if (is_download(s)) {
		const char *src = imgf_cfg_str(s->cfg, "source", "");
		if (src[0] != '/' || imgf_cfg_str(s->cfg, "content", NULL) ||
		    imgf_cfg_str(s->cfg, "mode", NULL))
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"a download needs an absolute 'source' in the target "
				"and a host 'destination' directory, and no 'content' "
				"or 'mode'");
		return 0;
	}
	const char *src = imgf_cfg_str(s->cfg, "source", NULL);
	const char *content = imgf_cfg_str(s->cfg, "content", NULL);
	const char *dest = imgf_cfg_str(s->cfg, "destination", "");
	if ((src != NULL) == (content != NULL))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "give exactly one of 'source' or 'content'");
	if (dest[0] != '/')
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "destination: '%s' is not an absolute path", dest);
	struct stat st;
	if (src && stat(src, &st) < 0)
		return imgf_error_errno(err, errno, "source: '%s'", src);
	mode_t m;
	const char *mode = imgf_cfg_str(s->cfg, "mode", NULL);
	if (mode && parse_mode(mode, &m) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "mode: '%s' is not an octal mode", mode);
	return 0;
}

/* The target's file or tree, through a tar checked member by member, into a host directory. */
static int file_download(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	const char *src = imgf_cfg_str(s->cfg, "source", "/");
	const char *dest = imgf_cfg_str(s->cfg, "destination", ".");
	_cleanup_free_ char *tar = imgf_target_stage_path(t, "download");
	if (t->ops->get_tar(t, src, tar, err) < 0)
		return imgf_error_prefix(err, "download '%s' from %s", src, t->name);
	int r = mkdir_p(dest, 0755, err);
	if (r == 0)
		r = imgf_archive_extract(tar, dest, err);
	unlink(tar);
	if (r == 0)
		log_info("%s: downloaded '%s' into '%s'", s->label, src, dest);
	return r;
}

static int file_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	if (is_download(s))
		return file_download(s, t, err);
	const char *src = imgf_cfg_str(s->cfg, "source", NULL);
	const char *content = imgf_cfg_str(s->cfg, "content", NULL);
	const char *dest = imgf_cfg_str(s->cfg, "destination", "/");
	mode_t mode = 0;
	const char *ms = imgf_cfg_str(s->cfg, "mode", NULL);
	if (ms)
		parse_mode(ms, &mode);
	if (content)
		return imgf_target_put_data(t, dest, content, strlen(content), mode ? mode : 0644,
					    err);
	struct stat st;
	if (stat(src, &st) < 0)
		return imgf_error_errno(err, errno, "source: '%s'", src);
	if (!S_ISDIR(st.st_mode))
		return imgf_target_put_file(t, src, dest, mode, err);
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w)
		return -1;
	return prov_tar_put(w, path, t, imgf_tar_add_tree(w, src, dest + 1, err), err);
}

const struct imgf_provisioner_ops imgf_file_provisioner = {
	.name = "file",
	.keys = file_keys,
	.validate = file_validate,
	.reads_host = file_reads_host,
	.run = file_run,
};
