/*
 * OCI distribution client: reference parsing, manifest and blob GETs with anonymous bearer
 * tokens, platform selection, and the OCI image-layout tar that containerd imports.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "archive.h"
#include "base64.h"
#include "digest.h"
#include "dlcache.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "http.h"
#include "log.h"
#include "ociimage.h"
#include "regauth.h"
#include "registry.h"
#include "regpush.h"
#include "strbuf.h"
#include "util.h"
#include "registry-internal.h"

#define MANIFEST_MAX (4u << 20) /* manifests and indexes; Docker's own limit is 4 MiB */
/* A transfer under STALL_BYTES_PER_S for imgf_fetch_opts.stall_s seconds is a failed attempt. */

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

/* ---- manifests ----------------------------------------------------------------------- */

struct descriptor {
	char *media_type;
	char digest[72];
	uint64_t size;
};

static void descriptor_release(struct descriptor *d)
{
	free(d->media_type);
	d->media_type = NULL;
}

static int parse_descriptor(json_t *j, const char *what, struct descriptor *d,
			    struct imgf_error **err)
{
	memset(d, 0, sizeof(*d));
	const char *dg = json_string_value(json_object_get(j, "digest"));
	json_t *size = json_object_get(j, "size");
	const char *mt = json_string_value(json_object_get(j, "mediaType"));
	if (!json_is_object(j))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: not an object", what);
	if (!dg)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: no 'digest'", what);
	if (!imgf_registry_digest_valid(dg))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: unsupported digest '%s' (want sha256:<64 hex digits>)",
				      what, dg);
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: no valid 'size'", what);
	snprintf(d->digest, sizeof(d->digest), "%s", dg);
	d->size = (uint64_t)json_integer_value(size);
	d->media_type = mt ? xstrdup(mt) : NULL;
	return 0;
}

/* The media type a manifest declares, else the one the server sent, else guessed. */
static char *manifest_media_type(json_t *root, const char *content_type)
{
	const char *mt = json_string_value(json_object_get(root, "mediaType"));
	if (mt)
		return xstrdup(mt);
	if (content_type && *content_type) {
		size_t n = strcspn(content_type, "; ");
		if (n && strncmp(content_type, "application/json", n) != 0 &&
		    strncmp(content_type, "text/plain", n) != 0)
			return xstrndup(content_type, n);
	}
	if (json_object_get(root, "manifests"))
		return xstrdup(MT_OCI_INDEX);
	return xstrdup(MT_OCI_MANIFEST);
}

static bool is_index_type(const char *mt)
{
	return !strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST);
}

static bool is_manifest_type(const char *mt)
{
	return !strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST);
}

struct manifest {
	struct strbuf raw; /* exactly as received */
	json_t *root;
	char *media_type;
	char digest[72]; /* computed */
};

static void manifest_release(struct manifest *m)
{
	strbuf_release(&m->raw);
	json_decref(m->root);
	free(m->media_type);
	memset(m, 0, sizeof(*m));
}

/*
 * GET a manifest or index by tag or digest and check its digest: against `want` when given
 * (the digest it was addressed by or pinned to), and against the server's
 * Docker-Content-Digest when that is a sha256 one.
 */
static int get_manifest(struct reg_client *c, const char *reference, const char *want,
			struct manifest *m, struct imgf_error **err)
{
	static const char accept[] =
		MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST;
	memset(m, 0, sizeof(*m));
	m->raw = (struct strbuf)STRBUF_INIT;
	m->raw.max = MANIFEST_MAX;
	_cleanup_free_ char *url = xasprintf("%s/manifests/%s", c->base, reference);
	struct sink s = {.buf = &m->raw, .fd = -1};
	struct reply r = REPLY_INIT;
	int ret = imgf_registry_get(c, url, accept, &s, &r, err);
	if (ret < 0)
		goto out;
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, m->raw.buf, m->raw.len, hex);
	snprintf(m->digest, sizeof(m->digest), "sha256:%.64s", hex);
	if (want && strcmp(want, m->digest) != 0) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "manifest '%s': sha256 mismatch: want %s, got %s", reference,
				     want, m->digest);
		goto out;
	}
	const char *said = imgf_http_header_get(&r.h, "Docker-Content-Digest");
	if (said && str_has_prefix(said, "sha256:") && strcmp(said, m->digest) != 0) {
		ret = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"manifest '%s': sha256 mismatch: registry says %s, content is %s",
			reference, said, m->digest);
		goto out;
	}
	json_error_t jerr;
	m->root = json_loadb(m->raw.buf, m->raw.len, 0, &jerr);
	if (!json_is_object(m->root)) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "manifest '%s': invalid JSON: %s",
				     reference, m->root ? "not an object" : jerr.text);
		goto out;
	}
	json_t *sv = json_object_get(m->root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "manifest '%s': schemaVersion %lld is not supported (only 2)",
				     reference, json_is_integer(sv) ? json_integer_value(sv) : 0);
		goto out;
	}
	m->media_type = manifest_media_type(m->root, imgf_http_header_get(&r.h, "Content-Type"));
	if (!is_index_type(m->media_type) && !is_manifest_type(m->media_type))
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "manifest '%s': unsupported media type '%s'", reference,
				     m->media_type);
out:
	imgf_registry_reply_release(&r);
	return ret;
}

/* "amd64", "arm64", "arm/v7": the variant matters only for arm. */
static bool platform_matches(json_t *plat, const char *arch, const char *variant)
{
	const char *os = json_string_value(json_object_get(plat, "os"));
	const char *a = json_string_value(json_object_get(plat, "architecture"));
	const char *v = json_string_value(json_object_get(plat, "variant"));
	if (!os || strcmp(os, "linux") != 0 || !a || strcmp(a, arch) != 0)
		return false;
	if (strcmp(arch, "arm") != 0)
		return true;
	return !v || !strcmp(v, variant ? variant : "v7");
}

static int choose_platform(struct manifest *idx, const char *reference, const char *arch,
			   const char *variant, struct descriptor *out, struct imgf_error **err)
{
	json_t *list = json_object_get(idx->root, "manifests");
	if (!json_is_array(list))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "index '%s': no 'manifests' list",
				      reference);
	struct strbuf avail = STRBUF_INIT;
	size_t i;
	json_t *ent;
	json_array_foreach(list, i, ent)
	{
		json_t *plat = json_object_get(ent, "platform");
		if (platform_matches(plat, arch, variant)) {
			strbuf_release(&avail);
			_cleanup_free_ char *what = xasprintf("index '%s' entry %zu", reference, i);
			if (parse_descriptor(ent, what, out, err) < 0)
				return -1;
			if (out->media_type && !is_manifest_type(out->media_type)) {
				int r = imgf_error_set(err, IMGF_EXIT_FAIL,
						       "%s: unsupported media type '%s'", what,
						       out->media_type);
				descriptor_release(out);
				return r;
			}
			return 0;
		}
		const char *os = json_string_value(json_object_get(plat, "os"));
		const char *a = json_string_value(json_object_get(plat, "architecture"));
		const char *v = json_string_value(json_object_get(plat, "variant"));
		strbuf_addf(&avail, "%s%s/%s%s%s", avail.len ? ", " : "", os ? os : "?",
			    a ? a : "?", v ? "/" : "", v ? v : "");
	}
	int r = imgf_error_set(err, IMGF_EXIT_FAIL,
			       "no manifest for linux/%s%s%s in '%s'; available: %s", arch,
			       variant ? "/" : "", variant ? variant : "", reference,
			       avail.len ? avail.buf : "none");
	strbuf_release(&avail);
	return r;
}

/* ---- blobs --------------------------------------------------------------------------- */

/* Make sure blob `d` is in the cache, verified; its path goes to *path. */
static int get_blob(struct reg_client *c, const struct descriptor *d, char **path,
		    struct imgf_error **err)
{
	_cleanup_free_ char *dst =
		imgf_dlcache_entry(c->opts->cache_dir, IMGF_SHA256, d->digest + 7);
	_cleanup_free_ char *dir = path_dirname(dst);
	_cleanup_free_ char *what = xasprintf("blob '%s'", d->digest);
	/* A cached blob is used only if its size and digest still match. */
	int cached =
		imgf_dlcache_check(dst, IMGF_SHA256, d->digest + 7, d->size, what, NULL, NULL, err);
	if (cached < 0)
		return -1;
	if (cached) {
		log_debug("blob %s: cached", d->digest);
		*path = STEAL_POINTER(&dst);
		return 0;
	}
	uint64_t cap = c->opts->max_size ? c->opts->max_size : IMGF_FETCH_MAX_SIZE_DEFAULT;
	if (d->size > cap)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "blob '%s': %llu bytes is over the cap of %llu (variable "
				      "'download_max_size')",
				      d->digest, (unsigned long long)d->size,
				      (unsigned long long)cap);
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = make_temp_file(dir, d->digest + 7, &tmp, err);
	if (fd < 0)
		return -1;
	struct imgf_digest dg;
	imgf_digest_init(&dg, IMGF_SHA256);
	_cleanup_free_ char *url = xasprintf("%s/blobs/%s", c->base, d->digest);
	_cleanup_free_ char *label = xasprintf("%.19s", d->digest);
	struct sink s = {.fd = fd, .dg = &dg, .limit = d->size, .label = label};
	struct reply r = REPLY_INIT;
	log_debug("blob %s: downloading %llu bytes", d->digest, (unsigned long long)d->size);
	int ret = imgf_registry_get(c, url, NULL, &s, &r, err);
	imgf_registry_reply_release(&r);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_final_hex(&dg, hex);
	imgf_digest_release(&dg);
	if (ret < 0)
		goto fail;
	if (s.written != d->size) {
		ret = imgf_error_set(
			err, IMGF_EXIT_FAIL, "blob '%s': size mismatch: want %llu bytes, got %llu",
			d->digest, (unsigned long long)d->size, (unsigned long long)s.written);
		goto fail;
	}
	if (strcmp(hex, d->digest + 7) != 0) {
		ret = imgf_error_set(err, IMGF_EXIT_FAIL,
				     "blob '%s': sha256 mismatch: want %s, got %s", d->digest,
				     d->digest + 7, hex);
		goto fail;
	}
	if ((ret = imgf_dlcache_commit(fd, tmp, dst, err)) < 0)
		goto fail;
	*path = STEAL_POINTER(&dst);
	return 0;
fail:
	unlink(tmp);
	return ret;
}

/* ---- the pull ------------------------------------------------------------------------ */

/* Refuse an image whose config says it is for another platform, as containerd would. */
static int check_config_platform(const char *path, const char *arch, const char *reference,
				 struct imgf_error **err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (read_file(path, MANIFEST_MAX, &data, &len, err) < 0)
		return imgf_error_prefix(err, "image config of '%s'", reference);
	json_t *root = json_loadb(data, len, 0, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "image config of '%s' is not JSON object", reference);
	}
	const char *os = json_string_value(json_object_get(root, "os"));
	const char *a = json_string_value(json_object_get(root, "architecture"));
	int ret = 0;
	if ((os && strcmp(os, "linux") != 0) || (a && strcmp(a, arch) != 0))
		ret = imgf_error_set(err, IMGF_EXIT_FAIL, "image '%s' is for %s/%s, not linux/%s",
				     reference, os ? os : "?", a ? a : "?", arch);
	json_decref(root);
	return ret;
}

static int write_layout(const char *out_tar, const struct imgf_image_ref *ref,
			const struct manifest *m, char **paths, const struct descriptor *blobs,
			size_t nblobs, struct imgf_error **err)
{
	json_t *ann = json_object();
	/* NAME:TAG when there is a tag: a pinned digest is verified, not kept in the name. */
	json_object_set_new(
		ann, "io.containerd.image.name",
		ref->tag ? json_sprintf("%s/%s:%s", ref->registry, ref->repository, ref->tag)
			 : json_string(ref->full));
	if (ref->tag)
		json_object_set_new(ann, "org.opencontainers.image.ref.name",
				    json_string(ref->tag));
	json_t *index =
		json_pack("{s:i,s:s,s:[{s:s,s:s,s:I,s:o}]}", "schemaVersion", 2, "mediaType",
			  MT_OCI_INDEX, "manifests", "mediaType", m->media_type, "digest",
			  m->digest, "size", (json_int_t)m->raw.len, "annotations", ann);
	_cleanup_free_ char *index_json = json_dumps(index, JSON_COMPACT);
	json_decref(index);
	struct imgf_oci_blob *all = xcalloc(nblobs + 1, sizeof(*all));
	all[0] = (struct imgf_oci_blob){m->digest, m->raw.buf, m->raw.len, NULL};
	for (size_t i = 0; i < nblobs; i++)
		all[i + 1] = (struct imgf_oci_blob){blobs[i].digest, NULL, 0, paths[i]};
	int r = imgf_oci_layout_write(out_tar, index_json, all, nblobs + 1, err);
	free(all);
	return r < 0 ? imgf_error_prefix(err, "write '%s'", out_tar) : 0;
}

/* The image `ref` names for the platform: its manifest and blobs fetched and verified, then
 * written as a layout to out_tar, or (out_tar NULL) handed out as *manifest_out and *paths_out
 * (config first, then the layers, NULL-terminated). */
static int pull(struct reg_client *c, const struct imgf_image_ref *ref, const char *arch,
		const char *variant, const char *out_tar, char manifest_digest[72],
		json_t **manifest_out, char ***paths_out, struct imgf_error **err)
{
	struct manifest top = {.raw = STRBUF_INIT}, plat = {.raw = STRBUF_INIT};
	struct descriptor *blobs = NULL;
	char **paths = NULL;
	size_t nblobs = 0;
	int ret = -1;

	/* A digest wins over a tag (as in Docker): it names exactly one manifest. */
	const char *reference = ref->digest ? ref->digest : ref->tag;
	if (get_manifest(c, reference, ref->digest, &top, err) < 0)
		goto out;
	struct manifest *m = &top;
	if (is_index_type(top.media_type)) {
		struct descriptor d;
		if (choose_platform(&top, ref->full, arch, variant, &d, err) < 0)
			goto out;
		int r = get_manifest(c, d.digest, d.digest, &plat, err);
		descriptor_release(&d);
		if (r < 0)
			goto out;
		if (plat.raw.len != d.size) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "manifest '%s': size mismatch: index says %llu, got %zu",
				       d.digest, (unsigned long long)d.size, plat.raw.len);
			goto out;
		}
		if (!is_manifest_type(plat.media_type)) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "manifest '%s': an index inside an index is not supported",
				       d.digest);
			goto out;
		}
		m = &plat;
	}
	json_t *layers = json_object_get(m->root, "layers");
	if (!json_is_array(layers)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "manifest '%s': no 'layers' list", m->digest);
		goto out;
	}
	nblobs = 1 + json_array_size(layers);
	blobs = xcalloc(nblobs, sizeof(*blobs));
	paths = xcalloc(nblobs + 1, sizeof(*paths));
	for (size_t i = 0; i < nblobs; i++) {
		char *what = i ? xasprintf("manifest '%s' layer %zu", m->digest, i - 1)
			       : xasprintf("manifest '%s' config", m->digest);
		json_t *j = i ? json_array_get(layers, i - 1) : json_object_get(m->root, "config");
		int r = parse_descriptor(j, what, &blobs[i], err);
		free(what);
		if (r < 0)
			goto out;
	}
	for (size_t i = 0; i < nblobs; i++)
		if (get_blob(c, &blobs[i], &paths[i], err) < 0)
			goto out;
	if (check_config_platform(paths[0], arch, ref->full, err) < 0)
		goto out;
	if (out_tar && write_layout(out_tar, ref, m, paths, blobs, nblobs, err) < 0)
		goto out;
	if (!out_tar) {
		*manifest_out = json_incref(m->root);
		*paths_out = STEAL_POINTER(&paths);
	}
	snprintf(manifest_digest, 72, "%s", m->digest);
	log_debug("pulled '%s' (linux/%s) as %s", ref->full, arch, m->digest);
	ret = 0;
out:
	for (size_t i = 0; i < nblobs; i++) {
		descriptor_release(&blobs[i]);
		if (paths)
			free(paths[i]);
	}
	free(blobs);
	free(paths);
	manifest_release(&top);
	manifest_release(&plat);
	return ret;
}

/* imgf_registry_pull_oci and the other pulls: out_tar or (NULL) *manifest and *paths. */
static int pull_from(const char *ref, const char *mirror, const char *arch,
		     const struct imgf_fetch_opts *o, const struct imgf_push_opts *acc,
		     const char *out_tar, char manifest_digest[72], json_t **manifest,
		     char ***paths, struct imgf_error **err)
{
	struct imgf_image_ref r;
	if (imgf_image_ref_parse(ref, &r, err) < 0)
		return -1;
	_cleanup_free_ char *why = NULL;
	if (mirror && !imgf_registry_mirror_valid(mirror, &why)) {
		imgf_image_ref_release(&r);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "pull '%s': %s", ref, why);
	}
	/* Where the bytes come from: the mirror's host, the repository under its path. */
	_cleanup_free_ char *mhost = NULL, *mrepo = NULL;
	if (mirror) {
		const char *path;
		mhost = imgf_registry_mirror_split(mirror, &path);
		mrepo = path ? xasprintf("%s/%s", path, r.repository) : xstrdup(r.repository);
	}
	const char *registry = mirror ? mhost : r.registry;
	const char *repository = mirror ? mrepo : r.repository;
	if (!o || !o->cache_dir || !*o->cache_dir) {
		imgf_image_ref_release(&r);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "pull '%s': no cache directory", ref);
	}
	if (!arch || !*arch)
		arch = "amd64";
	_cleanup_free_ char *arch_name = xstrdup(arch);
	char *variant = strchr(arch_name, '/');
	if (variant)
		*variant++ = '\0';

	if (acc && acc->auth_file && access(acc->auth_file, R_OK) < 0) {
		imgf_image_ref_release(&r);
		return imgf_error_errno(err, errno, "pull '%s': registry credentials '%s'", ref,
					acc->auth_file);
	}
	const char *host = !strcmp(registry, "docker.io") ? "registry-1.docker.io" : registry;
	if (acc && acc->tls_no_verify && !imgf_registry_is_loopback(registry))
		imgf_reg_tls_unverified_warn(registry);
	struct imgf_error *curl_err = NULL;
	struct reg_client c = {
		.curl = imgf_http_easy_new(NULL, &curl_err),
		.no_proxy = imgf_http_no_proxy_loopback(),
		.opts = o,
		.access = acc,
		.registry = xstrdup(registry),
		.auth_file = !acc	      ? NULL
			     : acc->auth_file ? xstrdup(acc->auth_file)
					      : imgf_reg_auth_file_default(),
		.base = xasprintf("%s://%s/v2/%s",
				  imgf_registry_is_loopback(registry) ? "http" : "https", host,
				  repository),
		.scope = xasprintf("repository:%s:pull", repository),
		.deadline_ms =
			o->timeout_s > 0 ? imgf_http_mono_ms() + (int64_t)o->timeout_s * 1000 : 0,
	};
	int ret;
	if (!c.curl) {
		ret = imgf_error_set(err, curl_err->status, "%s", curl_err->msg);
		imgf_error_free(curl_err);
	} else {
		if (mirror)
			log_info("pulling '%s' for linux/%s from mirror '%s'", r.full, arch,
				 mirror);
		else
			log_info("pulling '%s' for linux/%s", r.full, arch);
		ret = pull(&c, &r, arch_name, variant, out_tar, manifest_digest, manifest, paths,
			   err);
	}
	if (ret < 0)
		imgf_error_prefix(err, "pull '%s'", ref);
	if (c.curl)
		curl_easy_cleanup(c.curl);
	free(c.registry);
	free(c.base);
	free(c.scope);
	free(c.auth);
	free(c.auth_file);
	free(c.user);
	if (c.password)
		OPENSSL_cleanse(c.password, strlen(c.password));
	free(c.password);
	free(c.no_proxy);
	imgf_image_ref_release(&r);
	return ret;
}

int imgf_registry_pull_oci(const char *ref, const char *mirror, const char *arch,
			   const struct imgf_fetch_opts *o, const char *out_tar,
			   char manifest_digest[72], struct imgf_error **err)
{
	return pull_from(ref, mirror, arch, o, NULL, out_tar, manifest_digest, NULL, NULL, err);
}

int imgf_registry_pull_oci_as(const char *ref, const char *arch, const struct imgf_fetch_opts *o,
			      const struct imgf_push_opts *acc, const char *out_tar,
			      char manifest_digest[72], struct imgf_error **err)
{
	return pull_from(ref, NULL, arch, o, acc, out_tar, manifest_digest, NULL, NULL, err);
}

int imgf_registry_fetch_image(const char *ref, const char *arch, const struct imgf_fetch_opts *o,
			      const struct imgf_push_opts *acc, json_t **manifest, char ***paths,
			      char manifest_digest[72], struct imgf_error **err)
{
	*manifest = NULL;
	*paths = NULL;
	return pull_from(ref, NULL, arch, o, acc, NULL, manifest_digest, manifest, paths, err);
}
