/*
 * The docker builder's containers and images on the engine: the base image pulled (for the
 * build's arch) and recorded as an input, the build container created from it or from a
 * cached step's image and removed, a container committed by the engine, a loaded image
 * checked. What docker.c, docker-squash.c and docker-cache.c build on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "build.h"
#include "config.h"
#include "contract.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"
#include "builders/docker-internal.h"

void imgf_docker_split_tag(const char *ref, char **repo, char **tag)
{
	const char *slash = strrchr(ref, '/');
	const char *colon = strrchr(ref, ':');
	if (colon && (!slash || colon > slash)) {
		*repo = xstrndup(ref, (size_t)(colon - ref));
		*tag = xstrdup(colon + 1);
	} else {
		*repo = xstrdup(ref);
		*tag = xstrdup("latest");
	}
}

json_t *imgf_docker_cfg_list(struct imgf_build *b, const char *key, const char *def)
{
	json_t *v = json_object_get(b->builder_cfg, key);
	if (json_is_string(v))
		return json_pack("[s]", json_string_value(v));
	if (json_is_array(v))
		return json_deep_copy(v);
	return def ? json_pack("[s]", def) : json_array();
}

/* Make sure the base image is present (pulling per `pull`, for linux/ARCH); *info gets its
 * inspect reply. */
static int ensure_image(struct docker *d, const char *image, const char *pull, const char *arch,
			json_t **info_out, struct imgf_error **err)
{
	json_t *info = NULL;
	long st = 0;
	_cleanup_free_ char *q = imgf_http_escaped(image);
	if (strcmp(pull, "always") != 0) {
		if (imgf_docker_json(d, "GET", NULL, &info, &st, err, "/images/%s/json", q) < 0)
			return -1;
		if (st == 200) {
			*info_out = info;
			return 0;
		}
		json_decref(info);
		if (!strcmp(pull, "never"))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "base image '%s' is not present and pull is 'never'",
					      image);
	}
	log_info("pulling base image '%s'", image);
	struct strbuf errs = STRBUF_INIT;
	struct docker_call c = {.method = "POST",
				.on_data = imgf_docker_pull_progress,
				.opaque = &errs,
				.interruptible = true,
				.reply = STRBUF_INIT};
	_cleanup_free_ char *platform = arch ? imgf_http_escaped(arch) : NULL;
	c.path = platform ? xasprintf("/images/create?fromImage=%s&platform=linux%%2F%s", q,
				      platform)
			  : xasprintf("/images/create?fromImage=%s", q);
	int r = imgf_docker_do(d, &c, err);
	if (r == 0 && (c.status >= 300 || errs.len))
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "pull base image '%s': %s", image,
				   errs.len ? errs.buf : "the engine refused");
	imgf_docker_call_release(&c);
	strbuf_release(&errs);
	if (r < 0)
		return -1;
	if (imgf_docker_json(d, "GET", NULL, &info, NULL, err, "/images/%s/json", q) < 0)
		return imgf_error_prefix(err, "pull base image '%s'", image);
	*info_out = info;
	return 0;
}

int imgf_docker_base_image(struct imgf_build *b, struct docker *d, json_t **info,
			   struct imgf_error **err)
{
	const char *image = imgf_cfg_str(b->builder_cfg, "image", "");
	/* The base is for the build's arch: a foreign one runs through binfmt_misc. */
	const char *arch = b->contract->arch;
	if (ensure_image(d, image, imgf_cfg_str(b->builder_cfg, "pull", "missing"), arch, info,
			 err) < 0)
		return -1;
	const char *base_arch = json_string_value(json_object_get(*info, "Architecture"));
	if (arch && base_arch && strcmp(base_arch, arch)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "base image '%s' is linux/%s, the build is for linux/%s (the 'arch' "
			       "variable): give an image for %s",
			       image, base_arch, arch, arch);
		json_decref(*info); /* base_arch points into it */
		*info = NULL;
		return -1;
	}
	const char *base_id = json_string_value(json_object_get(*info, "Id"));
	base_id = base_id ? base_id : "";
	size_t i;
	json_t *in;
	json_array_foreach(b->inputs, i, in)
	{
		const char *name = json_string_value(json_object_get(in, "name"));
		if (name && !strcmp(name, "base-image"))
			return 0;
	}
	imgf_build_record_input(b, "base-image", image,
				str_has_prefix(base_id, "sha256:") ? base_id + 7 : base_id);
	return 0;
}

int imgf_docker_create_container(struct imgf_build *b, struct docker *d, const char *from,
				 char **id, char **name_out, struct imgf_error **err)
{
	char rnd[9];
	snprintf(rnd, sizeof(rnd), "%08x", (unsigned)(getpid() ^ (unsigned)time(NULL) ^ rand()));
	_cleanup_free_ char *name = xasprintf("imgforge-%s-%s", b->def->name, rnd);
	json_t *host = json_pack("{s:o,s:o,s:s}", "CapAdd",
				 imgf_docker_cfg_list(b, "cap_add", "SYS_ADMIN"), "SecurityOpt",
				 imgf_docker_cfg_list(b, "security_opt", "seccomp=unconfined"),
				 "NetworkMode", imgf_cfg_str(b->builder_cfg, "network", "host"));
	json_t *req = json_pack("{s:s,s:[s,s],s:[s],s:{s:s},s:o}", "Image", from, "Entrypoint",
				"sleep", "infinity", "Env", DEFAULT_PATH, "Labels",
				"io.imgforge.build", b->def->name, "HostConfig", host);
	json_t *created = NULL;
	_cleanup_free_ char *qname = imgf_http_escaped(name);
	if (imgf_docker_json(d, "POST", req, &created, NULL, err, "/containers/create?name=%s",
			     qname) < 0)
		return imgf_error_prefix(err, "create build container from '%s'", from);
	*id = xstrdup(json_string_value(json_object_get(created, "Id")) ?: "");
	*name_out = xstrdup(name);
	json_decref(created);
	return 0;
}

void imgf_docker_remove_container(struct docker *d, const char *id)
{
	struct imgf_error *e = NULL;
	long st = 0;
	if (imgf_docker_json(d, "DELETE", NULL, NULL, &st, &e, "/containers/%s?force=true&v=true",
			     id) < 0 ||
	    (st >= 300 && st != 404))
		log_warn("could not remove build container '%s': %s", id,
			 e ? e->msg : "the engine refused");
	imgf_error_free(e);
}

int imgf_docker_engine_commit(struct docker_target *dt, json_t *config, const char *tag, char **id,
			      struct imgf_error **err)
{
	struct strbuf q = STRBUF_INIT;
	_cleanup_free_ char *author = imgf_http_escaped("imgforge " IMGF_VERSION);
	strbuf_addf(&q, "/commit?container=%s&pause=true&author=%s", dt->id, author);
	if (tag) {
		_cleanup_free_ char *repo = NULL, *tg = NULL;
		imgf_docker_split_tag(tag, &repo, &tg);
		_cleanup_free_ char *er = imgf_http_escaped(repo);
		_cleanup_free_ char *et = imgf_http_escaped(tg);
		strbuf_addf(&q, "&repo=%s&tag=%s", er, et);
	}
	json_t *reply = NULL;
	int r = imgf_docker_json_freezing(dt->d, "POST", json_incref(config), &reply, err, "%s",
					  q.buf);
	strbuf_release(&q);
	if (r < 0)
		return -1;
	*id = xstrdup(json_string_value(json_object_get(reply, "Id")) ?: "");
	json_decref(reply);
	return 0;
}

char *imgf_docker_platform_of(json_t *info)
{
	const char *variant = json_string_value(json_object_get(info, "Variant"));
	return xasprintf("%s/%s%s%s", json_string_value(json_object_get(info, "Os")) ?: "linux",
			 json_string_value(json_object_get(info, "Architecture")) ?: "amd64",
			 variant ? "/" : "", variant ? variant : "");
}

int imgf_docker_check_loaded(struct docker *d, const char *want, struct imgf_error **err)
{
	long st = 0;
	if (imgf_docker_json(d, "GET", NULL, NULL, &st, err, "/images/%s/json", want) < 0)
		return -1;
	if (st != 200)
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"load image: the engine answered %ld for the loaded image '%s'", st, want);
	return 0;
}
