/*
 * OCI distribution push: an image from its docker-save archive (its layers gzipped when
 * asked), and indexes of pushed images, over the registry client (regpush-client.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>

#include "archive.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "imageref.h"
#include "log.h"
#include "regpush-internal.h"
#include "regpush.h"
#include "strbuf.h"
#include "util.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define GZIP_BUF (1u << 20)
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

/* ---- the docker-save archive ------------------------------------------------------------ */

/* A member of the unpacked archive, the real file it is, inside `dir`. */
static int archive_member(const char *dir, const char *name, char **out, struct imgf_error **err)
{
	if (!name || !*name || name[0] == '/' || strstr(name, ".."))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "manifest.json names '%s'",
				      name ? name : "(nothing)");
	_cleanup_free_ char *p = path_join(dir, name);
	_cleanup_free_ char *real = realpath(p, NULL);
	_cleanup_free_ char *rdir = realpath(dir, NULL);
	if (!real)
		return imgf_error_errno(err, errno, "member '%s'", name);
	size_t n = rdir ? strlen(rdir) : 0;
	struct stat st;
	if (!rdir || strncmp(real, rdir, n) != 0 || real[n] != '/' || stat(real, &st) < 0 ||
	    !S_ISREG(st.st_mode))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "member '%s' is not a file inside the archive", name);
	*out = STEAL_POINTER(&real);
	return 0;
}

struct image {
	struct blob config;
	struct blob *layers;
	size_t nlayers;
	bool gzip; /* the layers are gzip-compressed copies */
	char *config_json;
	char *os, *arch, *variant;
};

static void image_release(struct image *im)
{
	free(im->config.path);
	for (size_t i = 0; i < im->nlayers; i++) {
		free(im->layers[i].path);
		free((char *)im->layers[i].what);
	}
	free(im->layers);
	free(im->config_json);
	free(im->os);
	free(im->arch);
	free(im->variant);
	memset(im, 0, sizeof(*im));
}

static int hash_blob(struct blob *b, struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	if (imgf_digest_file(b->path, IMGF_SHA256, hex, err) < 0)
		return -1;
	struct stat st;
	if (stat(b->path, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", b->path);
	snprintf(b->digest, sizeof(b->digest), "sha256:%.64s", hex);
	b->size = (uint64_t)st.st_size;
	return 0;
}

/* Unpack the archive into dir and check its image: config = image_id, layers = diff_ids. */
static int image_load(const char *archive, const char *image_id, const char *dir, struct image *im,
		      struct imgf_error **err)
{
	memset(im, 0, sizeof(*im));
	if (imgf_archive_extract(archive, dir, err) < 0)
		return -1;
	_cleanup_free_ char *mpath = path_join(dir, "manifest.json");
	_cleanup_free_ char *mdata = NULL;
	size_t mlen = 0;
	if (read_file(mpath, DOC_MAX, &mdata, &mlen, err) < 0)
		return imgf_error_prefix(err, "the archive's manifest.json");
	json_t *man = json_loadb(mdata, mlen, 0, NULL);
	int ret = -1;
	json_t *ent = json_array_get(man, 0);
	if (json_array_size(man) != 1) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "the archive's manifest.json lists %zu images, expected 1",
			       json_array_size(man));
		goto out;
	}
	json_t *layers = json_object_get(ent, "Layers");
	if (!json_is_array(layers) ||
	    archive_member(dir, json_string_value(json_object_get(ent, "Config")), &im->config.path,
			   err) < 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "the archive's manifest.json has no Config "
			       "and Layers");
		goto out;
	}
	im->config.what = "config";
	if (hash_blob(&im->config, err) < 0)
		goto out;
	if (image_id && strcmp(image_id, im->config.digest) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "the archive's image config hashes to %s, not the image ID %s",
			       im->config.digest, image_id);
		goto out;
	}
	size_t clen = 0;
	if (read_file(im->config.path, DOC_MAX, &im->config_json, &clen, err) < 0)
		goto out;
	json_t *cfg = json_loadb(im->config_json, clen, 0, NULL);
	json_t *diff_ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
	const char *os = json_string_value(json_object_get(cfg, "os"));
	const char *arch = json_string_value(json_object_get(cfg, "architecture"));
	const char *variant = json_string_value(json_object_get(cfg, "variant"));
	im->os = os ? xstrdup(os) : NULL;
	im->arch = arch ? xstrdup(arch) : NULL;
	im->variant = variant ? xstrdup(variant) : NULL;
	if (!os || !arch || json_array_size(diff_ids) != json_array_size(layers)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "the image config %s has %s%zu diff_ids for %zu layers",
			       im->config.digest, !os || !arch ? "no os or architecture, and " : "",
			       json_array_size(diff_ids), json_array_size(layers));
		json_decref(cfg);
		goto out;
	}
	im->nlayers = json_array_size(layers);
	im->layers = xcalloc(im->nlayers ? im->nlayers : 1, sizeof(*im->layers));
	for (size_t i = 0; i < im->nlayers; i++) {
		struct blob *b = &im->layers[i];
		b->what = xasprintf("layer %zu", i);
		const char *want = json_string_value(json_array_get(diff_ids, i));
		if (archive_member(dir, json_string_value(json_array_get(layers, i)), &b->path,
				   err) < 0 ||
		    hash_blob(b, err) < 0) {
			imgf_error_prefix(err, "%s", b->what);
			json_decref(cfg);
			goto out;
		}
		if (!want || strcmp(want, b->digest) != 0) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "%s hashes to %s, but the config's diff_ids[%zu] is %s",
				       b->what, b->digest, i, want ? want : "not a string");
			json_decref(cfg);
			goto out;
		}
	}
	json_decref(cfg);
	ret = 0;
out:
	json_decref(man);
	if (ret < 0)
		image_release(im);
	return ret;
}

static char *image_manifest_json(const struct image *im)
{
	json_t *layers = json_array();
	for (size_t i = 0; i < im->nlayers; i++)
		json_array_append_new(layers, json_pack("{s:s,s:s,s:I}", "mediaType",
							im->gzip ? MT_OCI_LAYER_GZIP : MT_OCI_LAYER,
							"digest", im->layers[i].digest, "size",
							(json_int_t)im->layers[i].size));
	json_t *root =
		json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2, "mediaType",
			  MT_OCI_MANIFEST, "config", "mediaType", MT_OCI_CONFIG, "digest",
			  im->config.digest, "size", (json_int_t)im->config.size, "layers", layers);
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}

/* Where a compressed layer goes: its file, hashed and counted on the way. */
struct gz_sink {
	int fd;
	struct imgf_digest d;
	uint64_t n;
	int error;
};

static la_ssize_t gz_write(struct archive *a, void *arg, const void *buf, size_t len)
{
	struct gz_sink *s = arg;
	for (size_t off = 0; off < len;) {
		ssize_t w = write(s->fd, (const char *)buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			s->error = errno;
			archive_set_error(a, errno, "write");
			return -1;
		}
		off += (size_t)w;
	}
	imgf_digest_update(&s->d, buf, len);
	s->n += len;
	return (la_ssize_t)len;
}

/*
 * Replace layer b by a gzip-compressed copy at `out` (libarchive's raw format and gzip filter,
 * no time or name in the header, no padding: the same layer gives the same bytes), its digest
 * and size those of the copy.
 */
static int gzip_layer(struct blob *b, const char *out, int level, struct imgf_error **err)
{
	_cleanup_close_ int in = open(b->path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return imgf_error_errno(err, errno, "open '%s'", b->path);
	struct gz_sink sink = {.fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
	if (sink.fd < 0)
		return imgf_error_errno(err, errno, "create '%s'", out);
	imgf_digest_init(&sink.d, IMGF_SHA256);
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	char opts[64];
	snprintf(opts, sizeof(opts), "gzip:compression-level=%d,gzip:!timestamp", level);
	char *buf = xmalloc(GZIP_BUF);
	int ret = -1;
	archive_entry_set_pathname(e, "layer.tar");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)b->size);
	if (archive_write_set_format_raw(a) != ARCHIVE_OK ||
	    archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
	    archive_write_set_options(a, opts) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
	    archive_write_open(a, &sink, NULL, gz_write, NULL) != ARCHIVE_OK ||
	    archive_write_header(a, e) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "compress '%s': %s", b->path,
			       archive_error_string(a));
		goto out;
	}
	for (;;) {
		ssize_t n = read(in, buf, GZIP_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			imgf_error_errno(err, errno, "read '%s'", b->path);
			goto out;
		}
		if (n == 0)
			break;
		if (archive_write_data(a, buf, (size_t)n) != n) {
			imgf_error_set(err, IMGF_EXIT_FAIL, "compress '%s': %s", b->path,
				       archive_error_string(a));
			goto out;
		}
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "compress '%s': %s", b->path,
			       archive_error_string(a));
		goto out;
	}
	if (close(sink.fd) < 0) {
		sink.fd = -1;
		imgf_error_errno(err, errno, "write '%s'", out);
		goto out;
	}
	sink.fd = -1;
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_final_hex(&sink.d, hex);
	snprintf(b->digest, sizeof(b->digest), "sha256:%.64s", hex);
	b->size = sink.n;
	free(b->path);
	b->path = xstrdup(out);
	ret = 0;
out:
	if (sink.fd >= 0)
		close(sink.fd);
	if (ret < 0)
		unlink(out);
	imgf_digest_release(&sink.d);
	archive_entry_free(e);
	archive_write_free(a);
	free(buf);
	return ret;
}

static int parse_push_ref(const char *ref, struct imgf_image_ref *r, struct imgf_error **err)
{
	if (imgf_image_ref_parse(ref, r, err) < 0)
		return -1;
	if (r->digest || !r->tag) {
		imgf_image_ref_release(r);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s' names a digest: a push names a tag (REGISTRY/REPO:TAG)",
				      ref);
	}
	return 0;
}

int imgf_registry_push_archive(const char *archive, const char *image_id, const char *ref,
			       const char *work_dir, const struct imgf_push_opts *o,
			       char manifest_digest[72], struct imgf_push_stats *stats,
			       struct imgf_error **err)
{
	struct imgf_image_ref r;
	if (parse_push_ref(ref, &r, err) < 0)
		return -1;
	if (o->mount_from && !imgf_reg_repository_valid(o->mount_from)) {
		imgf_image_ref_release(&r);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "mount_from '%s' is not a repository name", o->mount_from);
	}
	struct image im;
	struct client c = {0};
	_cleanup_free_ char *mjson = NULL;
	int ret = -1;
	if (image_load(archive, image_id, work_dir, &im, err) < 0) {
		imgf_error_prefix(err, "image archive '%s'", archive);
		goto out_ref;
	}
	if (o->remove_archive)
		unlink(archive);
	if (imgf_regc_init(&c, r.registry, o, err) < 0)
		goto out;
	imgf_regc_scope(&c, r.repository, true);
	const char *from =
		o->mount_from && strcmp(o->mount_from, r.repository) != 0 ? o->mount_from : NULL;
	if (from)
		imgf_regc_scope(&c, from, false);
	for (size_t i = 0; o->gzip_level > 0 && i < im.nlayers; i++) {
		_cleanup_free_ char *gz = xasprintf("%s/layer-%zu.tar.gz", work_dir, i);
		if (gzip_layer(&im.layers[i], gz, o->gzip_level, err) < 0) {
			imgf_error_prefix(err, "layer %zu", i);
			goto out;
		}
		im.gzip = true;
	}
	log_info("pushing '%s' (%s/%s, %zu layers%s) to '%s'", image_id ? image_id : archive, im.os,
		 im.arch, im.nlayers, im.gzip ? ", gzip" : "", r.full);
	if (stats)
		memset(stats, 0, sizeof(*stats));
	for (size_t i = 0; i < im.nlayers; i++)
		if (imgf_regc_push_blob(&c, r.repository, &im.layers[i], from, false, stats, err) <
		    0)
			goto out;
	if (imgf_regc_push_blob(&c, r.repository, &im.config, from, false, stats, err) < 0)
		goto out;
	mjson = image_manifest_json(&im);
	if (imgf_regc_put_manifest(&c, r.repository, r.tag, MT_OCI_MANIFEST, mjson, manifest_digest,
				   err) < 0)
		goto out;
	ret = 0;
out:
	imgf_regc_release(&c);
	image_release(&im);
out_ref:
	if (ret < 0)
		imgf_error_prefix(err, "push '%s'", r.full);
	imgf_image_ref_release(&r);
	return ret;
}

/* ---- artifacts ---------------------------------------------------------------------------- */

static char *artifact_manifest_json(const char *artifact_type, const struct blob *config,
				    const char *config_type, const struct imgf_push_file *files,
				    const struct blob *layers, size_t n)
{
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *l = json_pack("{s:s,s:s,s:I}", "mediaType", files[i].media_type, "digest",
				      layers[i].digest, "size", (json_int_t)layers[i].size);
		if (files[i].title)
			json_object_set_new(l, "annotations",
					    json_pack("{s:s}", "org.opencontainers.image.title",
						      files[i].title));
		json_array_append_new(list, l);
	}
	json_t *m = json_pack("{s:i,s:s,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2, "mediaType",
			      MT_OCI_MANIFEST, "artifactType", artifact_type, "config", "mediaType",
			      config_type, "digest", config->digest, "size",
			      (json_int_t)config->size, "layers", list);
	char *s = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	return s;
}

int imgf_registry_push_artifact(const char *ref, const char *artifact_type, const char *config_type,
				const char *config_json, const struct imgf_push_file *files,
				size_t n, const struct imgf_push_opts *o, char manifest_digest[72],
				struct imgf_push_stats *stats, struct imgf_error **err)
{
	struct imgf_image_ref r;
	if (parse_push_ref(ref, &r, err) < 0)
		return -1;
	struct client c = {0};
	struct blob *layers = xcalloc(n + 1, sizeof(*layers));
	struct blob config = {.data = config_json, .size = strlen(config_json), .what = "config"};
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, config_json, config.size, hex);
	snprintf(config.digest, sizeof(config.digest), "sha256:%.64s", hex);
	_cleanup_free_ char *mjson = NULL;
	int ret = -1;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(files[i].path, &st) < 0) {
			imgf_error_errno(err, errno, "stat '%s'", files[i].path);
			goto out;
		}
		if (!files[i].digest || !imgf_registry_digest_valid(files[i].digest)) {
			imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': no sha256 digest",
				       files[i].path);
			goto out;
		}
		layers[i] = (struct blob){.path = xstrdup(files[i].path),
					  .size = (uint64_t)st.st_size,
					  .what = "file"};
		snprintf(layers[i].digest, sizeof(layers[i].digest), "%s", files[i].digest);
	}
	if (imgf_regc_init(&c, r.registry, o, err) < 0)
		goto out;
	imgf_regc_scope(&c, r.repository, true);
	if (stats)
		memset(stats, 0, sizeof(*stats));
	for (size_t i = 0; i < n; i++)
		if (imgf_regc_push_blob(&c, r.repository, &layers[i], NULL, false, stats, err) < 0)
			goto out;
	if (imgf_regc_push_blob(&c, r.repository, &config, NULL, false, stats, err) < 0)
		goto out;
	mjson = artifact_manifest_json(artifact_type, &config, config_type, files, layers, n);
	if (imgf_regc_put_manifest(&c, r.repository, r.tag, MT_OCI_MANIFEST, mjson, manifest_digest,
				   err) < 0)
		goto out;
	ret = 0;
out:
	imgf_regc_release(&c);
	for (size_t i = 0; i < n; i++)
		free(layers[i].path);
	free(layers);
	if (ret < 0)
		imgf_error_prefix(err, "push '%s'", r.full);
	imgf_image_ref_release(&r);
	return ret;
}

/* ---- the index -------------------------------------------------------------------------- */

struct member {
	struct imgf_image_ref ref;
	struct strbuf manifest;
	char *media_type;
	char digest[72];
	char *os, *arch, *variant;
};

static void member_release(struct member *m)
{
	imgf_image_ref_release(&m->ref);
	strbuf_release(&m->manifest);
	free(m->media_type);
	free(m->os);
	free(m->arch);
	free(m->variant);
}

/* Read one image of the index: its manifest, its config's platform; into `repo` if elsewhere. */
static int index_member(struct client *c, const char *repo, struct member *m,
			struct imgf_error **err)
{
	static const char accept[] =
		MT_OCI_MANIFEST ", " MT_DOCKER_MANIFEST ", " MT_OCI_INDEX ", " MT_DOCKER_LIST;
	const char *reference = m->ref.digest ? m->ref.digest : m->ref.tag;
	_cleanup_free_ char *url =
		xasprintf("%s/v2/%s/manifests/%s", c->base, m->ref.repository, reference);
	if (imgf_regc_get_doc(c, url, accept, m->ref.digest, &m->manifest, &m->media_type,
			      m->digest, err) < 0)
		return imgf_error_prefix(err, "image '%s'", m->ref.full);
	json_t *root = json_loadb(m->manifest.buf, m->manifest.len, 0, NULL);
	const char *mt = json_string_value(json_object_get(root, "mediaType"));
	if (mt) {
		free(m->media_type);
		m->media_type = xstrdup(mt);
	}
	int ret = -1;
	_cleanup_free_ char *config_url = NULL;
	json_t *config = json_object_get(root, "config");
	json_t *layers = json_object_get(root, "layers");
	const char *cdigest = json_string_value(json_object_get(config, "digest"));
	if (strcmp(m->media_type, MT_OCI_MANIFEST) != 0 &&
	    strcmp(m->media_type, MT_DOCKER_MANIFEST) != 0) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is a '%s', not an image manifest",
			       m->ref.full, m->media_type);
		goto out;
	}
	if (!cdigest || !imgf_registry_digest_valid(cdigest) || !json_is_array(layers)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "manifest of '%s' has no sha256 config digest or no layers",
			       m->ref.full);
		goto out;
	}
	config_url = xasprintf("%s/v2/%s/blobs/%s", c->base, m->ref.repository, cdigest);
	struct strbuf cfg = STRBUF_INIT;
	char got[72];
	if (imgf_regc_get_doc(c, config_url, NULL, cdigest, &cfg, NULL, got, err) < 0) {
		strbuf_release(&cfg);
		imgf_error_prefix(err, "config of '%s'", m->ref.full);
		goto out;
	}
	json_t *cj = json_loadb(cfg.buf, cfg.len, 0, NULL);
	const char *os = json_string_value(json_object_get(cj, "os"));
	const char *arch = json_string_value(json_object_get(cj, "architecture"));
	const char *variant = json_string_value(json_object_get(cj, "variant"));
	m->os = os ? xstrdup(os) : NULL;
	m->arch = arch ? xstrdup(arch) : NULL;
	m->variant = variant && *variant ? xstrdup(variant) : NULL;
	json_decref(cj);
	strbuf_release(&cfg);
	if (!m->os || !m->arch) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "config %s of '%s' names no os or architecture",
			       cdigest, m->ref.full);
		goto out;
	}
	if (strcmp(m->ref.repository, repo) != 0) {
		/* The index may only name manifests of its own repository: bring it there. */
		size_t n = json_array_size(layers);
		for (size_t i = 0; i <= n; i++) {
			json_t *d = i < n ? json_array_get(layers, i) : config;
			struct blob b = {.what = i < n ? "layer" : "config"};
			const char *dg = json_string_value(json_object_get(d, "digest"));
			json_t *sz = json_object_get(d, "size");
			if (!dg || !imgf_registry_digest_valid(dg) || !json_is_integer(sz) ||
			    json_integer_value(sz) < 0) {
				imgf_error_set(
					err, IMGF_EXIT_FAIL,
					"manifest of '%s': %s %zu has no sha256 digest or size",
					m->ref.full, b.what, i);
				goto out;
			}
			snprintf(b.digest, sizeof(b.digest), "%s", dg);
			b.size = (uint64_t)json_integer_value(sz);
			if (imgf_regc_push_blob(c, repo, &b, m->ref.repository, true, NULL, err) <
			    0)
				goto out;
		}
		char put[72];
		_cleanup_free_ char *body = xstrndup(m->manifest.buf, m->manifest.len);
		if (imgf_regc_put_manifest(c, repo, m->digest, m->media_type, body, put, err) < 0)
			goto out;
	}
	ret = 0;
out:
	json_decref(root);
	if (ret < 0)
		imgf_error_prefix(err, "image '%s'", m->ref.full);
	return ret;
}

int imgf_registry_push_index(const char *ref, const char *const *images,
			     const struct imgf_push_opts *o, char index_digest[72],
			     struct imgf_error **err)
{
	struct imgf_image_ref r;
	if (parse_push_ref(ref, &r, err) < 0)
		return -1;
	size_t n = 0;
	while (images[n])
		n++;
	struct member *ms = xcalloc(n ? n : 1, sizeof(*ms));
	struct imgf_index_entry *es = xcalloc(n ? n : 1, sizeof(*es));
	struct client c = {0};
	_cleanup_free_ char *json = NULL;
	int ret = -1;
	if (!n) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "no images to join");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ms[i].manifest = (struct strbuf)STRBUF_INIT;
		if (imgf_image_ref_parse(images[i], &ms[i].ref, err) < 0)
			goto out;
		if (strcmp(ms[i].ref.registry, r.registry) != 0) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "image '%s' is on registry '%s', the index goes to '%s' "
				       "(push the image there first)",
				       images[i], ms[i].ref.registry, r.registry);
			goto out;
		}
	}
	if (imgf_regc_init(&c, r.registry, o, err) < 0)
		goto out;
	imgf_regc_scope(&c, r.repository, true);
	for (size_t i = 0; i < n; i++) {
		bool seen = !strcmp(ms[i].ref.repository, r.repository);
		for (size_t j = 0; j < i && !seen; j++)
			seen = !strcmp(ms[i].ref.repository, ms[j].ref.repository);
		if (!seen)
			imgf_regc_scope(&c, ms[i].ref.repository, false);
	}
	for (size_t i = 0; i < n; i++) {
		if (index_member(&c, r.repository, &ms[i], err) < 0)
			goto out;
		es[i] = (struct imgf_index_entry){ms[i].media_type,   ms[i].digest,
						  ms[i].manifest.len, ms[i].os,
						  ms[i].arch,	      ms[i].variant};
		log_info("'%s': %s/%s%s%s, manifest %s", ms[i].ref.full, ms[i].os, ms[i].arch,
			 ms[i].variant ? "/" : "", ms[i].variant ? ms[i].variant : "",
			 ms[i].digest);
	}
	json = imgf_reg_index_json(es, n, err);
	if (!json)
		goto out;
	if (imgf_regc_put_manifest(&c, r.repository, r.tag, MT_OCI_INDEX, json, index_digest, err) <
	    0)
		goto out;
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		member_release(&ms[i]);
	free(ms);
	free(es);
	imgf_regc_release(&c);
	if (ret < 0)
		imgf_error_prefix(err, "push index '%s'", r.full);
	imgf_image_ref_release(&r);
	return ret;
}
