/*
 * The post-processor seam (src/postprocessor.h, post-processors/): the table, what validate
 * refuses before anything is built (unknown types and keys, the ova's variables, a builder
 * without a disk), and what each run leaves: checksum's sidecar right after the disk, the
 * manifest entry once per image whether listed or not, ova's refusal without a disk.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "manifest.h"
#include "postprocessor.h"
#include "test.h"
#include "util.h"

extern const struct imgf_builder_ops imgf_docker_builder, imgf_qemu_builder;

struct fixture {
	struct imgf_config cfg;
	struct imgf_image_def def;
	struct imgf_build build;
	char *dir; /* the output directory (run tests only) */
};

/* An image with the given post_processors (JSON) under `builder`, the shipped variables
 * the ova needs, and `extra` variables over them ("{}" for none). */
static void fixture_init(struct fixture *f, const struct imgf_builder_ops *builder, const char *pps,
			 const char *extra)
{
	*f = (struct fixture){0};
	f->cfg.path = xstrdup("test.json");
	f->cfg.vars = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "build_name", "ubuntu-2204",
				"kubernetes_semver", "v1.31.2", "distro_name", "ubuntu",
				"distro_version", "22.04", "containerd_version", "2.0.0",
				"kubernetes_cni_semver", "v1.5.1");
	json_t *more = json_loads(extra, 0, NULL);
	json_object_update(f->cfg.vars, more);
	json_decref(more);
	f->def.name = xstrdup("capi-ova");
	f->def.file = xstrdup("images/test.json");
	f->def.post_processors = json_loads(pps, 0, NULL);
	CHECK(json_is_array(f->def.post_processors));
	f->build = (struct imgf_build){
		.config = &f->cfg,
		.def = &f->def,
		.builder = builder,
		.inputs = json_array(),
		.labels = json_object(),
	};
}

static void fixture_release(struct fixture *f)
{
	if (f->dir) {
		rm_rf(f->dir, NULL);
		free(f->dir);
	}
	free(f->build.out_dir);
	json_decref(f->build.inputs);
	json_decref(f->build.labels);
	json_decref(f->def.post_processors);
	free(f->def.name);
	free(f->def.file);
	json_decref(f->cfg.vars);
	free(f->cfg.path);
}

/* validate's error for the image, or NULL when it passes (caller frees). */
static struct imgf_error *validate(const struct imgf_builder_ops *builder, const char *pps,
				   const char *extra)
{
	struct fixture f;
	fixture_init(&f, builder, pps, extra);
	struct imgf_error *err = NULL;
	int r = imgf_post_processors_validate(&f.build, &err);
	CHECK((r < 0) == (err != NULL));
	fixture_release(&f);
	return err;
}

TEST(the_table_lists_every_post_processor_and_nothing_else)
{
	static const char *const names[] = {"checksum", "manifest", "ova", "raw", "vhd", "gce"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		const struct imgf_post_processor_ops *ops = imgf_post_processor_find(names[i]);
		CHECK(ops != NULL);
		if (!ops)
			continue;
		CHECK_STR(ops->name, names[i]);
		CHECK(ops->keys != NULL && ops->run != NULL);
	}
	CHECK(imgf_post_processor_find("Ova") == NULL);
	CHECK(imgf_post_processor_find("") == NULL);
	CHECK(imgf_post_processor_find(NULL) == NULL);
	char *known = imgf_post_processor_names();
	CHECK_STR(known, "'checksum', 'manifest', 'ova', 'raw', 'vhd', 'gce'");
	free(known);
	/* checksum before, manifest after whatever the image lists */
	CHECK(imgf_post_processor_find("checksum")->when == IMGF_PP_FIRST);
	CHECK(imgf_post_processor_find("manifest")->when == IMGF_PP_LAST);
	CHECK(imgf_post_processor_find("ova")->when == IMGF_PP_LISTED);
	CHECK(imgf_post_processor_find("raw")->when == IMGF_PP_LISTED);
	CHECK(imgf_post_processor_find("vhd")->when == IMGF_PP_LISTED);
	CHECK(imgf_post_processor_find("gce")->when == IMGF_PP_LISTED);
}

TEST(the_upload_list_is_the_builders_disks_and_the_post_processors_outputs)
{
	char **exts = imgf_upload_exts();
	static const char *const want[] = {"qcow2", "ova", "raw", "vhd", "tar.gz"};
	CHECK(strv_len(exts) == ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want) && i < strv_len(exts); i++)
		CHECK_STR(exts[i], want[i]);
	strv_free(exts);
	/* the docker builder's artifact is an Engine image, the qemu builder's a disk */
	CHECK(imgf_docker_builder.disk_ext == NULL);
	CHECK_STR(imgf_qemu_builder.disk_ext, "qcow2");
}

TEST(validate_accepts_the_shipped_lists)
{
	struct imgf_error *err = validate(&imgf_qemu_builder,
					  "[{\"type\": \"ova\"}, {\"type\": "
					  "\"manifest\"}]",
					  "{}");
	CHECK(err == NULL);
	imgf_error_free(err);
	err = validate(&imgf_docker_builder, "[{\"type\": \"manifest\"}]", "{}");
	CHECK(err == NULL);
	imgf_error_free(err);
	err = validate(&imgf_docker_builder, "[]", "{}");
	CHECK(err == NULL);
	imgf_error_free(err);
	err = validate(
		&imgf_qemu_builder,
		"[{\"type\": \"checksum\"}, {\"type\": \"ova\", \"custom_properties\": "
		"{\"a\": \"b\"}}]",
		"{\"ova_cpus\": \"4\", \"ovf_custom_properties\": \"{\\\"c\\\": \\\"d\\\"}\"}");
	CHECK(err == NULL);
	imgf_error_free(err);
}

TEST(validate_names_unknown_types_and_keys)
{
	struct imgf_error *err = validate(&imgf_qemu_builder, "[{\"type\": \"ovf\"}]", "{}");
	CHECK_ERR(err,
		  "images/test.json: post_processors[0].type: unknown post-processor 'ovf' "
		  "(known post-processors: 'checksum', 'manifest', 'ova', 'raw', 'vhd', 'gce')");
	imgf_error_free(err);
	err = validate(&imgf_qemu_builder, "[{\"type\": \"manifest\"}, {\"name\": \"x\"}]", "{}");
	CHECK_ERR(err, "post_processors[1].type: unknown post-processor ''");
	imgf_error_free(err);
	err = validate(&imgf_qemu_builder, "[{\"type\": \"ova\", \"custom_propertys\": {}}]", "{}");
	CHECK_ERR(err, "post_processors[0] (ova): unknown key 'custom_propertys' (known keys: "
		       "'custom_properties')");
	imgf_error_free(err);
	err = validate(&imgf_qemu_builder, "[{\"type\": \"manifest\", \"path\": \"x\"}]", "{}");
	CHECK_ERR(err, "post_processors[0] (manifest): unknown key 'path'");
	imgf_error_free(err);
}

TEST(validate_checks_the_ova_before_anything_is_built)
{
	const char *ova = "[{\"type\": \"manifest\"}, {\"type\": \"ova\"}]";
	struct imgf_error *err = validate(&imgf_qemu_builder, ova, "{\"ova_cpus\": \"abc\"}");
	CHECK_ERR(err, "images/test.json: post_processors[1] (ova): ova "
		       "'ubuntu-2204+kube-v1.31.2': variable 'ova_cpus': 'abc' is not a whole "
		       "number");
	imgf_error_free(err);
	err = validate(&imgf_qemu_builder, ova, "{\"ovf_custom_properties\": \"not json\"}");
	CHECK_ERR(err, "post_processors[1] (ova): variable 'ovf_custom_properties': expected a "
		       "JSON object of strings, got 'not json'");
	imgf_error_free(err);
	err = validate(&imgf_qemu_builder, ova, "{\"ovf_custom_properties\": \"[1]\"}");
	CHECK_ERR(err, "expected a JSON object of strings, got '[1]'");
	imgf_error_free(err);
	err = validate(&imgf_qemu_builder, ova,
		       "{\"ovf_custom_properties\": \"{\\\"DISTRO_NAME\\\": \\\"x\\\"}\"}");
	CHECK_ERR(err, "'DISTRO_NAME' is a built-in property");
	imgf_error_free(err);
	/* the post-processor's own custom_properties are checked the same way */
	err = validate(&imgf_qemu_builder,
		       "[{\"type\": \"ova\", \"custom_properties\": {\"KUBERNETES_SEMVER\": "
		       "\"x\"}}]",
		       "{}");
	CHECK_ERR(err, "'KUBERNETES_SEMVER' is a built-in property");
	imgf_error_free(err);
	err = validate(&imgf_docker_builder, ova, "{}");
	CHECK_ERR(err, "post_processors[1] (ova): post-processor 'ova' needs a disk image; the "
		       "docker builder does not make one");
	imgf_error_free(err);
	err = validate(&imgf_qemu_builder, ova, "{\"build_name\": \"a/b\"}");
	CHECK_ERR(err, "build_name 'a/b' and kubernetes_semver 'v1.31.2' must be non-empty and "
		       "contain no '/'");
	imgf_error_free(err);
}

/* A fixture with an output directory holding disk.qcow2 ("abc") and console.log. */
static void run_fixture_init(struct fixture *f, const struct imgf_builder_ops *builder,
			     const char *pps, struct imgf_artifact *art)
{
	fixture_init(f, builder, pps, "{}");
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-pp", &f->dir, &err) == 0);
	imgf_error_free(err);
	f->build.out_dir = xstrdup(f->dir);
	*art = (struct imgf_artifact){0};
	art->files = xcalloc(1, sizeof(char *));
	if (builder == &imgf_qemu_builder) {
		art->id = path_join(f->dir, "disk.qcow2");
		art->disk = xstrdup(art->id);
		CHECK(write_file_atomic(art->disk, "abc", 3, 0644, NULL) == 0);
		art->files = strv_push(art->files, xstrdup("disk.qcow2"));
	} else {
		art->id = xstrdup("sha256:0123");
		art->extra = json_pack("{s:s}", "image", "kindest/node:test");
	}
	_cleanup_free_ char *console = path_join(f->dir, "console.log");
	CHECK(write_file_atomic(console, "boot\n", 5, 0644, NULL) == 0);
	art->files = strv_push(art->files, xstrdup("console.log"));
}

#define ABC_SHA256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static int run(struct fixture *f, struct imgf_artifact *art, json_t *manifest,
	       struct imgf_error **err)
{
	struct imgf_pp_ctx c = {
		.build = &f->build,
		.art = art,
		.artifact_id = art->id,
		.start = 1700000000,
		.manifest = manifest,
	};
	return imgf_post_processors_run(&c, err);
}

TEST(checksum_writes_the_disks_sidecar_right_after_it_and_manifest_records_it_once)
{
	struct fixture f;
	struct imgf_artifact art;
	run_fixture_init(&f, &imgf_qemu_builder, "[{\"type\": \"manifest\"}]", &art);
	json_t *m = imgf_manifest_new();
	struct imgf_error *err = NULL;
	CHECK(run(&f, &art, m, &err) == 0);
	CHECK(err == NULL);
	imgf_error_free(err);

	_cleanup_free_ char *side = path_join(f.dir, "disk.qcow2.sha256");
	_cleanup_free_ char *text = NULL;
	CHECK(read_file(side, 4096, &text, NULL, NULL) == 0);
	CHECK_STR(text, ABC_SHA256 "\n");
	CHECK(strv_len(art.files) == 3);
	if (strv_len(art.files) == 3) {
		CHECK_STR(art.files[0], "disk.qcow2");
		CHECK_STR(art.files[1], "disk.qcow2.sha256");
		CHECK_STR(art.files[2], "console.log");
	}
	/* listed or not, one entry per image */
	json_t *builds = json_object_get(m, "builds");
	CHECK(json_array_size(builds) == 1);
	json_t *e = json_array_get(builds, 0);
	CHECK_STR(json_string_value(json_object_get(e, "name")), "capi-ova");
	CHECK_STR(json_string_value(json_object_get(e, "builder_type")), "qemu");
	CHECK_STR(json_string_value(json_object_get(e, "sha256")), ABC_SHA256);
	CHECK_STR(json_string_value(json_object_get(e, "artifact_id")), art.id);
	CHECK(json_integer_value(json_object_get(e, "build_time")) == 1700000000);
	CHECK_STR(json_string_value(
			  json_object_get(json_object_get(e, "custom_data"), "kubernetes_semver")),
		  "v1.31.2");
	json_t *files = json_object_get(e, "files");
	CHECK(json_array_size(files) == 3);
	CHECK_STR(json_string_value(json_object_get(json_array_get(files, 1), "name")),
		  "disk.qcow2.sha256");
	CHECK(json_integer_value(json_object_get(json_array_get(files, 0), "size")) == 3);
	CHECK(json_integer_value(json_object_get(json_array_get(files, 1), "size")) == 65);
	json_decref(m);
	imgf_artifact_release(&art);
	fixture_release(&f);
}

TEST(an_artifact_without_a_disk_gets_no_sidecar_and_still_a_manifest_entry)
{
	struct fixture f;
	struct imgf_artifact art;
	run_fixture_init(&f, &imgf_docker_builder, "[]", &art);
	json_t *m = imgf_manifest_new();
	struct imgf_error *err = NULL;
	CHECK(run(&f, &art, m, &err) == 0);
	imgf_error_free(err);
	CHECK(strv_len(art.files) == 1);
	json_t *e = json_array_get(json_object_get(m, "builds"), 0);
	CHECK(json_array_size(json_object_get(m, "builds")) == 1);
	CHECK_STR(json_string_value(json_object_get(e, "builder_type")), "docker");
	CHECK_STR(json_string_value(json_object_get(e, "image")), "kindest/node:test");
	CHECK(json_object_get(e, "sha256") == NULL);
	_cleanup_free_ char *side = path_join(f.dir, "console.log.sha256");
	CHECK(access(side, F_OK) < 0);
	json_decref(m);
	imgf_artifact_release(&art);
	fixture_release(&f);
}

TEST(ova_without_a_disk_fails_and_the_manifest_gets_no_entry)
{
	struct fixture f;
	struct imgf_artifact art;
	run_fixture_init(&f, &imgf_qemu_builder, "[{\"type\": \"ova\"}, {\"type\": \"manifest\"}]",
			 &art);
	unlink(art.disk);
	json_t *m = imgf_manifest_new();
	struct imgf_error *err = NULL;
	/* the checksum post-processor runs first and finds no disk to hash */
	CHECK(run(&f, &art, m, &err) < 0);
	CHECK_ERR(err, "disk.qcow2");
	imgf_error_free(err);
	err = NULL;

	free(art.disk);
	art.disk = NULL; /* a builder that made no disk: checksum has nothing to do, ova refuses */
	CHECK(run(&f, &art, m, &err) < 0);
	CHECK_ERR(err, "post-processor 'ova' needs a disk image; the qemu builder made '");
	imgf_error_free(err);
	CHECK(json_array_size(json_object_get(m, "builds")) == 0);
	json_decref(m);
	imgf_artifact_release(&art);
	fixture_release(&f);
}

TEST(output_name_is_build_name_kube_version_for_build_and_upload)
{
	char *n = imgf_output_name("ubuntu-2204", "v1.31.2");
	CHECK_STR(n, "ubuntu-2204+kube-v1.31.2");
	free(n);
	CHECK(imgf_output_name("", "v1.31.2") == NULL);
	CHECK(imgf_output_name("ubuntu-2204", "") == NULL);
	CHECK(imgf_output_name("a/b", "v1.31.2") == NULL);
	CHECK(imgf_output_name("ubuntu", "v1/31") == NULL);

	struct fixture f;
	fixture_init(&f, &imgf_qemu_builder, "[]", "{}");
	struct imgf_error *err = NULL;
	char *dir = NULL;
	CHECK(imgf_build_dir_name(&f.cfg, &dir, &err) == 0);
	CHECK_STR(dir, "ubuntu-2204+kube-v1.31.2");
	free(dir);
	json_object_del(f.cfg.vars, "kubernetes_semver");
	CHECK(imgf_build_dir_name(&f.cfg, &dir, &err) < 0);
	CHECK_ERR(err, "test.json: variables 'build_name' and 'kubernetes_semver' must be defined");
	imgf_error_free(err);
	fixture_release(&f);
}
