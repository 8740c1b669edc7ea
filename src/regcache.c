#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "build.h"
#include "builder.h"
#include "contract.h"
#include "dlcache.h"
#include "error.h"
#include "fsutil.h"
#include "imageref.h"
#include "log.h"
#include "provisioner.h"
#include "redact.h"
#include "regcache.h"
#include "registry.h"
#include "regpush.h"
#include "util.h"

#define RECORD_MAX (16u << 20) /* a record: mostly the inputs, a few hundred packages */
#define RECORD_VERSION 1

int imgf_regcache_repo_check(const char *s, struct imgf_error **err)
{
	const char *slash = strchr(s, '/');
	if (!slash || strchr(s, '@'))
		return imgf_error_set(
			err, IMGF_EXIT_USAGE,
			"'%s' is not REGISTRY/REPO (e.g. 127.0.0.1:5000/imgforge/cache)", s);
	_cleanup_free_ char *host = xstrndup(s, (size_t)(slash - s));
	_cleanup_free_ char *why = NULL;
	/* As Docker reads a name: the first component is a registry only with a dot, a port or
	 * as localhost; "kind/cache" would be docker.io's. */
	if ((!strchr(host, '.') && !strchr(host, ':') && strcmp(host, "localhost") != 0) ||
	    !imgf_registry_host_valid(host, &why))
		return imgf_error_set(err, IMGF_EXIT_USAGE, "'%s': '%s' is not a registry%s%s", s,
				      host, why ? ": " : " (a host with a dot or a port)",
				      why ? why : "");
	const char *repo = slash + 1;
	if (strchr(repo, ':'))
		return imgf_error_set(err, IMGF_EXIT_USAGE,
				      "'%s' names a tag: give REGISTRY/REPO (the cache tags its "
				      "entries step-KEY)",
				      s);
	if (!imgf_reg_repository_valid(repo))
		return imgf_error_set(err, IMGF_EXIT_USAGE, "'%s': '%s' is not a repository name",
				      s, repo);
	return 0;
}

char *imgf_regcache_ref(const char *repo, const char *key, const char *what)
{
	return xasprintf("%s:step-%s%s%s", repo, key, what ? "." : "", what ? what : "");
}

/* Whether the builder's states are files stacked step on step (qemu's overlays). */
static bool file_mode(const struct imgf_build *b)
{
	const struct imgf_builder_cache_ops *c = b->builder->cache;
	return c && c->export_file && c->import_file;
}

bool imgf_regcache_supported(const struct imgf_build *b)
{
	return (b->builder->image_save && b->builder->cache && b->builder->cache->load) ||
	       file_mode(b);
}

json_t *imgf_regcache_record_new(const char *const *keys, size_t i, const char *builder,
				 const char *image, const char *step, const char *state,
				 const char *manifest, const char *arch, json_t *inputs)
{
	json_t *chain = json_array();
	for (size_t k = 0; k <= i; k++)
		json_array_append_new(chain, json_string(keys[k]));
	_cleanup_free_ char *a = xstrdup(arch);
	char *variant = strchr(a, '/');
	if (variant)
		*variant++ = '\0';
	json_t *rec = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I,s:s,s:o,s:s,s:s,s:o}", "version",
				RECORD_VERSION, "imgforge", IMGF_VERSION, "builder", builder,
				"image", image, "step", step, "index", (json_int_t)i + 1, "key",
				keys[i], "chain", chain, "state", state, "manifest", manifest,
				"inputs", inputs ? json_incref(inputs) : json_array());
	/* An image config of no layers, so that a registry and push_archive take it. */
	json_t *cfg = json_pack("{s:s,s:s,s:{s:s,s:[]},s:o}", "architecture", a, "os", "linux",
				"rootfs", "type", "layers", "diff_ids", "imgforge", rec);
	if (variant)
		json_object_set_new(cfg, "variant", json_string(variant));
	return cfg;
}

int imgf_regcache_record_check(json_t *record, const char *const *keys, size_t i,
			       const char *builder, struct imgf_error **err)
{
	json_t *rec = json_object_get(record, "imgforge");
	if (!json_is_object(rec))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "the record has no 'imgforge' object");
	json_t *v = json_object_get(rec, "version");
	if (json_integer_value(v) != RECORD_VERSION)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "the record's version is not %d",
				      RECORD_VERSION);
	const char *b = json_string_value(json_object_get(rec, "builder"));
	if (!b || strcmp(b, builder) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "the record is of builder '%s', not '%s'", b ? b : "(none)",
				      builder);
	const char *key = json_string_value(json_object_get(rec, "key"));
	if (!key || strcmp(key, keys[i]) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "the record's key is %.12s, not %.12s",
				      key ? key : "(none)", keys[i]);
	json_t *chain = json_object_get(rec, "chain");
	if (json_array_size(chain) != i + 1)
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"the record's key chain has %zu links, the step is number %zu",
			json_array_size(chain), i + 1);
	for (size_t k = 0; k <= i; k++) {
		const char *link = json_string_value(json_array_get(chain, k));
		if (!link || strcmp(link, keys[k]) != 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "the record's key chain differs at step %zu: %.12s, "
					      "this build's is %.12s",
					      k + 1, link ? link : "(none)", keys[k]);
	}
	static const char *const digests[] = {"state", "manifest"};
	for (size_t k = 0; k < ARRAY_SIZE(digests); k++) {
		const char *d = json_string_value(json_object_get(rec, digests[k]));
		if (!d || !imgf_registry_digest_valid(d))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "the record's '%s' is not a sha256 digest",
					      digests[k]);
	}
	if (!json_is_array(json_object_get(rec, "inputs")))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "the record's 'inputs' is not a list");
	return 0;
}

/* The platform the build's images are for: "amd64", "arm64/v8". */
static const char *build_arch(const struct imgf_build *b)
{
	const char *p = b->contract->platform;
	return str_has_prefix(p, "linux/") ? p + 6 : "amd64";
}

/* How the registries are spoken to: --auth-file, --tls-verify, --ca-file. */
static struct imgf_push_opts push_opts(const struct imgf_build *b)
{
	struct imgf_push_opts o = {.remove_archive = true};
	if (b->opts->registry) {
		o.auth_file = b->opts->registry->auth_file;
		o.tls_no_verify = b->opts->registry->tls_no_verify;
		o.ca_file = b->opts->registry->ca_file;
	}
	return o;
}

/* A directory of its own under the build's stage dir, for the while (removed by the caller). */
static int work_dir(struct imgf_build *b, char **out, struct imgf_error **err)
{
	_cleanup_free_ char *parent = path_join(b->stage_dir, "regcache");
	if (mkdir_p(parent, 0700, err) < 0)
		return -1;
	char *dir = xasprintf("%s/XXXXXX", parent);
	if (!mkdtemp(dir)) {
		int e = errno;
		free(dir);
		return imgf_error_errno(err, e, "create '%s/XXXXXX'", parent);
	}
	*out = dir;
	return 0;
}

/* A docker-archive of one image with no layers: the record as its config. */
static int record_archive(const char *path, const char *config, struct imgf_error **err)
{
	static const char manifest[] =
		"[{\"Config\":\"record.json\",\"RepoTags\":null,\"Layers\":[]}]";
	struct imgf_tar *t = imgf_tar_open(path, err);
	if (!t)
		return -1;
	int r = imgf_tar_add_data(t, config, strlen(config), "record.json", 0644, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_data(t, manifest, strlen(manifest), "manifest.json", 0644, 0, 0,
				      err);
	if (r == 0)
		r = imgf_tar_close(t, err);
	imgf_tar_free(t);
	return r;
}

/* The state of an image builder: the image `id` as image_save writes it, pushed as is. */
static int put_image(struct imgf_build *b, const char *id, const char *dir, const char *ref,
		     char manifest[72], struct imgf_push_stats *st, struct imgf_error **err)
{
	_cleanup_free_ char *tar = path_join(dir, "state.tar");
	_cleanup_free_ char *unpacked = path_join(dir, "state");
	struct imgf_push_opts o = push_opts(b);
	if (mkdir_p(unpacked, 0700, err) < 0 || b->builder->image_save(b, id, tar, err) < 0)
		return -1;
	return imgf_registry_push_archive(tar, id, ref, unpacked, &o, manifest, st, err);
}

/* The state of a file builder: the step's own file as the one layer of an artifact, *digest
 * its digest; it must stand on `below`, the state of step below_step (NULL, -1: the base). */
/* Step i's name; i = nsteps is the finished image (the artifact), under the final key. */
static const char *label_of(const struct imgf_build *b, size_t i)
{
	return i < b->nsteps ? b->steps[i].label : "(artifact)";
}

static int put_file(struct imgf_build *b, const char *const *keys, size_t i, const char *id,
		    long below_step, const char *below, const char *ref, char digest[72],
		    char manifest[72], struct imgf_push_stats *st, struct imgf_error **err)
{
	_cleanup_free_ char *file = NULL, *on = NULL;
	const char *type = NULL;
	if (b->builder->cache->export_file(b, id, &file, digest, &type, &on, err) < 0)
		return -1;
	if ((on == NULL) != (below == NULL) || (on && strcmp(on, below) != 0))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' stands on %s%s%s, not on %s%s%s",
				      id, on ? "'" : "", on ? on : "the base", on ? "'" : "",
				      below ? "the state of the step below, '" : "the base",
				      below ? below : "", below ? "'" : "");
	json_t *cfg =
		json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "architecture", build_arch(b), "os",
			  "linux", "imgforge", "builder", b->builder->name, "key", keys[i], "below",
			  below_step >= 0 ? keys[below_step] : "base", "step", label_of(b, i));
	_cleanup_free_ char *config = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(cfg);
	_cleanup_free_ char *title = xasprintf("step-%s.%s", keys[i], b->builder->name);
	struct imgf_push_file f = {
		.path = file, .media_type = type, .digest = digest, .title = title};
	struct imgf_push_opts o = push_opts(b);
	return imgf_registry_push_artifact(ref, IMGF_REGCACHE_ARTIFACT_TYPE,
					   IMGF_REGCACHE_CONFIG_TYPE, config, &f, 1, &o, manifest,
					   st, err);
}

int imgf_regcache_put(struct imgf_build *b, const char *const *keys, size_t i, const char *id,
		      long below_step, const char *below, json_t *inputs, struct imgf_error **err)
{
	const char *repo = b->opts->cache_to;
	const char *key = keys[i];
	_cleanup_free_ char *dir = NULL;
	if (work_dir(b, &dir, err) < 0)
		return -1;
	_cleanup_free_ char *rtar = path_join(dir, "record.tar");
	_cleanup_free_ char *runpacked = path_join(dir, "record");
	_cleanup_free_ char *state_ref = imgf_regcache_ref(repo, key, NULL);
	_cleanup_free_ char *record_ref = imgf_regcache_ref(repo, key, "record");
	struct imgf_push_opts o = push_opts(b);
	struct imgf_push_stats st = {0}, rst = {0};
	char manifest[72], rdigest[72], state[72];
	int r = mkdir_p(runpacked, 0700, err);
	if (r == 0 && file_mode(b)) {
		r = put_file(b, keys, i, id, below_step, below, state_ref, state, manifest, &st,
			     err);
	} else if (r == 0) {
		snprintf(state, sizeof(state), "%s", id);
		r = put_image(b, id, dir, state_ref, manifest, &st, err);
	}
	if (r == 0) {
		json_t *cfg = imgf_regcache_record_new(keys, i, b->builder->name, b->def->name,
						       label_of(b, i), state, manifest,
						       build_arch(b), inputs);
		_cleanup_free_ char *raw = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(cfg);
		/* an input's URL may carry credentials: the registry gets them redacted */
		_cleanup_free_ char *text = imgf_redact(raw);
		r = record_archive(rtar, text, err);
	}
	if (r == 0)
		r = imgf_registry_push_archive(rtar, NULL, record_ref, runpacked, &o, rdigest, &rst,
					       err);
	rm_rf(dir, NULL);
	if (r < 0)
		return -1;
	_cleanup_free_ char *what = i < b->nsteps ? xasprintf("step '%s'", b->steps[i].label)
						  : xstrdup("the finished image");
	_cleanup_free_ char *human = xasprintf(
		"%s: %s exported to '%s' (%u blobs: %u uploaded, %llu bytes; %u already there)",
		b->def->name, what, state_ref, st.blobs + rst.blobs, st.uploaded + rst.uploaded,
		(unsigned long long)(st.bytes_uploaded + rst.bytes_uploaded),
		st.existed + rst.existed);
	imgf_event("cache-exported",
		   json_pack("{s:s,s:i,s:s,s:s,s:s,s:s}", "image", b->def->name, "index",
			     (int)i + 1, "step", label_of(b, i), "key", key, "ref", state_ref,
			     "digest", manifest),
		   human);
	return 0;
}

/* Member `name` of a tar (its data, at most `max` bytes, NUL-terminated). */
static int tar_member(const char *tar, const char *name, size_t max, char **data, size_t *len,
		      struct imgf_error **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	int r = -1;
	*data = NULL;
	if (archive_read_open_filename(a, tar, 1 << 16) != ARCHIVE_OK) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "open '%s': %s", tar,
				   archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int ar;
	while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *n = archive_entry_pathname(e);
		if (str_has_prefix(n, "./"))
			n += 2;
		if (strcmp(n, name) != 0)
			continue;
		la_int64_t size = archive_entry_size(e);
		if (size < 0 || (uint64_t)size > max) {
			r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' in '%s' is over %zu bytes",
					   name, tar, max);
			goto out;
		}
		*data = xmalloc((size_t)size + 1);
		la_ssize_t got = archive_read_data(a, *data, (size_t)size);
		if (got != size) {
			r = imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s' in '%s': %s", name, tar,
					   got < 0 ? archive_error_string(a) : "short");
			goto out;
		}
		(*data)[size] = '\0';
		*len = (size_t)size;
		r = 0;
		goto out;
	}
	r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' has no '%s'%s%s", tar, name,
			   ar == ARCHIVE_EOF ? "" : ": ",
			   ar == ARCHIVE_EOF ? "" : archive_error_string(a));
out:
	if (r < 0) {
		free(*data);
		*data = NULL;
	}
	archive_read_free(a);
	return r;
}

/* A JSON blob of a layout imgf_registry_pull_oci wrote (verified there). */
static json_t *layout_blob(const char *tar, const char *digest, struct imgf_error **err)
{
	if (!imgf_registry_digest_valid(digest)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is not a sha256 digest", digest);
		return NULL;
	}
	_cleanup_free_ char *name = xasprintf("blobs/sha256/%s", digest + 7);
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (tar_member(tar, name, RECORD_MAX, &data, &len, err) < 0)
		return NULL;
	json_error_t je;
	json_t *j = json_loadb(data, len, 0, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		imgf_error_set(err, IMGF_EXIT_FAIL, "blob '%s' is not a JSON object", digest);
	}
	return json_is_object(j) ? j : NULL;
}

/*
 * Pull `ref` into dir/NAME.tar as an OCI layout; *manifest gets its manifest (*digest its
 * digest). A missing tag is 0 (when missing_ok), else an error.
 */
static int pull_layout(struct imgf_build *b, const char *ref, const char *dir, const char *name,
		       bool missing_ok, json_t **manifest, char digest[72], struct imgf_error **err)
{
	_cleanup_free_ char *tar = xasprintf("%s/%s.tar", dir, name);
	struct imgf_error *e = NULL;
	struct imgf_push_opts o = push_opts(b);
	if (imgf_registry_pull_oci_as(ref, build_arch(b), &b->fetch, &o, tar, digest, &e) < 0) {
		/* The pull client says what the registry answered; a tag it does not have is
		 * a 404 (MANIFEST_UNKNOWN), which only says the entry is not there. */
		if (missing_ok && strstr(e->msg, "HTTP 404")) {
			log_debug("%s", e->msg);
			imgf_error_free(e);
			return 0;
		}
		*err = e;
		return -1;
	}
	*manifest = layout_blob(tar, digest, err);
	return *manifest ? 1 : -1;
}

/* manifest.json of a docker-archive of the layout's image (the blobs where the layout has
 * them), so that an engine without OCI layout support loads it. */
static char *docker_manifest_json(json_t *manifest)
{
	json_t *layers = json_array();
	size_t k;
	json_t *l;
	json_array_foreach(json_object_get(manifest, "layers"), k, l)
	{
		const char *d = json_string_value(json_object_get(l, "digest"));
		json_array_append_new(layers, json_sprintf("blobs/sha256/%s", d ? d + 7 : ""));
	}
	const char *cd =
		json_string_value(json_object_get(json_object_get(manifest, "config"), "digest"));
	json_t *m = json_pack("[{s:o,s:n,s:o}]", "Config",
			      json_sprintf("blobs/sha256/%s", cd ? cd + 7 : ""), "RepoTags",
			      "Layers", layers);
	char *s = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	return s;
}

/* The layout dir/state.tar as dir/docker.tar: the same members and a manifest.json. */
static int docker_archive(const char *dir, json_t *manifest, char **out, struct imgf_error **err)
{
	_cleanup_free_ char *in = path_join(dir, "state.tar");
	_cleanup_free_ char *path = path_join(dir, "docker.tar");
	_cleanup_free_ char *mj = docker_manifest_json(manifest);
	struct imgf_tar *t = imgf_tar_open(path, err);
	if (!t)
		return -1;
	int r = imgf_tar_add_archive(t, in, 0, NULL, NULL, err);
	if (r == 0)
		r = imgf_tar_add_data(t, mj, strlen(mj), "manifest.json", 0644, 0, 0, err);
	if (r == 0)
		r = imgf_tar_close(t, err);
	imgf_tar_free(t);
	unlink(in);
	if (r < 0)
		return -1;
	*out = STEAL_POINTER(&path);
	return 0;
}

/* The state's blobs leave the download cache once the builder holds them. */
static void blobs_forget(const struct imgf_build *b, json_t *manifest)
{
	size_t k;
	json_t *l;
	json_array_foreach(json_object_get(manifest, "layers"), k, l)
	{
		const char *d = json_string_value(json_object_get(l, "digest"));
		if (!d || !imgf_registry_digest_valid(d))
			continue;
		_cleanup_free_ char *p = imgf_dlcache_entry(b->fetch.cache_dir, IMGF_SHA256, d + 7);
		unlink(p);
	}
}

int imgf_regcache_probe(struct imgf_build *b, const char *repo, const char *const *keys, size_t i,
			struct imgf_error **err)
{
	_cleanup_free_ char *dir = NULL;
	if (work_dir(b, &dir, err) < 0)
		return -1;
	_cleanup_free_ char *ref = imgf_regcache_ref(repo, keys[i], "record");
	_cleanup_free_ char *tar = path_join(dir, "record.tar");
	json_t *man = NULL, *record = NULL;
	char digest[72];
	struct imgf_error *e = NULL;
	int r = pull_layout(b, ref, dir, "record", true, &man, digest, err);
	if (r > 0) {
		const char *cd = json_string_value(
			json_object_get(json_object_get(man, "config"), "digest"));
		record = cd ? layout_blob(tar, cd, &e) : NULL;
		if (!record ||
		    imgf_regcache_record_check(record, keys, i, b->builder->name, &e) < 0)
			r = 0; /* not this build's: as if it were not there */
	}
	if (e)
		log_debug("%s: %s", ref, e->msg);
	imgf_error_free(e);
	json_decref(man);
	json_decref(record);
	rm_rf(dir, NULL);
	return r;
}

bool imgf_regcache_has(struct imgf_build *b, const char *const *keys, size_t i)
{
	struct imgf_error *e = NULL;
	int r = imgf_regcache_probe(b, b->opts->cache_to, keys, i, &e);
	if (e)
		log_debug("%s", e->msg);
	imgf_error_free(e);
	return r > 0;
}

/* A file builder's state from the artifact `ref` (by digest): its one layer must be the file
 * the record names (`state`), every blob verified on the way; the builder then stacks it on
 * the state of step below_step (-1: the base). */
static int get_file(struct imgf_build *b, const char *key, long below_step, const char *below,
		    const char *ref, const char *state, char **id, int64_t *size,
		    struct imgf_error **err)
{
	if (below_step >= 0 && !below)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "step %ld's state is not at hand",
				      below_step + 1);
	struct imgf_push_opts o = push_opts(b);
	json_t *man = NULL;
	char **paths = NULL;
	char digest[72];
	int r = imgf_registry_fetch_image(ref, build_arch(b), &b->fetch, &o, &man, &paths, digest,
					  err);
	if (r < 0)
		return -1;
	json_t *layers = json_object_get(man, "layers");
	const char *at = json_string_value(json_object_get(man, "artifactType"));
	const char *ld = json_string_value(json_object_get(json_array_get(layers, 0), "digest"));
	if (!at || strcmp(at, IMGF_REGCACHE_ARTIFACT_TYPE) != 0)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': the artifact type is '%s', not '%s'",
				   ref, at ? at : "(none)", IMGF_REGCACHE_ARTIFACT_TYPE);
	else if (json_array_size(layers) != 1 || !ld || strcmp(ld, state) != 0)
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'%s': the artifact's file is %s, the record names %s", ref,
				   ld ? ld : "(none)", state);
	if (r == 0)
		r = b->builder->cache->import_file(b, key, paths[1], below, id, size, err);
	for (size_t k = 0; paths && paths[k]; k++)
		unlink(paths[k]); /* the blobs leave the download cache (the file is taken) */
	strv_free(paths);
	json_decref(man);
	return r;
}

/* imgf_regcache_get in dir: the record, then the state it names. */
/* Step i's record from --cache-from's registry into *record (checked against this build):
 * 1, 0 when it has none, < 0 with *err (*unreachable: the registry itself failed). */
static int read_record(struct imgf_build *b, const char *const *keys, size_t i, const char *dir,
		       json_t **record, bool *unreachable, struct imgf_error **err)
{
	_cleanup_free_ char *record_ref = imgf_regcache_ref(b->opts->cache_from, keys[i], "record");
	_cleanup_free_ char *rtar = path_join(dir, "record.tar");
	json_t *rman = NULL;
	char digest[72];
	*record = NULL;
	int r = pull_layout(b, record_ref, dir, "record", true, &rman, digest, err);
	if (r <= 0) {
		/* Not a blob that fails its digest: the registry itself (down, refusing). */
		*unreachable = r < 0 && !strstr((*err)->msg, "mismatch");
		return r;
	}
	const char *cd =
		json_string_value(json_object_get(json_object_get(rman, "config"), "digest"));
	*record = cd ? layout_blob(rtar, cd, err) : NULL;
	if (!cd)
		imgf_error_set(err, IMGF_EXIT_FAIL, "manifest '%s' has no config", digest);
	json_decref(rman);
	r = *record ? imgf_regcache_record_check(*record, keys, i, b->builder->name, err) : -1;
	if (r < 0) {
		json_decref(*record);
		*record = NULL;
		return imgf_error_prefix(err, "'%s'", record_ref);
	}
	return 1;
}

int imgf_regcache_record_inputs(struct imgf_build *b, const char *const *keys, size_t i,
				json_t **inputs, struct imgf_error **err)
{
	_cleanup_free_ char *dir = NULL;
	if (work_dir(b, &dir, err) < 0)
		return -1;
	json_t *record = NULL;
	bool unreachable = false;
	int r = read_record(b, keys, i, dir, &record, &unreachable, err);
	rm_rf(dir, NULL);
	if (r <= 0)
		return r;
	*inputs = json_incref(json_object_get(json_object_get(record, "imgforge"), "inputs"));
	json_decref(record);
	return 1;
}

static int get_in(struct imgf_build *b, const char *const *keys, size_t i, long below_step,
		  const char *below, const char *dir, char **id, int64_t *size, json_t **inputs,
		  bool *unreachable, struct imgf_error **err)
{
	const char *repo = b->opts->cache_from;
	const char *key = keys[i];
	json_t *rman = NULL, *record = NULL, *sman = NULL;
	char digest[72];
	_cleanup_free_ char *state_ref = NULL, *archive = NULL; /* before any goto */
	int r = read_record(b, keys, i, dir, &record, unreachable, err);
	if (r <= 0)
		return r;
	json_t *rec = json_object_get(record, "imgforge");
	const char *state = json_string_value(json_object_get(rec, "state"));
	const char *mdigest = json_string_value(json_object_get(rec, "manifest"));
	/* By digest: the manifest the record names, and nothing else. */
	state_ref = xasprintf("%s@%s", repo, mdigest);
	if (file_mode(b)) {
		r = get_file(b, key, below_step, below, state_ref, state, id, size, err);
		if (r < 0)
			goto out;
		/* What was made is a state intact as a local one must be. */
		r = b->builder->cache->check(b, key, *id, false, err);
		if (r == 0)
			r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is not intact", *id);
		if (r < 0) {
			free(*id);
			*id = NULL;
			goto out;
		}
		*inputs = json_incref(json_object_get(rec, "inputs"));
		r = 1;
		goto out;
	}
	r = pull_layout(b, state_ref, dir, "state", false, &sman, digest, err);
	if (r < 0)
		goto out;
	const char *scd =
		json_string_value(json_object_get(json_object_get(sman, "config"), "digest"));
	if (!scd || strcmp(scd, state) != 0) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'%s': the config is %s, the record names the image %s",
				   state_ref, scd ? scd : "(none)", state);
		goto out;
	}
	if ((r = docker_archive(dir, sman, &archive, err)) < 0)
		goto out;
	if ((r = b->builder->cache->load(b, archive, state, err)) < 0)
		goto out;
	unlink(archive);
	blobs_forget(b, sman);
	/* What was loaded holds the key, as a local entry's state must (the finished image: is
	 * the image it names). */
	r = b->builder->cache->check(b, key, state, i == b->nsteps, err);
	if (r == 0)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "the image %.19s does not hold the key",
				   state);
	if (r < 0)
		goto out;
	*id = xstrdup(state);
	*inputs = json_incref(json_object_get(rec, "inputs"));
	r = 1;
out:
	json_decref(rman);
	json_decref(record);
	json_decref(sman);
	return r;
}

int imgf_regcache_get(struct imgf_build *b, const char *const *keys, size_t i, long below_step,
		      const char *below, char **id, int64_t *size, json_t **inputs,
		      bool *unreachable, struct imgf_error **err)
{
	*unreachable = false;
	*size = 0;
	_cleanup_free_ char *dir = NULL;
	if (work_dir(b, &dir, err) < 0)
		return -1;
	int r = get_in(b, keys, i, below_step, below, dir, id, size, inputs, unreachable, err);
	rm_rf(dir, NULL);
	return r;
}
