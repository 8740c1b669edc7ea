/* Images written as OCI layouts from layer tars, and the names image tars carry. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
