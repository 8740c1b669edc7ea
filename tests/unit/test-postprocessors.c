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
#include "contract.h"
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
	struct imgf_contract contract;
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
	f->cfg.var_from = json_object();
	struct imgf_error *err = NULL;
	CHECK(imgf_contract_resolve(&f->cfg, &f->contract, &err) == 0);
	imgf_error_free(err);
	f->build = (struct imgf_build){
		.config = &f->cfg,
		.def = &f->def,
		.contract = &f->contract,
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
	imgf_contract_release(&f->contract);
	json_decref(f->cfg.vars);
	json_decref(f->cfg.var_from);
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
	static const char *const names[] = {"checksum",	     "sbom", "provenance", "manifest",
					    "ova",	     "raw",  "vhd",	   "gce",
					    "containerdisk", "push"};
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
	CHECK_STR(known, "'checksum', 'sbom', 'provenance', 'manifest', 'ova', 'raw', 'vhd', "
			 "'gce', 'containerdisk', 'push'");
	free(known);
	/* checksum before, sbom, provenance and manifest (in that order) after whatever the
	 * image lists */
	CHECK(imgf_post_processor_find("checksum")->when == IMGF_PP_FIRST);
	CHECK(imgf_post_processor_find("sbom")->when == IMGF_PP_LAST);
	CHECK(imgf_post_processor_find("provenance")->when == IMGF_PP_LAST);
	CHECK(imgf_post_processor_find("manifest")->when == IMGF_PP_LAST);
	CHECK(imgf_post_processor_find("ova")->when == IMGF_PP_LISTED);
	CHECK(imgf_post_processor_find("raw")->when == IMGF_PP_LISTED);
	CHECK(imgf_post_processor_find("vhd")->when == IMGF_PP_LISTED);
	CHECK(imgf_post_processor_find("gce")->when == IMGF_PP_LISTED);
	CHECK(imgf_post_processor_find("containerdisk")->when == IMGF_PP_LISTED);
}

TEST(the_upload_list_is_the_builders_disks_and_the_post_processors_outputs)
{
	char **exts = imgf_upload_exts();
	static const char *const want[] = {"qcow2", "ova",    "raw",
					   "vhd",   "tar.gz", "containerdisk.tar"};
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

TEST(validate_refuses_a_push_of_a_disk_or_to_a_bad_ref)
{
	struct imgf_error *err = validate(
		&imgf_qemu_builder, "[{\"type\": \"push\", \"ref\": \"r.example/a:b\"}]", "{}");
	CHECK_ERR(err,
		  "post-processor 'push' needs a container image; the qemu builder makes none");
	imgf_error_free(err);
	err = validate(&imgf_docker_builder, "[{\"type\": \"push\", \"ref\": \"r.example/A:b\"}]",
		       "{\"image\": \"x\"}");
	CHECK_ERR(err, "ref: invalid image reference 'r.example/A:b'");
	imgf_error_free(err);
	err = validate(&imgf_docker_builder,
		       "[{\"type\": \"push\", \"ref\": \"r.example/a@sha256:"
		       "0000000000000000000000000000000000000000000000000000000000000000\"}]",
		       "{\"image\": \"x\"}");
	CHECK_ERR(err, "names a digest; a push names a tag");
	imgf_error_free(err);
	err = validate(&imgf_docker_builder,
		       "[{\"type\": \"push\", \"ref\": \"r.example/a:b\", \"mount_from\": \"Up\"}]",
		       "{\"image\": \"x\"}");
	CHECK_ERR(err, "mount_from: 'Up' is not a repository name");
	imgf_error_free(err);
	err = validate(
		&imgf_docker_builder,
		"[{\"type\": \"push\", \"ref\": \"r.example/a:b\", \"compression\": \"zstd\"}]",
		"{\"image\": \"x\"}");
	CHECK_ERR(err, "compression: 'zstd' is not 'none' or 'gzip'");
	imgf_error_free(err);
	err = validate(
		&imgf_docker_builder,
		"[{\"type\": \"push\", \"ref\": \"r.example/a:b\", \"compression\": \"gzip\", "
		"\"compression_level\": 0}]",
		"{\"image\": \"x\"}");
	CHECK_ERR(err, "compression_level: 0 is not a gzip level from 1 to 9");
	imgf_error_free(err);
	err = validate(&imgf_docker_builder, "[{\"type\": \"push\"}]", "{\"image\": \"x\"}");
	CHECK_ERR(err, "ref");
	imgf_error_free(err);
	err = validate(&imgf_docker_builder, "[{\"type\": \"push\", \"ref\": \"r.example/a:b\"}]",
		       "{\"image\": \"x\"}");
	CHECK(err == NULL);
	imgf_error_free(err);
}

TEST(validate_names_unknown_types_and_keys)
{
	struct imgf_error *err = validate(&imgf_qemu_builder, "[{\"type\": \"ovf\"}]", "{}");
	CHECK_ERR(err,
		  "images/test.json: post_processors[0].type: unknown post-processor 'ovf' "
		  "(known post-processors: 'checksum', 'sbom', 'provenance', 'manifest', 'ova', "
		  "'raw', 'vhd', 'gce', 'containerdisk', 'push')");
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
	/* a build_name with a '/' is the contract's error: tests/unit/test-contract.c */
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
	CHECK(strv_len(art.files) == 5);
	if (strv_len(art.files) == 5) {
		CHECK_STR(art.files[0], "disk.qcow2");
		CHECK_STR(art.files[1], "disk.qcow2.sha256");
		CHECK_STR(art.files[2], "console.log");
		CHECK_STR(art.files[3], "capi-ova.spdx.json");
		CHECK_STR(art.files[4], "capi-ova.provenance.json");
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
	CHECK(json_array_size(files) == 5);
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
	CHECK(strv_len(art.files) == 3); /* console.log, the SBOM, the provenance */
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
}

/* ---- sbom and provenance ---------------------------------------------------------------- */

#define HEX64(c)                                                                                  \
	c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
		c c c c c c c c c c c c c c c c c c c

static json_t *load_json(const char *dir, const char *name, char **text)
{
	_cleanup_free_ char *p = path_join(dir, name);
	CHECK(read_file(p, 1 << 20, text, NULL, NULL) == 0);
	json_t *j = *text ? json_loads(*text, 0, NULL) : NULL;
	CHECK(j != NULL);
	return j;
}

static void report_err(const struct imgf_error *err)
{
	if (err)
		fprintf(stderr, "  error: %s\n", err->msg);
}

/* The package of an SBOM whose name is `name`, or NULL. */
static json_t *spdx_package(json_t *doc, const char *name)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(doc, "packages"), i, p)
	{
		const char *n = json_string_value(json_object_get(p, "name"));
		if (n && !strcmp(n, name))
			return p;
	}
	return NULL;
}

static const char *purl_of(json_t *pkg)
{
	json_t *ref = json_array_get(json_object_get(pkg, "externalRefs"), 0);
	if (strcmp(json_string_value(json_object_get(ref, "referenceType")) ?: "", "purl"))
		return NULL;
	return json_string_value(json_object_get(ref, "referenceLocator"));
}

static bool has_relationship(json_t *doc, const char *from, const char *type, const char *to)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(doc, "relationships"), i, r)
	{
		if (!strcmp(json_string_value(json_object_get(r, "spdxElementId")) ?: "", from) &&
		    !strcmp(json_string_value(json_object_get(r, "relationshipType")) ?: "",
			    type) &&
		    !strcmp(json_string_value(json_object_get(r, "relatedSpdxElement")) ?: "", to))
			return true;
	}
	return false;
}

TEST(sbom_and_provenance_describe_the_artifact_and_every_input)
{
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	struct fixture f;
	struct imgf_artifact art;
	run_fixture_init(&f, &imgf_qemu_builder, "[]", &art);
	json_object_set_new(f.cfg.vars, "registry_password", json_string("hunter2"));
	f.cfg.files = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "path", "test.json", "role",
				"config", "sha256", HEX64("f"), "path", "vars.json", "role",
				"var-file", "sha256", HEX64("9"));
	json_t *in = f.build.inputs;
	json_array_append_new(in, json_pack("{s:s,s:s,s:s}", "name", "base-image", "url",
					    "https://cloud.example/debian.qcow2", "sha256",
					    HEX64("a")));
	json_array_append_new(in, json_pack("{s:s,s:s,s:s}", "name", "containerd", "url",
					    "https://user:tok@mirror.example/containerd.tgz",
					    "sha256", HEX64("b")));
	json_array_append_new(in, json_pack("{s:s,s:s,s:s}", "name", "registry.k8s.io/pause:3.10",
					    "url", "docker://registry.k8s.io/pause:3.10", "sha256",
					    HEX64("c")));
	json_array_append_new(
		in, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", "deb:libstdc++6:amd64",
			      "kind", "deb", "package", "libstdc++6", "version", "1:12.2.0-14",
			      "architecture", "amd64", "sha256", HEX64("d"), "url",
			      "http://deb.example/debian/pool/main/g/gcc-12/libstdc++6.deb",
			      "archive", "http://deb.example/debian bookworm/main"));
	json_array_append_new(in, json_pack("{s:s,s:s,s:s,s:b}", "name", "kubeadm", "path",
					    "/src/kubeadm", "sha256", HEX64("e"), "local", 1));
	json_t *m = imgf_manifest_new();
	struct imgf_error *err = NULL;
	CHECK(run(&f, &art, m, &err) == 0);
	CHECK(err == NULL);
	imgf_error_free(err);

	/* the manifest lists both files */
	json_t *files = json_object_get(json_array_get(json_object_get(m, "builds"), 0), "files");
	CHECK_STR(json_string_value(json_object_get(json_array_get(files, 3), "name")),
		  "capi-ova.spdx.json");
	CHECK_STR(json_string_value(json_object_get(json_array_get(files, 4), "name")),
		  "capi-ova.provenance.json");

	_cleanup_free_ char *text = NULL;
	json_t *doc = load_json(f.dir, "capi-ova.spdx.json", &text);
	CHECK(!strstr(text, "tok@")); /* URL credentials redacted */
	CHECK_STR(json_string_value(json_object_get(doc, "spdxVersion")), "SPDX-2.3");
	CHECK_STR(json_string_value(json_object_get(doc, "dataLicense")), "CC0-1.0");
	CHECK_STR(json_string_value(json_object_get(doc, "SPDXID")), "SPDXRef-DOCUMENT");
	CHECK_STR(json_string_value(json_object_get(doc, "name")), "capi-ova");
	CHECK(str_has_prefix(json_string_value(json_object_get(doc, "documentNamespace")) ?: "",
			     "urn:imgforge:spdx:"));
	json_t *ci = json_object_get(doc, "creationInfo");
	CHECK_STR(json_string_value(json_object_get(ci, "created")), "2023-11-14T22:13:20Z");
	CHECK(str_has_prefix(json_string_value(json_array_get(json_object_get(ci, "creators"), 0))
				     ?: "",
			     "Tool: imgforge-"));
	/* every package has the fields SPDX 2.3 requires */
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(doc, "packages"), i, p)
	{
		CHECK(str_has_prefix(json_string_value(json_object_get(p, "SPDXID")) ?: "",
				     "SPDXRef-"));
		CHECK(json_string_value(json_object_get(p, "name")) != NULL);
		CHECK(json_string_value(json_object_get(p, "downloadLocation")) != NULL);
		CHECK(json_is_false(json_object_get(p, "filesAnalyzed")));
	}
	CHECK(json_array_size(json_object_get(doc, "packages")) == 6); /* the disk + 5 inputs */
	json_t *disk = spdx_package(doc, "disk.qcow2");
	CHECK(disk != NULL);
	const char *disk_id = json_string_value(json_object_get(disk, "SPDXID")) ?: "";
	CHECK_STR(json_string_value(json_object_get(
			  json_array_get(json_object_get(disk, "checksums"), 0), "checksumValue")),
		  ABC_SHA256);
	CHECK(has_relationship(doc, "SPDXRef-DOCUMENT", "DESCRIBES", disk_id));
	json_t *deb = spdx_package(doc, "libstdc++6");
	CHECK_STR(purl_of(deb), "pkg:deb/ubuntu/libstdc%2B%2B6@1%3A12.2.0-14?arch=amd64&distro="
				"ubuntu-22.04");
	CHECK_STR(json_string_value(json_object_get(deb, "versionInfo")), "1:12.2.0-14");
	CHECK(has_relationship(doc, disk_id, "CONTAINS",
			       json_string_value(json_object_get(deb, "SPDXID")) ?: ""));
	json_t *pause = spdx_package(doc, "registry.k8s.io/pause:3.10");
	CHECK_STR(purl_of(pause),
		  "pkg:oci/pause@sha256%3A" HEX64("c") "?repository_url="
						       "registry.k8s.io/pause&tag=3.10");
	json_t *ctd = spdx_package(doc, "containerd");
	CHECK_STR(json_string_value(json_object_get(ctd, "downloadLocation")),
		  "https://***@mirror.example/containerd.tgz");
	json_t *kubeadm = spdx_package(doc, "kubeadm");
	CHECK_STR(json_string_value(json_object_get(kubeadm, "versionInfo")), "v1.31.2");
	CHECK_STR(json_string_value(json_object_get(kubeadm, "downloadLocation")), "NOASSERTION");
	json_t *base = spdx_package(doc, "base-image");
	CHECK(has_relationship(doc, disk_id, "DESCENDANT_OF",
			       json_string_value(json_object_get(base, "SPDXID")) ?: ""));
	json_decref(doc);

	_cleanup_free_ char *ptext = NULL;
	json_t *st = load_json(f.dir, "capi-ova.provenance.json", &ptext);
	CHECK(!strstr(ptext, "hunter2") && !strstr(ptext, "tok@"));
	CHECK_STR(json_string_value(json_object_get(st, "_type")),
		  "https://in-toto.io/Statement/v1");
	CHECK_STR(json_string_value(json_object_get(st, "predicateType")),
		  "https://slsa.dev/provenance/v1");
	json_t *sub = json_array_get(json_object_get(st, "subject"), 0);
	CHECK_STR(json_string_value(json_object_get(sub, "name")), "disk.qcow2");
	CHECK_STR(json_string_value(json_object_get(json_object_get(sub, "digest"), "sha256")),
		  ABC_SHA256);
	json_t *pred = json_object_get(st, "predicate");
	json_t *def = json_object_get(pred, "buildDefinition");
	json_t *ext = json_object_get(def, "externalParameters");
	CHECK_STR(json_string_value(
			  json_object_get(json_object_get(ext, "variables"), "registry_password")),
		  "***");
	CHECK_STR(json_string_value(
			  json_object_get(json_object_get(ext, "variables"), "kubernetes_semver")),
		  "v1.31.2");
	CHECK_STR(json_string_value(json_array_get(json_object_get(ext, "var_files"), 0)),
		  "vars.json");
	json_t *deps = json_object_get(def, "resolvedDependencies");
	CHECK(json_array_size(deps) == 7); /* two config files, five inputs */
	CHECK_STR(json_string_value(json_object_get(json_array_get(deps, 0), "uri")), "test.json");
	CHECK_STR(json_string_value(json_object_get(
			  json_object_get(json_array_get(deps, 0), "digest"), "sha256")),
		  HEX64("f"));
	CHECK_STR(json_string_value(json_object_get(
			  json_object_get(json_array_get(deps, 5), "annotations"), "version")),
		  "1:12.2.0-14");
	json_t *run_details = json_object_get(pred, "runDetails");
	CHECK(str_has_prefix(
		json_string_value(json_object_get(json_object_get(run_details, "builder"), "id"))
			?: "",
		"urn:imgforge:builder:imgforge@"));
	json_t *md = json_object_get(run_details, "metadata");
	CHECK_STR(json_string_value(json_object_get(md, "startedOn")), "2023-11-14T22:13:20Z");
	CHECK(json_string_value(json_object_get(md, "finishedOn")) != NULL);
	json_decref(st);

	json_decref(f.cfg.files);
	json_decref(m);
	imgf_artifact_release(&art);
	fixture_release(&f);
	unsetenv("SOURCE_DATE_EPOCH");
}

TEST(sbom_of_a_docker_image_names_the_engine_image_id)
{
	struct fixture f;
	struct imgf_artifact art;
	run_fixture_init(&f, &imgf_docker_builder, "[]", &art);
	f.build.builder_cfg = json_pack("{s:s}", "tag", "kindest/node:test");
	json_array_append_new(f.build.inputs,
			      json_pack("{s:s,s:s,s:s}", "name", "base-image", "url",
					"debian:bookworm", "sha256", "0456"));
	/* a docker build writes no file of its own: the output directory is not there yet */
	free(f.build.out_dir);
	f.build.out_dir = path_join(f.dir, "out");
	json_t *m = imgf_manifest_new();
	struct imgf_error *err = NULL;
	CHECK(run(&f, &art, m, &err) == 0);
	report_err(err);
	imgf_error_free(err);
	_cleanup_free_ char *text = NULL;
	json_t *doc = load_json(f.build.out_dir, "capi-ova.spdx.json", &text);
	json_t *img = spdx_package(doc, "kindest/node:test");
	CHECK(img != NULL);
	CHECK_STR(json_string_value(json_object_get(
			  json_array_get(json_object_get(img, "checksums"), 0), "checksumValue")),
		  "0123");
	CHECK_STR(json_string_value(json_object_get(img, "primaryPackagePurpose")), "CONTAINER");
	json_t *base = spdx_package(doc, "base-image"); /* an Engine image, not a URL */
	CHECK_STR(json_string_value(json_object_get(base, "downloadLocation")), "NOASSERTION");
	CHECK(json_object_get(base, "externalRefs") == NULL);
	json_decref(doc);
	json_decref(f.build.builder_cfg);
	json_decref(m);
	imgf_artifact_release(&art);
	fixture_release(&f);
}
