/*
 * An OCI image layout tar from layer tars on the host. The layers are referenced
 * uncompressed (application/vnd.oci.image.layer.v1.tar), so a layer's digest is its diff ID
 * and each file is read once to hash it and once to copy it into the layout.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "archive.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "ociimage.h"
#include "strbuf.h"
#include "util.h"

#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar"

char *imgf_oci_created(void)
{
	struct imgf_epoch e;
	time_t t = imgf_epoch_now(&e, NULL) == 0 && e.set ? (time_t)e.value : 0;
	struct tm tm;
	char buf[32];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return xstrdup(buf);
}

/* The tag part of a reference "host[:port]/repo:tag" (after the last '/'), or NULL. */
static const char *ref_tag(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *colon = strrchr(slash ? slash : name, ':');
	return colon ? colon + 1 : NULL;
}

int imgf_oci_layout_write(const char *out_tar, const char *index_json,
			  const struct imgf_oci_blob *blobs, size_t n, struct imgf_error **err)
{
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	_cleanup_free_ char *dir = path_dirname(out_tar);
	_cleanup_free_ char *tmp = NULL;
	int fd = make_temp_file(dir, path_basename(out_tar), &tmp, err);
	if (fd < 0)
		return -1;
	close(fd);
	struct imgf_tar *t = imgf_tar_open(tmp, err);
	if (!t || imgf_tar_add_data(t, layout, strlen(layout), "oci-layout", 0644, 0, 0, err) < 0 ||
	    imgf_tar_add_data(t, index_json, strlen(index_json), "index.json", 0644, 0, 0, err) <
		    0 ||
	    imgf_tar_add_dir(t, "blobs", 0755, 0, 0, err) < 0 ||
	    imgf_tar_add_dir(t, "blobs/sha256", 0755, 0, 0, err) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = !strcmp(blobs[i].digest, blobs[j].digest);
		if (dup)
			continue;
		_cleanup_free_ char *name = xasprintf("blobs/sha256/%s", blobs[i].digest + 7);
		int r = blobs[i].path ? imgf_tar_add_file(t, blobs[i].path, name, 0644, 0, 0, err)
				      : imgf_tar_add_data(t, blobs[i].data, blobs[i].len, name,
							  0644, 0, 0, err);
		if (r < 0)
			goto fail;
	}
	int r = imgf_tar_close(t, err);
	imgf_tar_free(t);
	t = NULL;
	if (r < 0)
		goto fail;
	if (rename(tmp, out_tar) < 0) {
		imgf_error_errno(err, errno, "rename '%s' to '%s'", tmp, out_tar);
		goto fail;
	}
	return 0;
fail:
	if (t)
		imgf_tar_free(t);
	unlink(tmp);
	return -1;
}

int imgf_oci_write(const struct imgf_oci_image *img, const char *out_tar, char **image_id,
		   struct imgf_error **err)
{
	return imgf_oci_write_config(img, out_tar, image_id, NULL, err);
}

int imgf_oci_write_config(const struct imgf_oci_image *img, const char *out_tar, char **image_id,
			  char **config_json, struct imgf_error **err)
{
	size_t n = 0;
	while (img->layers[n])
		n++;
	char(*hex)[IMGF_DIGEST_HEX_MAX] = xcalloc(n ? n : 1, sizeof(*hex));
	json_t *diff_ids = json_array(), *layers = json_array();
	int ret = -1;
	_cleanup_free_ char *cfg_json = NULL, *man_json = NULL, *idx_json = NULL;
	_cleanup_free_ char *created = NULL;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(img->layers[i], &st) < 0) {
			imgf_error_errno(err, errno, "layer '%s'", img->layers[i]);
			goto out;
		}
		if (imgf_digest_file(img->layers[i], IMGF_SHA256, hex[i], err) < 0)
			goto out;
		json_array_append_new(diff_ids, json_sprintf("sha256:%s", hex[i]));
		json_array_append_new(layers,
				      json_pack("{s:s,s:s,s:I}", "mediaType", MT_LAYER, "digest",
						json_string_value(json_array_get(diff_ids, i)),
						"size", (json_int_t)st.st_size));
	}
	created = imgf_oci_created();
	json_t *cfg = json_pack("{s:s,s:s,s:s,s:o,s:{s:s,s:O}}", "created", created, "architecture",
				img->arch, "os", "linux", "config",
				img->config ? json_incref(img->config) : json_object(), "rootfs",
				"type", "layers", "diff_ids", diff_ids);
	cfg_json = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(cfg);
	char cfg_hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, cfg_json, strlen(cfg_json), cfg_hex);

	json_t *man = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:O}", "schemaVersion", 2, "mediaType",
				MT_MANIFEST, "config", "mediaType", MT_CONFIG, "digest", "", "size",
				(json_int_t)strlen(cfg_json), "layers", layers);
	json_object_set_new(json_object_get(man, "config"), "digest",
			    json_sprintf("sha256:%s", cfg_hex));
	man_json = json_dumps(man, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(man);
	char man_hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, man_json, strlen(man_json), man_hex);

	json_t *ann = json_pack("{s:s}", "io.containerd.image.name", img->name);
	if (ref_tag(img->name))
		json_object_set_new(ann, "org.opencontainers.image.ref.name",
				    json_string(ref_tag(img->name)));
	json_t *idx = json_pack("{s:i,s:s,s:[{s:s,s:s,s:I,s:o}]}", "schemaVersion", 2, "mediaType",
				MT_INDEX, "manifests", "mediaType", MT_MANIFEST, "digest", "",
				"size", (json_int_t)strlen(man_json), "annotations", ann);
	json_object_set_new(json_array_get(json_object_get(idx, "manifests"), 0), "digest",
			    json_sprintf("sha256:%s", man_hex));
	idx_json = json_dumps(idx, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(idx);

	struct imgf_oci_blob *blobs = xcalloc(n + 2, sizeof(*blobs));
	char **digests = xcalloc(n + 2, sizeof(*digests));
	digests[0] = xasprintf("sha256:%s", man_hex);
	digests[1] = xasprintf("sha256:%s", cfg_hex);
	blobs[0] = (struct imgf_oci_blob){digests[0], man_json, strlen(man_json), NULL};
	blobs[1] = (struct imgf_oci_blob){digests[1], cfg_json, strlen(cfg_json), NULL};
	for (size_t i = 0; i < n; i++) {
		digests[i + 2] = xasprintf("sha256:%s", hex[i]);
		blobs[i + 2] = (struct imgf_oci_blob){digests[i + 2], NULL, 0, img->layers[i]};
	}
	int r = imgf_oci_layout_write(out_tar, idx_json, blobs, n + 2, err);
	for (size_t i = 0; i < n + 2; i++)
		free(digests[i]);
	free(digests);
	free(blobs);
	if (r < 0)
		goto out;
	if (image_id)
		*image_id = xasprintf("sha256:%s", cfg_hex);
	if (config_json)
		*config_json = STEAL_POINTER(&cfg_json);
	ret = 0;
out:
	json_decref(diff_ids);
	json_decref(layers);
	free(hex);
	if (ret < 0)
		imgf_error_prefix(err, "image '%s': write '%s'", img->name, out_tar);
	return ret;
}

/* ---- Names in an image tar ---- */

#define INDEX_MAX (4u << 20) /* manifest.json / index.json larger than this are refused */

static void names_from_docker(json_t *root, char ***names)
{
	size_t i, j;
	json_t *m, *tag;
	json_array_foreach(root, i, m)
	{
		json_array_foreach(json_object_get(m, "RepoTags"), j,
				   tag) if (json_is_string(tag)) *names =
			strv_push(*names, xstrdup(json_string_value(tag)));
	}
}

static void names_from_oci(json_t *root, char ***names)
{
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(root, "manifests"), i, m)
	{
		json_t *ann = json_object_get(m, "annotations");
		const char *n = json_string_value(json_object_get(ann, "io.containerd.image.name"));
		const char *r = json_string_value(
			json_object_get(ann, "org.opencontainers.image.ref.name"));
		if (!n && r && strchr(r, '/') && strchr(r, ':'))
			n = r;
		if (n)
			*names = strv_push(*names, xstrdup(n));
	}
}

/* The current member (index.json, manifest.json) read and parsed, capped at INDEX_MAX. */
static json_t *member_json(struct archive *a, struct archive_entry *e, const char *tar,
			   const char *name, struct imgf_error **err)
{
	if (archive_entry_size(e) > (la_int64_t)INDEX_MAX) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': %s is over %u bytes", tar,
			       name, INDEX_MAX);
		return NULL;
	}
	size_t len = (size_t)archive_entry_size(e);
	_cleanup_free_ char *buf = xmalloc(len + 1);
	if (archive_read_data(a, buf, len) != (la_ssize_t)len) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': read %s: %s", tar, name,
			       archive_error_string(a));
		return NULL;
	}
	json_error_t jerr;
	json_t *root = json_loadb(buf, len, 0, &jerr);
	if (!root)
		imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': %s: %s", tar, name, jerr.text);
	return root;
}

int imgf_image_tar_names(const char *tar, char ***names, struct imgf_error **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	archive_read_support_filter_all(a);
	*names = xcalloc(1, sizeof(**names));
	int ret = -1, found = 0;
	if (archive_read_open_filename(a, tar, 64 * 1024) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': %s", tar,
			       archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		if (str_has_prefix(name, "./"))
			name += 2;
		bool docker = !strcmp(name, "manifest.json"), oci = !strcmp(name, "index.json");
		if (!docker && !oci)
			continue;
		json_t *root = member_json(a, e, tar, name, err);
		if (!root)
			goto out;
		if (docker)
			names_from_docker(root, names);
		else
			names_from_oci(root, names);
		json_decref(root);
		found++;
	}
	if (r != ARCHIVE_EOF) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': %s", tar,
			       archive_error_string(a));
		goto out;
	}
	if (!found) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "image tar '%s': neither manifest.json (docker save) nor "
			       "index.json (OCI layout)",
			       tar);
		goto out;
	}
	ret = 0;
out:
	archive_read_free(a);
	if (ret < 0) {
		strv_free(*names);
		*names = NULL;
	}
	return ret;
}

/* ---- Verifying a layout ---- */

/* A small blob (manifest, config) kept while the layout is hashed, parsed once verified. */
#define SMALL_BLOB_MAX (256u * 1024)

/* Whether a member name is plain: relative, no "." or ".." component, no empty one (a
 * directory's trailing '/' aside). containerd cleans names before it reads them; a name it
 * would clean differently from the verifier's reading is refused. */
static bool plain_member_name(const char *name)
{
	if (!*name || name[0] == '/')
		return false;
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");
		if ((n == 0 && p[n]) || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/*
 * One pass over a layout tar: every blobs/sha256/HEX member hashed against HEX (the first of a
 * name; with `blob_dir`, its bytes kept there as the file HEX, written as they were hashed),
 * index.json read (only one), names checked. Then the index names one manifest, and the
 * manifest's config and layers are verified blobs. On success *manifest (a new reference) is
 * the manifest, *mt its media type.
 */
static int read_layout(const char *tar, const char *arch, const char *blob_dir,
		       char manifest_digest[72], json_t **manifest_out, char **mt,
		       struct imgf_error **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	int ret = -1;
	json_t *verified = json_object(); /* hex -> the blob's text when small, else true */
	json_t *index = NULL, *manifest = NULL, *config = NULL;
	char *buf = xmalloc(1 << 16);
	struct strbuf small = STRBUF_INIT;
	if (archive_read_open_filename(a, tar, 64 * 1024) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': %s", tar,
			       archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		if (str_has_prefix(name, "./"))
			name += 2;
		if (!plain_member_name(name) && strcmp(name, "")) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "image tar '%s': member '%s' is not a plain name (absolute, "
				       "or with a '.', '..' or empty component)",
				       tar, archive_entry_pathname(e));
			goto out;
		}
		if (!strcmp(name, "index.json")) {
			if (index) {
				imgf_error_set(err, IMGF_EXIT_FAIL,
					       "image tar '%s': index.json appears twice", tar);
				goto out;
			}
			if (!(index = member_json(a, e, tar, name, err)))
				goto out;
			continue;
		}
		if (!str_has_prefix(name, "blobs/sha256/") || archive_entry_filetype(e) != AE_IFREG)
			continue;
		const char *want = name + strlen("blobs/sha256/");
		if (!str_is_hex(want, strlen(want)) || strlen(want) != 64) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "image tar '%s': blob name '%s' is not a sha256 digest", tar,
				       name);
			goto out;
		}
		if (json_object_get(verified, want)) {
			imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': blob %s appears twice",
				       tar, want);
			goto out;
		}
		bool keep = archive_entry_size(e) <= (la_int64_t)SMALL_BLOB_MAX;
		strbuf_reset(&small);
		FILE *f = NULL;
		_cleanup_free_ char *bpath = blob_dir ? path_join(blob_dir, want) : NULL;
		if (bpath && !(f = fopen(bpath, "wxe"))) {
			imgf_error_errno(err, errno, "create '%s'", bpath);
			goto out;
		}
		struct imgf_digest d;
		imgf_digest_init(&d, IMGF_SHA256);
		la_ssize_t k;
		bool wrote = true;
		while ((k = archive_read_data(a, buf, 1 << 16)) > 0) {
			imgf_digest_update(&d, buf, (size_t)k);
			if (keep)
				strbuf_add(&small, buf, (size_t)k);
			if (f && fwrite(buf, 1, (size_t)k, f) != (size_t)k)
				wrote = false;
		}
		char hex[IMGF_DIGEST_HEX_MAX];
		imgf_digest_final_hex(&d, hex);
		imgf_digest_release(&d);
		if (f && fclose(f) != 0)
			wrote = false;
		if (!wrote) {
			imgf_error_errno(err, errno, "write '%s'", bpath);
			goto out;
		}
		if (k < 0 || strcmp(hex, want)) {
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "image tar '%s': blob %s %s (got sha256 %s)", tar, want,
				       k < 0 ? "unreadable" : "does not match its digest", hex);
			goto out;
		}
		json_object_set_new(verified, want,
				    keep ? json_stringn_nocheck(small.buf, small.len)
					 : json_true());
	}
	if (r != ARCHIVE_EOF) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "image tar '%s': %s", tar,
			       archive_error_string(a));
		goto out;
	}
	json_t *ms = json_object_get(index, "manifests");
	const char *md = json_string_value(json_object_get(json_array_get(ms, 0), "digest"));
	if (json_array_size(ms) != 1 || !md || !str_has_prefix(md, "sha256:") ||
	    !json_object_get(verified, md + 7)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "image tar '%s': index.json does not name exactly one manifest "
			       "held in the layout",
			       tar);
		goto out;
	}
	/* The manifest's config and layers are blobs of the layout too. */
	const char *mtext = json_string_value(json_object_get(verified, md + 7));
	manifest = mtext ? json_loads(mtext, 0, NULL) : NULL;
	const char *cd =
		json_string_value(json_object_get(json_object_get(manifest, "config"), "digest"));
	const char *ctext = cd && str_has_prefix(cd, "sha256:")
				    ? json_string_value(json_object_get(verified, cd + 7))
				    : NULL;
	config = ctext ? json_loads(ctext, 0, NULL) : NULL;
	if (!json_is_object(config)) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "image tar '%s': manifest %s names no image config held in the "
			       "layout",
			       tar, md);
		goto out;
	}
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(manifest, "layers"), i, l)
	{
		const char *ld = json_string_value(json_object_get(l, "digest"));
		if (!ld || !str_has_prefix(ld, "sha256:") || !json_object_get(verified, ld + 7)) {
			imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"image tar '%s': layer %s of manifest %s is not in the layout", tar,
				ld ? ld : "(no digest)", md);
			goto out;
		}
	}
	const char *got = json_string_value(json_object_get(config, "architecture"));
	if (arch && (!got || strcmp(got, arch))) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "image tar '%s': the image is for linux/%s, expected linux/%s", tar,
			       got ? got : "(no architecture)", arch);
		goto out;
	}
	if (mt) {
		const char *t = json_string_value(json_object_get(manifest, "mediaType"));
		if (!t)
			t = json_string_value(json_object_get(json_array_get(ms, 0), "mediaType"));
		*mt = xstrdup(t ? t : MT_MANIFEST);
	}
	snprintf(manifest_digest, 72, "%s", md);
	if (manifest_out)
		*manifest_out = json_incref(manifest);
	ret = 0;
out:
	free(buf);
	strbuf_release(&small);
	json_decref(config);
	json_decref(manifest);
	json_decref(index);
	json_decref(verified);
	archive_read_free(a);
	return ret;
}

int imgf_oci_verify(const char *tar, const char *arch, char manifest_digest[72],
		    struct imgf_error **err)
{
	return read_layout(tar, arch, NULL, manifest_digest, NULL, NULL, err);
}

int imgf_oci_import_layout(const char *tar, const char *arch, const char *name, const char *out_tar,
			   char manifest_digest[72], struct imgf_error **err)
{
	_cleanup_free_ char *dir = path_dirname(out_tar);
	_cleanup_free_ char *tmpl = xasprintf("%s/.blobs-XXXXXX", dir);
	if (!mkdtemp(tmpl))
		return imgf_error_errno(err, errno, "create a directory in '%s'", dir);
	json_t *manifest = NULL;
	_cleanup_free_ char *mt = NULL;
	int r = read_layout(tar, arch, tmpl, manifest_digest, &manifest, &mt, err);
	if (r == 0) {
		/* The manifest, its config and its layers: nothing else of the tar. */
		json_t *layers = json_object_get(manifest, "layers");
		size_t n = 2 + json_array_size(layers);
		struct imgf_oci_blob *blobs = xcalloc(n, sizeof(*blobs));
		char **paths = xcalloc(n, sizeof(*paths));
		const char *digests[3] = {manifest_digest,
					  json_string_value(json_object_get(
						  json_object_get(manifest, "config"), "digest")),
					  NULL};
		for (size_t i = 0; i < n; i++) {
			const char *dg = i < 2 ? digests[i]
					       : json_string_value(json_object_get(
							 json_array_get(layers, i - 2), "digest"));
			paths[i] = path_join(tmpl, dg + 7);
			blobs[i] = (struct imgf_oci_blob){.digest = dg, .path = paths[i]};
		}
		struct stat st;
		json_int_t msize = stat(paths[0], &st) == 0 ? (json_int_t)st.st_size : 0;
		json_t *ann = json_pack("{s:s}", "io.containerd.image.name", name);
		if (ref_tag(name))
			json_object_set_new(ann, "org.opencontainers.image.ref.name",
					    json_string(ref_tag(name)));
		json_t *idx =
			json_pack("{s:i,s:s,s:[{s:s,s:s,s:I,s:o}]}", "schemaVersion", 2,
				  "mediaType", MT_INDEX, "manifests", "mediaType", mt, "digest",
				  manifest_digest, "size", msize, "annotations", ann);
		_cleanup_free_ char *idx_json = json_dumps(idx, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(idx);
		r = imgf_oci_layout_write(out_tar, idx_json, blobs, n, err);
		for (size_t i = 0; i < n; i++)
			free(paths[i]);
		free(paths);
		free(blobs);
	}
	json_decref(manifest);
	struct imgf_error *rm_err = NULL;
	rm_rf(tmpl, &rm_err);
	imgf_error_free(rm_err);
	if (r < 0)
		imgf_error_prefix(err, "image '%s'", name);
	return r;
}
