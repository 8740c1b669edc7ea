/*
 * The docker builder's squashed image: the build container's filesystem exported (paused),
 * rewritten as one reproducible layer (src/oci/squash.h) and loaded into the engine with a config
 * of its own, so the same build gives the same image ID. The builder's ops are in docker.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "build.h"
#include "contract.h"
#include "dockerengine.h"
#include "error.h"
#include "log.h"
#include "squash.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"
#include "builders/docker-internal.h"

/* "repo:tag" with the tag spelled out, as an image archive's RepoTags wants it. */
static char *full_tag(const char *tag)
{
	_cleanup_free_ char *repo = NULL, *tg = NULL;
	imgf_docker_split_tag(tag, &repo, &tg);
	return xasprintf("%s:%s", repo, tg);
}

/* What the engine adds to every container (its init layer), not what the build made; the
 * engine mounts its own /etc/hosts, /etc/hostname and /etc/resolv.conf over the (empty)
 * files it leaves there. */
static const char *const squash_drop[] = {".dockerenv", "dev/console", NULL};

/* containerd's metadata: its pages and times differ between two builds of the same images */
static const char *const squash_bolt[] = {
	"var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db", NULL};

static char *env_key(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? xstrndup(kv, (size_t)(eq - kv)) : xstrdup(kv);
}

static bool env_has(json_t *env, const char *key)
{
	size_t i;
	json_t *v;
	json_array_foreach(env, i, v)
	{
		_cleanup_free_ char *k = env_key(json_string_value(v) ?: "");
		if (!strcmp(k, key))
			return true;
	}
	return false;
}

static void env_merge(json_t *env, const char *kv)
{
	_cleanup_free_ char *k = env_key(kv);
	if (!env_has(env, k))
		json_array_append_new(env, json_string(kv));
}

/*
 * The commit API merges the build container's config into the image's; a squashed image is
 * written whole, so do the same here: the environment (the image definition's, then PATH
 * and the base image's other variables), and the base image's user, ports, volumes,
 * healthcheck and stop signal where the definition sets none.
 */
static json_t *squash_config(struct docker_target *dt, json_t *commit_cfg)
{
	json_t *c = json_deep_copy(commit_cfg);
	json_t *env = json_object_get(c, "Env");
	env_merge(env, DEFAULT_PATH);
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(dt->base_config, "Env"), i, v)
	{
		if (json_is_string(v))
			env_merge(env, json_string_value(v));
	}
	static const char *const inherited[] = {"User",	       "ExposedPorts", "Volumes",
						"Healthcheck", "StopSignal",   "OnBuild"};
	for (size_t k = 0; k < ARRAY_SIZE(inherited); k++) {
		json_t *own = json_object_get(c, inherited[k]);
		json_t *base = json_object_get(dt->base_config, inherited[k]);
		if ((!own || json_is_null(own)) && base && !json_is_null(base))
			json_object_set(c, inherited[k], base);
	}
	if (json_array_size(json_object_get(c, "Entrypoint")) == 0)
		json_object_set_new(c, "Entrypoint", json_null());
	return c;
}

static int export_container(struct docker_target *dt, const char *path, struct imgf_error **err)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return imgf_error_errno(err, errno, "create '%s'", path);
	struct docker_call c = {
		.method = "GET",
		.on_data = imgf_docker_file_sink,
		.opaque = f,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/containers/%s/export", dt->id);
	int r = imgf_docker_do(dt->d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "export: docker engine answered %ld",
				   c.status);
	if (fclose(f) != 0 && r == 0)
		r = imgf_error_errno(err, errno, "write '%s'", path);
	imgf_docker_call_release(&c);
	if (r < 0)
		imgf_error_prefix(err, "export to '%s'", path);
	return r;
}

struct load_source {
	struct imgf_image_archive *ia;
	struct imgf_error *err;
};

static size_t load_read(void *opaque, char *buf, size_t len)
{
	struct load_source *ls = opaque;
	ssize_t n = imgf_image_archive_read(ls->ia, buf, len, &ls->err);
	return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

static int load_image(struct docker *d, const char *config_json, const char *layer, const char *tag,
		      struct imgf_error **err)
{
	_cleanup_free_ char *rt = tag ? full_tag(tag) : NULL;
	struct load_source ls = {.ia = imgf_image_archive_open(config_json, layer, rt, err)};
	if (!ls.ia)
		return -1;
	struct strbuf errs = STRBUF_INIT;
	struct docker_call c = {
		.method = "POST",
		.on_read = load_read,
		.read_opaque = &ls,
		.on_data = imgf_docker_pull_progress,
		.opaque = &errs,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xstrdup("/images/load?quiet=1");
	struct imgf_error *call_err = NULL;
	int r = imgf_docker_do(d, &c, &call_err);
	if (ls.err) { /* the archive's own error says more than curl's "aborted" */
		imgf_error_free(call_err);
		*err = ls.err;
		r = -1;
	} else if (r < 0) {
		*err = call_err;
	} else if (c.status >= 300 || errs.len) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "docker engine answered %ld: %s", c.status,
				   errs.len ? errs.buf : "no message");
	}
	imgf_docker_call_release(&c);
	strbuf_release(&errs);
	imgf_image_archive_free(ls.ia);
	return r < 0 ? imgf_error_prefix(err, "load image") : 0;
}

int imgf_docker_load_image(const char *config_json, const char *layer, const char *tag,
			   const char *want_id, struct imgf_error **err)
{
	struct docker *d = NULL;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	int r = load_image(d, config_json, layer, tag, err);
	if (r == 0)
		r = imgf_docker_check_loaded(d, want_id, err);
	imgf_docker_free(d);
	return r;
}

/* Pause the container (as the commit API does) while its filesystem is exported. */
static int export_paused(struct docker_target *dt, const char *path, struct imgf_error **err)
{
	if (imgf_docker_json_freezing(dt->d, "POST", NULL, NULL, err, "/containers/%s/pause",
				      dt->id) < 0)
		return -1;
	int r = export_container(dt, path, err);
	struct imgf_error *e = NULL;
	if (imgf_docker_json(dt->d, "POST", NULL, NULL, NULL, &e, "/containers/%s/unpause",
			     dt->id) < 0) {
		if (r < 0) { /* the export's error is the one to report */
			imgf_error_free(e);
			return -1;
		}
		*err = e;
		return imgf_error_prefix(err, "unpause");
	}
	return r;
}

int imgf_docker_squash_commit(struct imgf_build *b, struct docker_target *dt, json_t *commit_cfg,
			      const char *tag, char **id, struct imgf_error **err)
{
	struct imgf_squash_opts o = {.drop = squash_drop, .bolt = squash_bolt};
	o.epoch = b->contract->epoch.value;
	const char *from = b->contract->epoch.from;
	_cleanup_free_ char *exp = imgf_target_stage_path(&dt->t, "export");
	_cleanup_free_ char *layer = imgf_target_stage_path(&dt->t, "layer");
	struct imgf_layer l;
	double t0 = imgf_now();
	int r = export_paused(dt, exp, err);
	if (r == 0) {
		imgf_build_phase(b, "export", imgf_now() - t0);
		t0 = imgf_now();
		r = imgf_squash_layer(exp, layer, &o, &l, err);
	}
	unlink(exp);
	if (r < 0)
		return imgf_error_prefix(err, "squash");
	imgf_build_phase(b, "squash", imgf_now() - t0);
	log_info("squashed %s into one layer: %zu files, %.1f MiB, %s (mtimes clamped to %" PRId64
		 ", %s; %zu bolt database%s rewritten)",
		 dt->t.name, l.entries, (double)l.size / (1 << 20), l.diff_id, o.epoch, from,
		 l.rewritten, l.rewritten == 1 ? "" : "s");

	json_t *cc = squash_config(dt, commit_cfg);
	json_t *p = dt->base_platform;
	char want[IMGF_DIGEST_ID_MAX];
	_cleanup_free_ char *author = xasprintf("imgforge " IMGF_VERSION);
	_cleanup_free_ char *config = imgf_image_config(
		cc, json_string_value(json_object_get(p, "Architecture")) ?: "amd64",
		json_string_value(json_object_get(p, "Variant")),
		json_string_value(json_object_get(p, "Os")) ?: "linux", o.epoch, author, l.diff_id,
		want);
	json_decref(cc);
	t0 = imgf_now();
	r = load_image(dt->d, config, layer, tag, err);
	unlink(layer);
	if (r < 0)
		return -1;
	imgf_build_phase(b, "load", imgf_now() - t0);
	if (imgf_docker_check_loaded(dt->d, want, err) < 0)
		return -1;
	*id = xstrdup(want);
	return 0;
}
