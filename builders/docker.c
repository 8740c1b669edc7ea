/*
 * The docker builder: a build container on a Docker Engine, reached over its HTTP API with
 * libcurl (unix socket, or tcp:// with TLS client certificates), committed into an image.
 *
 * This file holds the builder's options and their validation, the prepare hook, the commit and
 * the ops table; the Engine API client is in docker-engine.c, the base image, the build
 * container and images in docker-container.c, the target ops in docker-target.c, the squashed
 * image in docker-squash.c, the step cache in docker-cache.c (what they share:
 * docker-internal.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "build.h"
#include "builder.h"
#include "contract.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "registry.h"
#include "stepcache.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"
#include "builders/docker-internal.h"

static const struct imgf_key docker_keys[] = {
	{"image", IMGF_KEY_STRING, true}, /* the base image */
	{"pull", IMGF_KEY_STRING, false}, /* missing (default), always, never */
	{"tag", IMGF_KEY_STRING, false},  /* repo:tag of the result */
	{"entrypoint", IMGF_KEY_STRING_LIST, false},
	{"cmd", IMGF_KEY_STRING_LIST, false},
	{"env", IMGF_KEY_STRING_LIST, false},
	{"stop_signal", IMGF_KEY_STRING, false},
	{"labels", IMGF_KEY_OBJECT, false},
	{"workdir", IMGF_KEY_STRING, false},
	{"cap_add", IMGF_KEY_STRING_LIST, false},
	{"security_opt", IMGF_KEY_STRING_LIST, false},
	{"network", IMGF_KEY_STRING, false},
	{"squash", IMGF_KEY_BOOL, false}, /* one reproducible layer (default true) */
	{NULL, 0, false},
};

static int docker_validate(struct imgf_build *b, struct imgf_error **err)
{
	/* The image goes into Engine API paths: it must be a reference (or an image ID, which
	 * parses as one), nothing that could name another path. */
	struct imgf_image_ref ref;
	if (imgf_image_ref_parse(imgf_cfg_str(b->builder_cfg, "image", ""), &ref, err) < 0)
		return imgf_error_prefix(err, "image");
	imgf_image_ref_release(&ref);
	const char *pull = imgf_cfg_str(b->builder_cfg, "pull", "missing");
	if (strcmp(pull, "missing") && strcmp(pull, "always") && strcmp(pull, "never"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "pull: '%s' is not one of 'missing', 'always', 'never'",
				      pull);
	const char *tag = imgf_cfg_str(b->builder_cfg, "tag", NULL);
	if (tag && (!*tag || strchr(tag, ' ') || str_has_suffix(tag, ":")))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tag: '%s' is not a valid image name",
				      tag);
	json_t *labels = json_object_get(b->builder_cfg, "labels");
	const char *k;
	json_t *v;
	json_object_foreach(labels, k, v)
	{
		if (!json_is_string(v))
			return imgf_error_set(err, IMGF_EXIT_FAIL, "labels.%s: expected a string",
					      k);
	}
	return 0;
}

static int docker_prepare(struct imgf_build *b, struct imgf_target **out, struct imgf_error **err)
{
	struct docker *d;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	const char *image = imgf_cfg_str(b->builder_cfg, "image", "");
	json_t *base = NULL;
	if (imgf_docker_base_image(b, d, &base, err) < 0) {
		imgf_docker_free(d);
		return -1;
	}
	/* From the deepest cached step when there is one; the commit's defaults are still the
	 * base image's config. */
	const char *from = imgf_stepcache_from(b);
	_cleanup_free_ char *cid = NULL, *name = NULL;
	if (imgf_docker_create_container(b, d, from ? from : image, &cid, &name, err) < 0) {
		imgf_docker_free(d);
		json_decref(base);
		return -1;
	}
	struct docker_target *dt = xcalloc(1, sizeof(*dt));
	dt->d = d;
	dt->id = STEAL_POINTER(&cid);
	dt->name = xstrdup(name);
	dt->t.ops = &imgf_docker_target_ops;
	dt->t.priv = dt;
	dt->t.name = xasprintf("container '%s'", name);
	dt->base_config = json_incref(json_object_get(base, "Config"));
	dt->base_platform = json_pack(
		"{s:O?,s:O?,s:O?}", "Architecture", json_object_get(base, "Architecture"), "Os",
		json_object_get(base, "Os"), "Variant", json_object_get(base, "Variant"));
	json_decref(base);
	*out = &dt->t;
	imgf_event("target",
		   json_pack("{s:s,s:s,s:s}", "builder", "docker", "container", name, "id", dt->id),
		   NULL);
	if (from)
		log_info("build container '%s' from the cached image %.19s ('%s' and %zu step%s)",
			 name, from, image, b->cache->hit, b->cache->hit == 1 ? "" : "s");
	else
		log_info("build container '%s' from '%s'", name, image);
	if (imgf_docker_json(d, "POST", NULL, NULL, NULL, err, "/containers/%s/start", dt->id) < 0)
		return imgf_error_prefix(err, "start build container '%s'", name);
	return 0;
}

/* The image's config as the commit API takes it: what the image definition sets, with the
 * base image's entrypoint and cmd where it sets neither. */
static json_t *commit_config(struct imgf_build *b, struct docker_target *dt)
{
	json_t *labels = json_deep_copy(b->labels);
	json_t *user_labels = json_object_get(b->builder_cfg, "labels");
	if (user_labels)
		json_object_update(labels, user_labels);
	json_t *config = json_pack("{s:o,s:o}", "Labels", labels, "Env",
				   imgf_docker_cfg_list(b, "env", NULL));
	/* The build container's own entrypoint (sleep) must not leak into the image: without
	 * an entrypoint or cmd in the config, the base image's are kept. */
	json_t *ep = json_object_get(b->builder_cfg, "entrypoint");
	json_t *cmd = json_object_get(b->builder_cfg, "cmd");
	json_t *base_ep = json_object_get(dt->base_config, "Entrypoint");
	json_t *base_cmd = json_object_get(dt->base_config, "Cmd");
	json_object_set_new(config, "Entrypoint",
			    ep ? imgf_docker_cfg_list(b, "entrypoint", NULL)
			       : (json_is_array(base_ep) ? json_deep_copy(base_ep) : json_array()));
	json_object_set_new(
		config, "Cmd",
		cmd ? imgf_docker_cfg_list(b, "cmd", NULL)
		    : (!ep && json_is_array(base_cmd) ? json_deep_copy(base_cmd) : json_null()));
	if (imgf_cfg_str(b->builder_cfg, "stop_signal", NULL))
		json_object_set_new(config, "StopSignal",
				    json_string(imgf_cfg_str(b->builder_cfg, "stop_signal", NULL)));
	if (imgf_cfg_str(b->builder_cfg, "workdir", NULL))
		json_object_set_new(config, "WorkingDir",
				    json_string(imgf_cfg_str(b->builder_cfg, "workdir", NULL)));
	return config;
}

static int docker_commit(struct imgf_build *b, struct imgf_target *t, struct imgf_artifact *out,
			 struct imgf_error **err)
{
	struct docker_target *dt = (struct docker_target *)t;
	json_t *config = commit_config(b, dt);
	const char *tag = imgf_cfg_str(b->builder_cfg, "tag", NULL);
	_cleanup_free_ char *id = NULL;
	int r = imgf_cfg_bool(b->builder_cfg, "squash", true)
			? imgf_docker_squash_commit(b, dt, config, tag, &id, err)
			: imgf_docker_engine_commit(dt, config, tag, &id, err);
	json_decref(config);
	if (r < 0)
		return imgf_error_prefix(err, "commit %s", t->name);
	out->id = STEAL_POINTER(&id);
	out->files = xcalloc(1, sizeof(char *));
	/* The image's platform is its base's (a foreign one ran through binfmt_misc). */
	_cleanup_free_ char *platform = imgf_docker_platform_of(dt->base_platform);
	out->extra = json_pack("{s:s?,s:s}", "image", tag, "platform", platform);
	log_info("committed %s as %s%s%s", t->name, out->id, tag ? " " : "", tag ? tag : "");
	return 0;
}

static void docker_cleanup(struct imgf_build *b, struct imgf_target *t, bool keep)
{
	(void)b;
	struct docker_target *dt = (struct docker_target *)t;
	if (keep) {
		log_warn("keeping build container '%s' (--on-error=abort); remove it with the "
			 "Engine API or 'docker rm -f %s'",
			 dt->name, dt->name);
		imgf_event("kept", json_pack("{s:s,s:s}", "container", dt->name, "id", dt->id),
			   NULL);
	} else if (dt->id && *dt->id) {
		imgf_docker_remove_container(dt->d, dt->id);
	}
	imgf_docker_free(dt->d);
	json_decref(dt->base_config);
	json_decref(dt->base_platform);
	free(dt->id);
	free(dt->name);
	free(dt->t.name);
	free(dt);
}

/* The image as GET /images/{id}/get streams it (what `docker save` writes). */
static int docker_image_save(struct imgf_build *b, const char *id, const char *out_tar,
			     struct imgf_error **err)
{
	struct docker *d = NULL;
	if (imgf_docker_connect(&d, err) < 0)
		return -1;
	FILE *f = fopen(out_tar, "wb");
	if (!f) {
		imgf_docker_free(d);
		return imgf_error_errno(err, errno, "create '%s'", out_tar);
	}
	_cleanup_free_ char *q = imgf_http_escaped(id);
	struct docker_call c = {
		.method = "GET",
		.on_data = imgf_docker_file_sink,
		.opaque = f,
		.interruptible = true,
		.reply = STRBUF_INIT,
	};
	c.path = xasprintf("/images/%s/get", q);
	int r = imgf_docker_do(d, &c, err);
	if (r == 0 && c.status >= 300)
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "save image '%s': docker engine answered %ld", id, c.status);
	if (fclose(f) != 0 && r == 0)
		r = imgf_error_errno(err, errno, "write '%s'", out_tar);
	imgf_docker_call_release(&c);
	imgf_docker_free(d);
	if (r < 0)
		unlink(out_tar);
	return r;
}

const struct imgf_builder_ops imgf_docker_builder = {
	.name = "docker",
	.keys = docker_keys,
	.validate = docker_validate,
	.prepare = docker_prepare,
	.commit = docker_commit,
	.cleanup = docker_cleanup,
	.cache = &imgf_docker_cache,
	.image_save = docker_image_save,
};
