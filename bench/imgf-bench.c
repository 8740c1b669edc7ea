/*
 * The benches' driver for pieces of imgforge that no subcommand runs alone.
 *
 *   imgf-bench ova DISK OUT_DIR NAME   the OVA post-processor (imgf_ova_write, as
 *                                      `imgforge build` runs it for capi-ova) on DISK
 *   imgf-bench sidecar FILE            FILE.sha256 with its stamp, as a build writes it
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

#include "error.h"
#include "log.h"
#include "ova.h"
#include "sidecar.h"

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
	} else {
		fprintf(stderr, "usage: %s ova DISK OUT_DIR NAME | sidecar FILE\n", argv[0]);
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
