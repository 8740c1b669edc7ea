/*
 * The images step on the host, with no target: a file:// mirror's layout is staged as a layout
 * written from its verified blobs under the expected name (never the mirror's tar itself), with
 * the digest containerd must hold after import; and `imgforge mirror` (the pulls hook) runs no
 * kubeadm, asking for pause, etcd and CoreDNS by name instead.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "archive.h"
#include "build.h"
#include "contract.h"
#include "error.h"
#include "fsutil.h"
#include "ociimage.h"
#include "provisioner.h"
#include "test.h"
#include "util.h"

extern const struct imgf_provisioner_ops imgf_images_provisioner;

struct fixture {
	char *dir;
	struct imgf_config cfg;
	struct imgf_build build;
	struct imgf_step s;
};

/* The contract of a build with arch amd64. */
static const struct imgf_contract amd64_contract = {.arch = "amd64", .platform = "linux/amd64"};

static void fixture_init(struct fixture *f, const char *json)
{
	struct imgf_error *err = NULL;
	if (make_temp_dir("imgf-test-images", &f->dir, &err) < 0)
		abort();
	f->cfg = (struct imgf_config){.vars = json_pack("{s:s}", "arch", "amd64")};
	f->build = (struct imgf_build){.config = &f->cfg,
				       .contract = &amd64_contract,
				       .stage_dir = path_join(f->dir, "stage"),
				       .labels = json_object(),
				       .inputs = json_array()};
	CHECK(mkdir_p(f->build.stage_dir, 0700, &err) == 0);
	f->s = (struct imgf_step){
		.ops = &imgf_images_provisioner, .build = &f->build, .label = xstrdup("images")};
	json_error_t jerr;
	f->s.cfg = json_loads(json, 0, &jerr);
	CHECK(f->s.cfg);
	f->s.raw = json_incref(f->s.cfg);
}

static void fixture_release(struct fixture *f)
{
	struct imgf_error *err = NULL;
	rm_rf(f->dir, &err);
	free(f->dir);
	free(f->build.stage_dir);
	free(f->s.label);
	json_decref(f->s.cfg);
	json_decref(f->s.raw);
	json_decref(f->s.staged);
	json_decref(f->build.labels);
	json_decref(f->build.inputs);
	json_decref(f->cfg.vars);
}

/* A mirror layout at DIR/images/registry.k8s.io/pause/3.10.tar whose index names the image
 * kube-apiserver (io.containerd.image.name), as a hostile mirror could. */
static char *renaming_layout(struct fixture *f, char md[72])
{
	struct imgf_error *err = NULL;
	_cleanup_free_ char *pdir = path_join(f->dir, "images/registry.k8s.io/pause");
	CHECK(mkdir_p(pdir, 0755, &err) == 0);
	_cleanup_free_ char *lpath = path_join(f->dir, "layer.tar");
	struct imgf_tar *t = imgf_tar_open(lpath, &err);
	CHECK(imgf_tar_add_data(t, "x", 1, "pause", 0755, 0, 0, &err) == 0);
	CHECK(imgf_tar_close(t, &err) == 0);
	imgf_tar_free(t);
	const char *layers[] = {lpath, NULL};
	struct imgf_oci_image img = {.name = "registry.k8s.io/kube-apiserver:v1.37.2",
				     .arch = "amd64",
				     .layers = layers};
	char *out = path_join(pdir, "3.10.tar");
	CHECK(imgf_oci_write(&img, out, NULL, &err) == 0);
	CHECK(imgf_oci_verify(out, "amd64", md, &err) == 0);
	return out;
}

TEST(images_stage_gives_containerd_a_layout_written_here_not_the_mirrors_tar)
{
	struct fixture f;
	char md[72] = "";
	char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-images-m", &dir, &err) == 0);
	/* The mirror path must be known before the step's JSON is. */
	struct fixture tmp = {.dir = dir};
	_cleanup_free_ char *layout = renaming_layout(&tmp, md);
	_cleanup_free_ char *json = xasprintf(
		"{\"images\":[\"registry.k8s.io/pause:3.10\"],\"kubeadm\":false,"
		"\"registry_mirrors\":\"{\\\"registry.k8s.io\\\":\\\"file://%s/images/registry.k8s.io\\\"}\"}",
		dir);
	fixture_init(&f, json);
	CHECK(imgf_images_provisioner.stage(&f.s, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	json_t *e = json_array_get(f.s.staged, 0);
	const char *tar = json_string_value(json_object_get(e, "tar"));
	CHECK(tar && strcmp(tar, layout) && str_has_prefix(tar, f.build.stage_dir));
	CHECK_STR(json_string_value(json_object_get(e, "digest")), md);
	CHECK_STR(json_string_value(json_array_get(json_object_get(e, "names"), 0)),
		  "registry.k8s.io/pause:3.10");
	char **names = NULL;
	CHECK(tar && imgf_image_tar_names(tar, &names, &err) == 0);
	CHECK(names && names[0] && !names[1]);
	CHECK_STR(names ? names[0] : NULL, "registry.k8s.io/pause:3.10");
	strv_free(names);
	fixture_release(&f);
	rm_rf(dir, &err);
	free(dir);
}

/* A kubeadm that would leave a mark if anything ran it. */
static char *marking_kubeadm(struct fixture *f, const char *mark)
{
	_cleanup_free_ char *text = xasprintf("#!/bin/sh\ntouch '%s'\n"
					      "echo registry.k8s.io/pause:3.10\n",
					      mark);
	char *p = path_join(f->dir, "kubeadm");
	struct imgf_error *err = NULL;
	CHECK(write_file_atomic(p, text, strlen(text), 0755, &err) == 0);
	return p;
}

TEST(images_mirror_runs_no_kubeadm_and_names_the_variables)
{
	struct fixture f;
	fixture_init(&f, "{\"archives\":[\"kube-apiserver.tar\"],\"version\":\"v1.37.2\","
			 "\"source\":\"https://dl.example/release/v1.37.2/bin/linux/amd64\","
			 "\"images\":[\"registry.k8s.io/pause:3.10\"]}");
	_cleanup_free_ char *mark = path_join(f.dir, "ran");
	_cleanup_free_ char *kubeadm = marking_kubeadm(&f, mark);
	/* The build's kubeadm, mirrored and verified: what the mirror used to run. */
	struct imgf_input in = {.name = xstrdup("kubeadm"), .path = xstrdup(kubeadm)};
	f.s.inputs = &in;
	f.s.ninputs = 1;
	f.build.steps = &f.s;
	f.build.nsteps = 1;
	json_t *mirrors = NULL;
	struct imgf_error *err = NULL;
	char **refs = imgf_images_provisioner.pulls(&f.s, &mirrors, &err);
	CHECK(!refs);
	CHECK_ERR(err, "set etcd_image, coredns_image to what `kubeadm config images list "
		       "--kubernetes-version v1.37.2` prints");
	CHECK_ERR(err, "runs no downloaded binary on the host");
	CHECK(access(mark, F_OK) < 0);
	imgf_error_clear(&err);

	/* With the three named, the mirror takes them as they are. */
	json_object_set_new(f.s.cfg, "images",
			    json_pack("[s,s,s]", "registry.k8s.io/pause:3.10",
				      "registry.k8s.io/etcd:3.6.4-0",
				      "registry.k8s.io/coredns/coredns:v1.12.1"));
	refs = imgf_images_provisioner.pulls(&f.s, &mirrors, &err);
	CHECK(refs && refs[0] && refs[1] && refs[2] && !refs[3]);
	CHECK(access(mark, F_OK) < 0);
	strv_free(refs);
	json_decref(mirrors);
	f.s.inputs = NULL;
	f.s.ninputs = 0;
	f.build.steps = NULL;
	imgf_input_release(&in);
	fixture_release(&f);
}
