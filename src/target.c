#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "error.h"
#include "log.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

static int exec_checked(struct imgf_target *t, struct imgf_exec *x, const char *what,
			struct imgf_error **err)
{
	int status = -1;
	if (t->ops->exec(t, x, &status, err) < 0)
		return imgf_error_prefix(err, "run '%s' in %s", what, t->name);
	if (status != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' exited with status %d in %s", what,
				      status, t->name);
	return 0;
}

int imgf_target_run(struct imgf_target *t, const char *label, char *const *argv, char *const *env,
		    struct imgf_error **err)
{
	struct imgf_exec x = {.argv = argv, .env = env, .label = label};
	struct strbuf what = STRBUF_INIT;
	for (size_t i = 0; argv[i] && i < 4; i++)
		strbuf_addf(&what, "%s%s", i ? " " : "", argv[i]);
	int r = exec_checked(t, &x, what.buf, err);
	strbuf_release(&what);
	return r;
}

int imgf_target_sh(struct imgf_target *t, const char *label, const char *script, char *const *env,
		   struct imgf_error **err)
{
	char *argv[] = {"/bin/sh", "-ec", (char *)script, NULL};
	struct imgf_exec x = {.argv = argv, .env = env, .label = label};
	/* Name the script by its first line in errors. */
	const char *nl = strchr(script, '\n');
	_cleanup_free_ char *first = xstrndup(script, nl ? (size_t)(nl - script) : strlen(script));
	if (strlen(first) > 60)
		first[60] = '\0';
	return exec_checked(t, &x, first, err);
}

struct capture {
	struct strbuf out;
	const char *label;
};

static void capture_output(void *opaque, int stream, const char *data, size_t len)
{
	struct capture *c = opaque;
	if (stream == 1)
		strbuf_add(&c->out, data, len);
	else
		log_output(c->label, stream, data, len);
}

int imgf_target_capture(struct imgf_target *t, const char *label, char *const *argv, char **out,
			struct imgf_error **err)
{
	struct capture c = {.out = STRBUF_INIT, .label = label};
	c.out.max = 1u << 20;
	struct imgf_exec x = {
		.argv = argv, .label = label, .on_output = capture_output, .opaque = &c};
	if (exec_checked(t, &x, argv[0], err) < 0) {
		strbuf_release(&c.out);
		return -1;
	}
	if (c.out.overflow) {
		strbuf_release(&c.out);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': output larger than 1 MiB",
				      argv[0]);
	}
	*out = strbuf_detach(&c.out, NULL);
	return 0;
}

char *imgf_target_stage_path(struct imgf_target *t, const char *name)
{
	static unsigned seq;
	return xasprintf("%s/%u-%s.tar", t->stage_dir, ++seq, name);
}

int imgf_target_put_root_tar(struct imgf_target *t, const char *tar_path, struct imgf_error **err)
{
	if (t->ops->put_tar(t, tar_path, "/", err) < 0)
		return imgf_error_prefix(err, "copy into %s", t->name);
	return 0;
}

static int put_one(struct imgf_target *t, const char *path, const void *data, size_t len,
		   const char *host_path, mode_t mode, struct imgf_error **err)
{
	if (path[0] != '/')
		return imgf_error_set(err, IMGF_EXIT_FAIL, "target path '%s' must be absolute",
				      path);
	_cleanup_free_ char *tar = imgf_target_stage_path(t, path_basename(path));
	struct imgf_tar *w = imgf_tar_open(tar, err);
	if (!w)
		return -1;
	int r = host_path ? imgf_tar_add_file(w, host_path, path + 1, mode, 0, 0, err)
			  : imgf_tar_add_data(w, data, len, path + 1, mode, 0, 0, err);
	if (r == 0)
		r = imgf_tar_close(w, err);
	imgf_tar_free(w);
	if (r == 0)
		r = imgf_target_put_root_tar(t, tar, err);
	unlink(tar);
	if (r < 0)
		return imgf_error_prefix(err, "write '%s'", path);
	return 0;
}

int imgf_target_put_data(struct imgf_target *t, const char *path, const void *data, size_t len,
			 mode_t mode, struct imgf_error **err)
{
	return put_one(t, path, data, len, NULL, mode, err);
}

int imgf_target_put_file(struct imgf_target *t, const char *host_path, const char *path,
			 mode_t mode, struct imgf_error **err)
{
	return put_one(t, path, NULL, 0, host_path, mode, err);
}
