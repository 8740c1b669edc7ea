/* Images written as OCI layouts from layer tars, and the names image tars carry. */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>

#include "archive.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "ociimage.h"
#include "test.h"
#include "util.h"

static char *tmpdir(void)
{
	char *d = NULL;
	struct imgf_error *err = NULL;
	if (make_temp_dir("imgf-test-oci", &d, &err) < 0)
		abort();
	return d;
}

/* A layer tar with one file. */
static char *layer(const char *dir, const char *file, const char *content)
{
	struct imgf_error *err = NULL;
	char *p = xasprintf("%s/%s.layer.tar", dir, file);
	struct imgf_tar *t = imgf_tar_open(p, &err);
	CHECK(t);
	CHECK(imgf_tar_add_data(t, content, strlen(content), file, 0755, 0, 0, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	return p;
}

/* A member of a layout, extracted into dir/x and read. */
static json_t *member_json(const char *tar, const char *dir, const char *name)
{
	struct imgf_error *err = NULL;
	_cleanup_free_ char *x = xasprintf("%s/x", dir);
	rm_rf(x, &err);
	CHECK(mkdir_p(x, 0755, &err) == 0);
	CHECK(imgf_archive_extract(tar, x, &err) == 0);
	_cleanup_free_ char *p = path_join(x, name);
	json_error_t jerr;
	return json_load_file(p, 0, &jerr);
}

TEST(oci_write_layout_digests_and_name)
{
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *l1 = layer(d, "a", "hello");
	_cleanup_free_ char *l2 = layer(d, "b", "world");
	_cleanup_free_ char *out = xasprintf("%s/img.tar", d);
	const char *layers[] = {l1, l2, NULL};
	json_t *cfg = json_pack("{s:[s]}", "Entrypoint", "/usr/local/bin/x");
	struct imgf_oci_image img = {.name = "registry.k8s.io/kube-proxy:v1.31.2",
				     .arch = "arm64",
				     .layers = layers,
				     .config = cfg};
	struct imgf_error *err = NULL;
	char *id = NULL;
	setenv("SOURCE_DATE_EPOCH", "86400", 1);
	CHECK(imgf_oci_write(&img, out, &id, &err) == 0);
	CHECK(id && str_has_prefix(id, "sha256:"));

	json_t *idx = member_json(out, d, "index.json");
	json_t *m0 = json_array_get(json_object_get(idx, "manifests"), 0);
	json_t *ann = json_object_get(m0, "annotations");
	CHECK_STR(json_string_value(json_object_get(ann, "io.containerd.image.name")),
		  "registry.k8s.io/kube-proxy:v1.31.2");
	CHECK_STR(json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name")),
		  "v1.31.2");
	const char *mdig = json_string_value(json_object_get(m0, "digest"));
	CHECK(mdig && str_has_prefix(mdig, "sha256:"));
	_cleanup_free_ char *mpath = xasprintf("blobs/sha256/%s", mdig ? mdig + 7 : "");
	json_t *man = member_json(out, d, mpath);
	CHECK(man);
	const char *cdig =
		json_string_value(json_object_get(json_object_get(man, "config"), "digest"));
	CHECK_STR(cdig, id);
	json_t *ls = json_object_get(man, "layers");
	CHECK(json_array_size(ls) == 2);
	char hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(l2, IMGF_SHA256, hex, &err) == 0);
	_cleanup_free_ char *want = xasprintf("sha256:%s", hex);
	CHECK_STR(json_string_value(json_object_get(json_array_get(ls, 1), "digest")), want);
	_cleanup_free_ char *cpath = xasprintf("blobs/sha256/%s", id ? id + 7 : "");
	json_t *c = member_json(out, d, cpath);
	CHECK_STR(json_string_value(json_object_get(c, "architecture")), "arm64");
	CHECK_STR(json_string_value(json_object_get(c, "created")), "1970-01-02T00:00:00Z");
	CHECK_STR(json_string_value(json_array_get(
			  json_object_get(json_object_get(c, "rootfs"), "diff_ids"), 1)),
		  want);

	/* The same layers give the same image ID. */
	char *id2 = NULL;
	_cleanup_free_ char *out2 = xasprintf("%s/img2.tar", d);
	CHECK(imgf_oci_write(&img, out2, &id2, &err) == 0);
	CHECK_STR(id2, id);

	char **names = NULL;
	CHECK(imgf_image_tar_names(out, &names, &err) == 0);
	CHECK(names && names[0] && !names[1]);
	CHECK_STR(names ? names[0] : NULL, "registry.k8s.io/kube-proxy:v1.31.2");
	strv_free(names);
	unsetenv("SOURCE_DATE_EPOCH");
	json_decref(idx);
	json_decref(man);
	json_decref(c);
	json_decref(cfg);
	free(id);
	free(id2);
	rm_rf(d, &err);
}

/* A copy of a layout tar without the blob blobs/sha256/HEX. */
static char *copy_without(const char *dir, const char *tar, const char *hex)
{
	struct imgf_error *err = NULL;
	_cleanup_free_ char *x = xasprintf("%s/cw", dir);
	rm_rf(x, &err);
	CHECK(mkdir_p(x, 0755, &err) == 0);
	CHECK(imgf_archive_extract(tar, x, &err) == 0);
	_cleanup_free_ char *blob = xasprintf("%s/blobs/sha256/%s", x, hex);
	CHECK(unlink(blob) == 0);
	char *out = xasprintf("%s/without-%.12s.tar", dir, hex);
	struct imgf_tar *t = imgf_tar_open(out, &err);
	CHECK(t);
	CHECK(imgf_tar_add_tree(t, x, NULL, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	return out;
}

TEST(oci_verify_checks_blobs_manifest_and_platform)
{
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *l1 = layer(d, "a", "hello");
	_cleanup_free_ char *out = xasprintf("%s/img.tar", d);
	const char *layers[] = {l1, NULL};
	struct imgf_oci_image img = {
		.name = "registry.k8s.io/pause:3.10", .arch = "arm64", .layers = layers};
	struct imgf_error *err = NULL;
	char *id = NULL;
	CHECK(imgf_oci_write(&img, out, &id, &err) == 0);
	char md[72] = "";
	CHECK(imgf_oci_verify(out, "arm64", md, &err) == 0);
	CHECK(str_has_prefix(md, "sha256:"));
	CHECK(imgf_oci_verify(out, NULL, md, &err) == 0);

	/* An arm64 build refuses an amd64 image, naming both. */
	CHECK(imgf_oci_verify(out, "amd64", md, &err) < 0);
	CHECK_ERR(err, "the image is for linux/arm64, expected linux/amd64");
	imgf_error_free(err);
	err = NULL;

	/* A layout missing the layer its manifest names is refused. */
	char hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(l1, IMGF_SHA256, hex, &err) == 0);
	_cleanup_free_ char *nolayer = copy_without(d, out, hex);
	CHECK(imgf_oci_verify(nolayer, "arm64", md, &err) < 0);
	CHECK_ERR(err, "is not in the layout");
	imgf_error_free(err);
	err = NULL;

	/* So is one missing its config. */
	_cleanup_free_ char *noconfig = copy_without(d, out, id ? id + 7 : "x");
	CHECK(imgf_oci_verify(noconfig, "arm64", md, &err) < 0);
	CHECK_ERR(err, "names no image config held in the layout");
	imgf_error_free(err);
	err = NULL;
	free(id);
	rm_rf(d, &err);
}

TEST(oci_write_missing_layer_leaves_nothing)
{
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *out = xasprintf("%s/img.tar", d);
	const char *layers[] = {"/nonexistent/layer.tar", NULL};
	struct imgf_oci_image img = {.name = "example.com/x:1", .arch = "amd64", .layers = layers};
	struct imgf_error *err = NULL;
	CHECK(imgf_oci_write(&img, out, NULL, &err) < 0);
	CHECK_ERR(err, "/nonexistent/layer.tar");
	CHECK(access(out, F_OK) < 0);
	imgf_error_free(err);
	err = NULL;
	char **left = NULL;
	CHECK(rmdir(d) == 0); /* empty: no temp file stayed */
	(void)left;
}

TEST(image_tar_names_docker_archive)
{
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *p = xasprintf("%s/save.tar", d);
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p, &err);
	static const char m[] = "[{\"Config\":\"c.json\",\"RepoTags\":[\"example.com/a:v1\","
				"\"example.com/b:v2\"],\"Layers\":[]}]";
	CHECK(imgf_tar_add_data(t, m, strlen(m), "manifest.json", 0644, 0, 0, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	char **names = NULL;
	CHECK(imgf_image_tar_names(p, &names, &err) == 0);
	CHECK(names && names[0] && names[1] && !names[2]);
	CHECK_STR(names ? names[1] : NULL, "example.com/b:v2");
	strv_free(names);
	rm_rf(d, &err);
}

TEST(image_tar_names_refuses_a_non_image)
{
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *p = xasprintf("%s/plain.tar", d);
	struct imgf_error *err = NULL;
	struct imgf_tar *t = imgf_tar_open(p, &err);
	CHECK(imgf_tar_add_data(t, "x", 1, "etc/hosts", 0644, 0, 0, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	char **names = NULL;
	CHECK(imgf_image_tar_names(p, &names, &err) < 0);
	CHECK_ERR(err, "neither manifest.json");
	CHECK(!names);
	imgf_error_free(err);
	err = NULL;
	rm_rf(d, &err);
}

/* ---- What containerd is given of a layout tar (imgf_oci_import_layout) ---- */

/* The members of a tar: name -> content (regular files only). */
static json_t *tar_members(const char *tar)
{
	json_t *m = json_object();
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	CHECK(archive_read_open_filename(a, tar, 16384) == ARCHIVE_OK);
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		if (archive_entry_filetype(e) != AE_IFREG)
			continue;
		size_t n = (size_t)archive_entry_size(e);
		char *buf = xmalloc(n + 1);
		CHECK(archive_read_data(a, buf, n) == (la_ssize_t)n);
		json_object_set_new(m, archive_entry_pathname(e), json_stringn_nocheck(buf, n));
		free(buf);
	}
	archive_read_free(a);
	return m;
}

/* A tar with any member names (imgf_tar refuses the hostile ones): name, content, ..., NULL. */
static void raw_tar(const char *out, json_t *members, ...)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	CHECK(archive_write_open_filename(a, out) == ARCHIVE_OK);
	va_list ap;
	va_start(ap, members);
	const char *name;
	json_t *extra = json_object();
	while ((name = va_arg(ap, const char *)))
		json_object_set_new(extra, name, json_string(va_arg(ap, const char *)));
	va_end(ap);
	json_t *sets[] = {members, extra};
	for (size_t k = 0; k < 2; k++) {
		const char *n;
		json_t *v;
		json_object_foreach(sets[k], n, v)
		{
			struct archive_entry *e = archive_entry_new();
			/* "NAME#2" is a second member NAME. */
			_cleanup_free_ char *real = xstrndup(n, strcspn(n, "#"));
			archive_entry_set_pathname(e, real);
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_size(e, (la_int64_t)json_string_length(v));
			CHECK(archive_write_header(a, e) == ARCHIVE_OK);
			CHECK(archive_write_data(a, json_string_value(v), json_string_length(v)) ==
			      (la_ssize_t)json_string_length(v));
			archive_entry_free(e);
		}
	}
	archive_write_close(a);
	archive_write_free(a);
	json_decref(extra);
}

/* Two images written by imgf_oci_write: the verified one and the one an attack slips in. */
struct two_images {
	char *dir, *good, *evil;
	json_t *g, *v; /* their members */
	char good_md[72], evil_md[72];
};

static void two_images(struct two_images *t)
{
	struct imgf_error *err = NULL;
	t->dir = tmpdir();
	_cleanup_free_ char *l1 = layer(t->dir, "a", "the verified layer");
	_cleanup_free_ char *l2 = layer(t->dir, "b", "something else");
	t->good = xasprintf("%s/good.tar", t->dir);
	t->evil = xasprintf("%s/evil.tar", t->dir);
	const char *la[] = {l1, NULL}, *lb[] = {l2, NULL};
	struct imgf_oci_image gi = {
		.name = "registry.k8s.io/pause:3.10", .arch = "amd64", .layers = la};
	struct imgf_oci_image ei = {
		.name = "registry.k8s.io/pause:3.10", .arch = "amd64", .layers = lb};
	CHECK(imgf_oci_write(&gi, t->good, NULL, &err) == 0);
	CHECK(imgf_oci_write(&ei, t->evil, NULL, &err) == 0);
	CHECK(imgf_oci_verify(t->good, "amd64", t->good_md, &err) == 0);
	CHECK(imgf_oci_verify(t->evil, "amd64", t->evil_md, &err) == 0);
	t->g = tar_members(t->good);
	t->v = tar_members(t->evil);
}

static void two_images_release(struct two_images *t)
{
	struct imgf_error *err = NULL;
	rm_rf(t->dir, &err);
	free(t->dir);
	free(t->good);
	free(t->evil);
	json_decref(t->g);
	json_decref(t->v);
}

/* The imported layout holds exactly the good image's blobs, named `name` and nothing else. */
static void check_imported(struct two_images *t, const char *out, const char *name)
{
	struct imgf_error *err = NULL;
	json_t *m = tar_members(out);
	CHECK(json_object_get(m, "oci-layout"));
	CHECK(!json_object_get(m, "manifest.json"));
	const char *k;
	json_t *v;
	size_t blobs = 0;
	json_object_foreach(m, k, v)
	{
		if (!str_has_prefix(k, "blobs/"))
			continue;
		blobs++;
		CHECK(json_equal(v, json_object_get(t->g, k)));
	}
	CHECK(blobs == 3); /* manifest, config, layer */
	char **names = NULL;
	CHECK(imgf_image_tar_names(out, &names, &err) == 0);
	CHECK(names && names[0] && !names[1]);
	CHECK_STR(names ? names[0] : NULL, name);
	strv_free(names);
	char md[72] = "";
	CHECK(imgf_oci_verify(out, "amd64", md, &err) == 0);
	CHECK_STR(md, t->good_md);
	json_decref(m);
}

TEST(oci_import_drops_a_docker_manifest_json_beside_a_missing_oci_layout)
{
	/* ctr reads a tar without oci-layout as a docker archive: manifest.json's image, not
	 * the verified index's. */
	struct two_images t;
	two_images(&t);
	_cleanup_free_ char *hostile = xasprintf("%s/hostile.tar", t.dir);
	json_t *m = json_deep_copy(t.g);
	json_object_del(m, "oci-layout");
	const char *k;
	json_t *v;
	json_object_foreach(t.v, k, v) if (str_has_prefix(k, "blobs/")) json_object_set(m, k, v);
	_cleanup_free_ char *docker = xasprintf(
		"[{\"Config\":\"blobs/sha256/x\",\"RepoTags\":[\"registry.k8s.io/pause:3.10\"],"
		"\"Layers\":[]}]");
	raw_tar(hostile, m, "manifest.json", docker, NULL);
	char md[72] = "";
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = xasprintf("%s/import.tar", t.dir);
	CHECK(imgf_oci_import_layout(hostile, "amd64", "registry.k8s.io/pause:3.10", out, md,
				     &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK_STR(md, t.good_md);
	check_imported(&t, out, "registry.k8s.io/pause:3.10");
	json_decref(m);
	two_images_release(&t);
}

TEST(oci_import_refuses_a_second_index_json_behind_dot_dot)
{
	/* The verifier read "index.json"; containerd cleans "x/../index.json" to the same name
	 * and takes the last one. */
	struct two_images t;
	two_images(&t);
	_cleanup_free_ char *hostile = xasprintf("%s/hostile.tar", t.dir);
	json_t *m = json_deep_copy(t.g);
	const char *k;
	json_t *v;
	json_object_foreach(t.v, k, v) if (str_has_prefix(k, "blobs/")) json_object_set(m, k, v);
	const char *evil_index = json_string_value(json_object_get(t.v, "index.json"));
	raw_tar(hostile, m, "x/../index.json", evil_index, NULL);
	char md[72] = "";
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = xasprintf("%s/import.tar", t.dir);
	CHECK(imgf_oci_verify(hostile, "amd64", md, &err) < 0);
	CHECK_ERR(err, "member 'x/../index.json' is not a plain name");
	imgf_error_clear(&err);
	CHECK(imgf_oci_import_layout(hostile, "amd64", "registry.k8s.io/pause:3.10", out, md,
				     &err) < 0);
	CHECK_ERR(err, "member 'x/../index.json' is not a plain name");
	CHECK(access(out, F_OK) < 0);
	imgf_error_clear(&err);

	/* The same name twice is refused as well, as is a blob twice. */
	raw_tar(hostile, m, "index.json#2", evil_index, NULL);
	CHECK(imgf_oci_import_layout(hostile, "amd64", "registry.k8s.io/pause:3.10", out, md,
				     &err) < 0);
	CHECK_ERR(err, "index.json appears twice");
	imgf_error_clear(&err);
	_cleanup_free_ char *twice = xasprintf("blobs/sha256/%s#2", t.good_md + 7);
	_cleanup_free_ char *mname = xasprintf("blobs/sha256/%s", t.good_md + 7);
	raw_tar(hostile, t.g, twice, json_string_value(json_object_get(t.g, mname)), NULL);
	CHECK(imgf_oci_verify(hostile, "amd64", md, &err) < 0);
	CHECK_ERR(err, "appears twice");
	imgf_error_clear(&err);
	json_decref(m);
	two_images_release(&t);
}

TEST(oci_import_names_the_image_itself_whatever_the_annotation_says)
{
	/* io.containerd.image.name in a mirror's index would store the verified bytes under
	 * another image's name (here: kube-apiserver's), or the evil index entry under ours. */
	struct two_images t;
	two_images(&t);
	_cleanup_free_ char *hostile = xasprintf("%s/hostile.tar", t.dir);
	json_error_t jerr;
	json_t *idx = json_loads(json_string_value(json_object_get(t.g, "index.json")), 0, &jerr);
	json_t *ann = json_object_get(json_array_get(json_object_get(idx, "manifests"), 0),
				      "annotations");
	json_object_set_new(ann, "io.containerd.image.name",
			    json_string("registry.k8s.io/kube-apiserver:v1.37.2"));
	json_object_set_new(ann, "org.opencontainers.image.ref.name",
			    json_string("registry.k8s.io/kube-apiserver:v1.37.2"));
	_cleanup_free_ char *text = json_dumps(idx, JSON_COMPACT);
	json_t *m = json_deep_copy(t.g);
	json_object_set_new(m, "index.json", json_string(text));
	raw_tar(hostile, m, NULL);
	char md[72] = "";
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = xasprintf("%s/import.tar", t.dir);
	CHECK(imgf_oci_import_layout(hostile, "amd64", "registry.k8s.io/pause:3.10", out, md,
				     &err) == 0);
	check_imported(&t, out, "registry.k8s.io/pause:3.10");
	json_t *got = tar_members(out);
	json_t *gidx = json_loads(json_string_value(json_object_get(got, "index.json")), 0, &jerr);
	json_t *gann = json_object_get(json_array_get(json_object_get(gidx, "manifests"), 0),
				       "annotations");
	CHECK(json_object_size(gann) == 2);
	CHECK_STR(json_string_value(json_object_get(gann, "org.opencontainers.image.ref.name")),
		  "3.10");
	json_decref(gidx);
	json_decref(got);
	json_decref(idx);
	json_decref(m);
	two_images_release(&t);
}

TEST(oci_import_of_a_tampered_blob_fails_and_leaves_nothing)
{
	struct two_images t;
	two_images(&t);
	_cleanup_free_ char *hostile = xasprintf("%s/hostile.tar", t.dir);
	json_t *m = json_deep_copy(t.g);
	const char *k;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(m, tmp, k, v)
	{
		if (str_has_prefix(k, "blobs/") && json_string_length(v) > 1000)
			json_object_set_new(m, k, json_string("tampered"));
	}
	raw_tar(hostile, m, NULL);
	char md[72] = "";
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = xasprintf("%s/import.tar", t.dir);
	CHECK(imgf_oci_import_layout(hostile, "amd64", "registry.k8s.io/pause:3.10", out, md,
				     &err) < 0);
	CHECK_ERR(err, "does not match its digest");
	CHECK(access(out, F_OK) < 0);
	json_decref(m);
	imgf_error_free(err);
	DIR *dir = opendir(t.dir); /* the blobs kept while reading are gone too */
	struct dirent *de;
	while (dir && (de = readdir(dir)))
		CHECK(!str_has_prefix(de->d_name, ".blobs-"));
	if (dir)
		closedir(dir);
	two_images_release(&t);
}
