/*
 * The benches' driver for pieces of imgforge that no subcommand runs alone.
 *
 *   imgf-bench ova DISK OUT_DIR NAME   the OVA post-processor (imgf_ova_write, as
 *                                      `imgforge build` runs it for capi-ova) on DISK
 *   imgf-bench sidecar FILE            FILE.sha256 with its stamp, as a build writes it
 *   imgf-bench pp DISK LIST            the post-processors of LIST (an image's
 *                                      "post_processors" list as JSON: raw, vhd, gce,
 *                                      containerdisk, ...) on DISK, as `imgforge build` runs
 *                                      them after the qemu builder: checked
 *                                      (imgf_post_processors_validate), then run with the ones
 *                                      every image gets (checksum, sbom, provenance, manifest)
 *                                      and the manifest written. DISK is DIR/NAME.qcow2 (or
 *                                      .raw) of build_name ubuntu-2204 and kubernetes_semver
 *                                      v1.31.2, so NAME is ubuntu-2204+kube-v1.31.2; the
 *                                      outputs and manifest.json go to DIR.
 *
 * Prints on stdout "seconds S" (wall clock), "cpu_seconds S" (user + system time of this
 * process and its children: what the load of other processes changes least),
 * "self_cpu_seconds S" (this process's alone: imgforge's own work), "rss_kib N"
 * (this process's peak RSS: imgforge's own share) and "children_rss_kib N" (the largest
 * child's, i.e. qemu-img).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

#include "build.h"
#include "builder.h"
#include "contract.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "manifest.h"
#include "ova.h"
#include "plugins.h"
#include "postprocessor.h"
#include "sidecar.h"
#include "util.h"

extern const struct imgf_builder_ops imgf_qemu_builder;

static double tv_seconds(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static int run_ova(char **argv, struct imgf_error **err)
{
	json_t *vars = json_pack("{s:s,s:s,s:s,s:s,s:s}", "distro_name", "ubuntu", "distro_version",
				 "22.04", "kubernetes_semver", "v1.31.2", "containerd_version",
				 "2.0.0", "kubernetes_cni_semver", "v1.5.1");
	struct imgf_ova_opts o = {
		.disk = argv[0],
		.out_dir = argv[1],
		.name = argv[2],
		.vars = vars,
		.build_timestamp = 1700000000,
	};
	int r = imgf_ova_write(&o, NULL, err);
	json_decref(vars);
	return r;
}

static int run_sidecar(char **argv, struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	return imgf_sidecar_write(argv[0], hex, err);
}

static int run_pp(char **argv, struct imgf_error **err)
{
	json_t *list = json_loads(argv[1], 0, NULL);
	if (!json_is_array(list)) {
		json_decref(list);
		return imgf_error_set(err, IMGF_EXIT_USAGE, "LIST: '%s' is not a JSON list",
				      argv[1]);
	}
	struct imgf_config cfg = {
		.path = "bench.json",
		.vars = json_pack("{s:s,s:s}", "build_name", "ubuntu-2204", "kubernetes_semver",
				  "v1.31.2"),
	};
	struct imgf_image_def def = {
		.name = "bench-formats",
		.file = "bench.json",
		.post_processors = list,
	};
	/* The outputs are named as a build names them: from the contract's variables. */
	struct imgf_contract k = {0};
	if (imgf_contract_resolve(&cfg, &k, err) < 0) {
		json_decref(list);
		json_decref(cfg.vars);
		return -1;
	}
	_cleanup_free_ char *out_dir = path_dirname(argv[0]);
	struct imgf_build b = {
		.config = &cfg,
		.def = &def,
		.contract = &k,
		.builder = &imgf_qemu_builder,
		.out_dir = out_dir,
		.inputs = json_array(),
		.labels = json_object(),
	};
	struct imgf_artifact art = {
		.id = xstrdup(argv[0]),
		.disk = xstrdup(argv[0]),
		.files = xcalloc(2, sizeof(char *)),
	};
	art.files[0] = xstrdup(path_basename(argv[0]));
	json_t *manifest = imgf_manifest_new();
	struct imgf_pp_ctx c = {
		.build = &b,
		.art = &art,
		.artifact_id = art.id,
		.start = time(NULL),
		.manifest = manifest,
	};
	imgf_plugins_register();
	int r = imgf_post_processors_validate(&b, err);
	if (r == 0)
		r = imgf_post_processors_run(&c, err);
	if (r == 0)
		r = imgf_manifest_write(manifest, out_dir, err);
	json_decref(manifest);
	imgf_artifact_release(&art);
	json_decref(b.inputs);
	json_decref(b.labels);
	json_decref(def.post_processors);
	imgf_contract_release(&k);
	json_decref(cfg.vars);
	return r;
}

int main(int argc, char **argv)
{
	int r;
	struct imgf_error *err = NULL;
	struct timespec t0, t1;
	imgf_log_init(false, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (argc == 5 && !strcmp(argv[1], "ova")) {
		r = run_ova(argv + 2, &err);
	} else if (argc == 3 && !strcmp(argv[1], "sidecar")) {
		r = run_sidecar(argv + 2, &err);
	} else if (argc == 4 && !strcmp(argv[1], "pp")) {
		r = run_pp(argv + 2, &err);
	} else {
		fprintf(stderr,
			"usage: %s ova DISK OUT_DIR NAME | sidecar FILE | pp DISK LIST\n",
			argv[0]);
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r < 0) {
		fprintf(stderr, "imgf-bench: %s\n", err->msg);
		imgf_error_free(err);
		return 1;
	}
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	double cpu = tv_seconds(&self.ru_utime) + tv_seconds(&self.ru_stime) +
		     tv_seconds(&kids.ru_utime) + tv_seconds(&kids.ru_stime);
	printf("seconds %.3f\ncpu_seconds %.3f\nself_cpu_seconds %.3f\nrss_kib %ld\n"
	       "children_rss_kib %ld\n",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, cpu,
	       tv_seconds(&self.ru_utime) + tv_seconds(&self.ru_stime), self.ru_maxrss,
	       kids.ru_maxrss);
	return 0;
}
