/*
 * push: the image artifact pushed to an OCI registry (regpush.h) as `ref`, an OCI image
 * manifest with the image's own config and uncompressed layers, so the image ID is the same
 * wherever it is pulled. The image comes from the builder (image_save: the docker builder
 * asks its engine for `docker save`'s archive); each blob is checked against the image ID and
 * the config's diff_ids before any is sent. The manifest entry gets pushed[] {ref, digest}.
 *
 * Keys: ref (REGISTRY/REPO:TAG, required), mount_from (a repository of the same registry whose
 * blobs are mounted rather than uploaded), auth_file (a docker config.json; default
 * $DOCKER_CONFIG/config.json or ~/.docker/config.json when present), tls_verify (default
 * true), ca_file, compression ("none", the default: the layers as the engine has them,
 * uncompressed; "gzip") and compression_level (1 to 9, default 6). An empty string (a
 * variable left empty) is a key not given.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "imageref.h"
#include "log.h"
#include "postprocessor.h"
#include "regpush.h"
#include "util.h"

static const struct imgf_key push_keys[] = {
	{"ref", IMGF_KEY_STRING, true},		/* REGISTRY/REPO:TAG */
	{"mount_from", IMGF_KEY_STRING, false}, /* a repository of the same registry */
	{"auth_file", IMGF_KEY_STRING, false},
	{"tls_verify", IMGF_KEY_BOOL, false},
	{"ca_file", IMGF_KEY_STRING, false},
	{"compression", IMGF_KEY_STRING, false},
	{"compression_level", IMGF_KEY_INT, false},
	{NULL, 0, false},
};

/* A key set to "" (a variable left empty) is a key not set. */
static const char *opt_str(json_t *cfg, const char *key)
{
	const char *v = imgf_cfg_str(cfg, key, NULL);
	return v && *v ? v : NULL;
}

static int push_opts(json_t *cfg, struct imgf_push_opts *o, struct imgf_error **err)
{
	*o = (struct imgf_push_opts){
		.auth_file = opt_str(cfg, "auth_file"),
		.tls_no_verify = !imgf_cfg_bool(cfg, "tls_verify", true),
		.ca_file = opt_str(cfg, "ca_file"),
		.mount_from = opt_str(cfg, "mount_from"),
	};
	const char *comp = opt_str(cfg, "compression");
	long level = imgf_cfg_int(cfg, "compression_level", 6);
	if (comp && strcmp(comp, "none") != 0 && strcmp(comp, "gzip") != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "compression: '%s' is not 'none' or 'gzip'", comp);
	if (level < 1 || level > 9)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "compression_level: %ld is not a gzip level from 1 to 9",
				      level);
	if (comp && !strcmp(comp, "gzip"))
		o->gzip_level = (int)level;
	return 0;
}

static int push_validate(struct imgf_build *b, json_t *cfg, struct imgf_error **err)
{
	if (!b->builder->image_save)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "post-processor 'push' needs a container image; the %s "
				      "builder makes none",
				      b->builder->name);
	const char *ref = imgf_cfg_str(cfg, "ref", "");
	struct imgf_image_ref r;
	if (imgf_image_ref_parse(ref, &r, err) < 0)
		return imgf_error_prefix(err, "ref");
	bool digest = r.digest != NULL;
	imgf_image_ref_release(&r);
	if (digest)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "ref: '%s' names a digest; a push names a tag", ref);
	struct imgf_push_opts o;
	if (push_opts(cfg, &o, err) < 0)
		return -1;
	if (o.mount_from && !imgf_reg_repository_valid(o.mount_from))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "mount_from: '%s' is not a repository name (a/b, lowercase)",
				      o.mount_from);
	if (o.auth_file && access(o.auth_file, R_OK) < 0)
		return imgf_error_errno(err, errno, "auth_file: '%s'", o.auth_file);
	if (o.ca_file && access(o.ca_file, R_OK) < 0)
		return imgf_error_errno(err, errno, "ca_file: '%s'", o.ca_file);
	return 0;
}

static int push_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	struct imgf_build *b = c->build;
	const char *ref = imgf_cfg_str(c->cfg, "ref", "");
	struct imgf_push_opts o;
	if (push_opts(c->cfg, &o, err) < 0)
		return imgf_error_prefix(err, "post-processor 'push'");
	_cleanup_free_ char *dir = NULL;
	if (b->stage_dir) {
		_cleanup_free_ char *parent = path_join(b->stage_dir, "push");
		if (mkdir_p(parent, 0700, err) < 0)
			return -1;
		dir = xasprintf("%s/XXXXXX", parent);
		if (!mkdtemp(dir))
			return imgf_error_errno(err, errno, "create '%s'", dir);
	} else if (make_temp_dir("imgforge-push", &dir, err) < 0) {
		return -1;
	}
	_cleanup_free_ char *tar = path_join(dir, "image.tar");
	_cleanup_free_ char *work = path_join(dir, "image");
	char digest[72];
	struct imgf_push_stats st;
	int ret = mkdir_p(work, 0700, err);
	if (ret == 0)
		ret = b->builder->image_save(b, c->art->id, tar, err);
	o.remove_archive = true;
	if (ret == 0)
		ret = imgf_registry_push_archive(tar, c->art->id, ref, work, &o, digest, &st, err);
	rm_rf(dir, NULL);
	if (ret < 0)
		return imgf_error_prefix(err, "post-processor 'push'");
	_cleanup_free_ char *human = xasprintf(
		"%s: pushed '%s' as %s (%u blobs: %u uploaded, %llu bytes; %u already there; "
		"%u mounted)",
		b->def->name, ref, digest, st.blobs, st.uploaded,
		(unsigned long long)st.bytes_uploaded, st.existed, st.mounted);
	imgf_event("pushed",
		   json_pack("{s:s,s:s,s:s,s:i,s:i,s:I,s:i,s:i}", "image", b->def->name, "ref", ref,
			     "digest", digest, "blobs", (int)st.blobs, "uploaded", (int)st.uploaded,
			     "bytes_uploaded", (json_int_t)st.bytes_uploaded, "existed",
			     (int)st.existed, "mounted", (int)st.mounted),
		   human);
	if (!c->art->extra)
		c->art->extra = json_object();
	json_t *pushed = json_object_get(c->art->extra, "pushed");
	if (!json_is_array(pushed)) {
		pushed = json_array();
		json_object_set_new(c->art->extra, "pushed", pushed);
	}
	json_array_append_new(pushed, json_pack("{s:s,s:s}", "ref", ref, "digest", digest));
	return 0;
}

const struct imgf_post_processor_ops imgf_push_post_processor = {
	.name = "push",
	.keys = push_keys,
	.when = IMGF_PP_LISTED,
	.validate = push_validate,
	.run = push_run,
};
