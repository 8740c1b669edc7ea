/*
 * The docker builder's step cache: the state after each step committed as an untagged image
 * labelled with its key, the build going on in a fresh container from it; cached images
 * checked, dropped, reused, and loaded from another machine's archive. The builder's ops are
 * in docker.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "build.h"
#include "builder.h"
#include "config.h"
#include "contract.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"
#include "builders/docker-internal.h"

#define CACHE_KEY_LABEL "io.imgforge.cache.key"

/* Whether the base image is at hand as the build will use it: present, for the build's arch,
 * and not to be pulled again (pull 'always'). */
static int base_at_hand(struct imgf_build *b, struct docker *d, bool *yes, struct imgf_error **err)
{
	*yes = false;
	if (!strcmp(imgf_cfg_str(b->builder_cfg, "pull", "missing"), "always"))
		return 0;
	json_t *info = NULL;
	long st = 0;
	_cleanup_free_ char *q = imgf_http_escaped(imgf_cfg_str(b->builder_cfg, "image", ""));
	if (imgf_docker_json(d, "GET", NULL, &info, &st, err, "/images/%s/json", q) < 0)
		return -1;
	const char *arch = b->contract->arch;
	const char *base_arch = json_string_value(json_object_get(info, "Architecture"));
	*yes = st == 200 && (!arch || !base_arch || !strcmp(arch, base_arch));
	json_decref(info);
	return 0;
}

static int docker_cache_base(struct imgf_build *b, bool pull, char **digest,
			     struct imgf_error **err)
{
	struct docker *d;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	bool yes = true;
	int r = pull ? 0 : base_at_hand(b, d, &yes, err);
	if (r == 0 && yes) {
		r = imgf_docker_base_image(b, d, &info, err);
		if (r == 0)
			*digest = xstrdup(json_string_value(json_object_get(info, "Id")) ?: "");
	}
	json_decref(info);
	imgf_docker_free(d);
	return r;
}

/* An image's inspect reply, or NULL (and 0) when the engine has no such image. */
static int inspect_image(struct docker *d, const char *id, json_t **out, struct imgf_error **err)
{
	long st = 0;
	_cleanup_free_ char *q = imgf_http_escaped(id);
	*out = NULL;
	if (imgf_docker_json(d, "GET", NULL, out, &st, err, "/images/%s/json", q) < 0)
		return -1;
	if (st == 404)
		return 0;
	if (st != 200) {
		json_decref(*out);
		*out = NULL;
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "inspect image '%s': docker engine answered %ld", id, st);
	}
	return 0;
}

static int64_t image_size(struct docker *d, const char *id)
{
	json_t *info = NULL;
	struct imgf_error *e = NULL;
	int64_t size = 0;
	if (inspect_image(d, id, &info, &e) == 0 && info)
		size = json_integer_value(json_object_get(info, "Size"));
	imgf_error_free(e);
	json_decref(info);
	return size;
}

/* The build goes on in a fresh container from `image`; the old container goes. */
static int continue_from(struct imgf_build *b, struct docker_target *dt, const char *image,
			 struct imgf_error **err)
{
	_cleanup_free_ char *cid = NULL, *name = NULL;
	if (imgf_docker_create_container(b, dt->d, image, &cid, &name, err) < 0)
		return -1;
	imgf_docker_remove_container(dt->d, dt->id);
	free(dt->id);
	free(dt->name);
	free(dt->t.name);
	dt->id = STEAL_POINTER(&cid);
	dt->name = STEAL_POINTER(&name);
	dt->t.name = xasprintf("container '%s'", dt->name);
	imgf_event("target",
		   json_pack("{s:s,s:s,s:s}", "builder", "docker", "container", dt->name, "id",
			     dt->id),
		   NULL);
	if (imgf_docker_json(dt->d, "POST", NULL, NULL, NULL, err, "/containers/%s/start", dt->id) <
	    0)
		return imgf_error_prefix(err, "start build container '%s'", dt->name);
	return 0;
}

/*
 * The state after a step as an untagged image labelled with its key; the next step runs in
 * a fresh container from it, so each cached image adds only its own step's layer. After the
 * last step too: an export of files in the container's own layer is not that of the same
 * files in image layers (fuse-overlayfs here: kind-node's layer 261.7 MiB against 265.4 MiB,
 * the same names; hard links, it seems), so the squash exports a container whose files are
 * all in image layers, as a build that starts from the cached last step does: one image ID.
 */
static int docker_cache_save(struct imgf_build *b, struct imgf_target *t, const char *key,
			     const char *step, char **id, int64_t *size, struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	json_t *config =
		json_pack("{s:{s:s,s:s,s:s}}", "Labels", CACHE_KEY_LABEL, key,
			  "io.imgforge.cache.step", step, "io.imgforge.cache.image", b->def->name);
	_cleanup_free_ char *from = NULL;
	json_t *old = NULL;
	if (imgf_docker_json(dt->d, "GET", NULL, &old, NULL, err, "/containers/%s/json", dt->id) <
	    0) {
		json_decref(config);
		return -1;
	}
	from = xstrdup(json_string_value(json_object_get(old, "Image")) ?: "");
	json_decref(old);
	_cleanup_free_ char *img = NULL;
	int r = imgf_docker_engine_commit(dt, config, NULL, &img, err);
	json_decref(config);
	if (r < 0 || continue_from(b, dt, img, err) < 0)
		return -1;
	*size = image_size(dt->d, img) - image_size(dt->d, from);
	if (*size < 0)
		*size = 0;
	*id = STEAL_POINTER(&img);
	return 0;
}

/* The image a twin build cached for the same step: the build goes on in a container from
 * it, its own container (and what the step did in it) goes. */
static int docker_cache_adopt(struct imgf_build *b, struct imgf_target *t, const char *id,
			      struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	if (continue_from(b, dt, id, err) < 0)
		return -1;
	log_info("build container '%s' goes on from the cached image %.19s", dt->name, id);
	return 0;
}

static int docker_cache_check(struct imgf_build *b, const char *key, const char *id, bool final,
			      struct imgf_error **err)
{
	(void)b;
	struct docker *d;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	int r = inspect_image(d, id, &info, err);
	imgf_docker_free(d);
	if (r < 0 || !info)
		return r;
	const char *got = json_string_value(json_object_get(info, "Id"));
	const char *label = json_string_value(json_object_get(
		json_object_get(json_object_get(info, "Config"), "Labels"), CACHE_KEY_LABEL));
	/* A step's image must say which key it holds; the artifact is the ID it was. */
	bool ok = got && !strcmp(got, id) && (final || (label && !strcmp(label, key)));
	json_decref(info);
	return ok ? 1 : 0;
}

static int docker_cache_drop(const char *id, bool final, struct imgf_error **err)
{
	if (final)
		return 0; /* the artifact is the user's image: only its record goes */
	struct docker *d;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	int r = inspect_image(d, id, &info, err);
	/* Only a step's image goes, never one the record merely names (a damaged record could
	 * name any image); its untagged parents that nothing else uses go with it. */
	json_t *labels = json_object_get(json_object_get(info, "Config"), "Labels");
	if (r == 0 && info && json_object_get(labels, CACHE_KEY_LABEL)) {
		long st = 0;
		_cleanup_free_ char *q = imgf_http_escaped(id);
		r = imgf_docker_json(d, "DELETE", NULL, NULL, &st, err, "/images/%s", q);
		if (r == 0 && st >= 300 && st != 404)
			r = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"remove image '%.19s': docker engine answered %ld%s", id, st,
				st == 409 ? " (an image or container still uses it)" : "");
	}
	json_decref(info);
	imgf_docker_free(d);
	return r;
}

static int docker_cache_reuse(struct imgf_build *b, const char *id, struct imgf_artifact *out,
			      struct imgf_error **err)
{
	const char *tag = imgf_cfg_str(b->builder_cfg, "tag", NULL);
	struct docker *d;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	json_t *info = NULL;
	if (inspect_image(d, id, &info, err) < 0) {
		imgf_docker_free(d);
		return -1;
	}
	if (!json_object_get(info, "Id")) {
		json_decref(info);
		imgf_docker_free(d);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "cached image '%.19s' is gone", id);
	}
	_cleanup_free_ char *platform = imgf_docker_platform_of(info);
	json_decref(info);
	if (tag) {
		_cleanup_free_ char *repo = NULL, *tg = NULL;
		imgf_docker_split_tag(tag, &repo, &tg);
		_cleanup_free_ char *qi = imgf_http_escaped(id);
		_cleanup_free_ char *qr = imgf_http_escaped(repo);
		_cleanup_free_ char *qt = imgf_http_escaped(tg);
		int r = imgf_docker_json(d, "POST", NULL, NULL, NULL, err,
					 "/images/%s/tag?repo=%s&tag=%s", qi, qr, qt);
		if (r < 0) {
			imgf_docker_free(d);
			return imgf_error_prefix(err, "tag '%s'", tag);
		}
	}
	imgf_docker_free(d);
	out->id = xstrdup(id);
	out->files = xcalloc(1, sizeof(char *));
	out->extra = json_pack("{s:s?,s:s}", "image", tag, "platform", platform);
	return 0;
}

static size_t file_read(void *opaque, char *buf, size_t len)
{
	FILE *f = opaque;
	size_t n = fread(buf, 1, len, f);
	return n == 0 && ferror(f) ? CURL_READFUNC_ABORT : n;
}

/* A step's image from another machine (src/regcache.h): the archive streamed to
 * POST /images/load, then the engine must know it as `id`. */
static int docker_cache_load(struct imgf_build *b, const char *archive, const char *id,
			     struct imgf_error **err)
{
	(void)b;
	_cleanup_fclose_ FILE *f = fopen(archive, "rb");
	if (!f)
		return imgf_error_errno(err, errno, "open '%s'", archive);
	struct docker *d;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	struct strbuf errs = STRBUF_INIT;
	struct docker_call c = {
		.method = "POST",
		.on_read = file_read,
		.read_opaque = f,
		.on_data = imgf_docker_pull_progress,
		.opaque = &errs,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xstrdup("/images/load?quiet=1");
	int r = imgf_docker_do(d, &c, err);
	if (r == 0 && (c.status >= 300 || errs.len))
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "docker engine answered %ld: %s", c.status,
				   errs.len ? errs.buf : "no message");
	imgf_docker_call_release(&c);
	strbuf_release(&errs);
	if (r == 0)
		r = imgf_docker_check_loaded(d, id, err);
	imgf_docker_free(d);
	return r < 0 ? imgf_error_prefix(err, "load image '%.19s'", id) : 0;
}

const struct imgf_builder_cache_ops imgf_docker_cache = {
	.base = docker_cache_base,
	.save = docker_cache_save,
	.adopt = docker_cache_adopt,
	.check = docker_cache_check,
	.drop = docker_cache_drop,
	.reuse = docker_cache_reuse,
	.load = docker_cache_load,
};
