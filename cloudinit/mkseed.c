/*
 * mkseed: write a NoCloud seed ISO for logging into a built image, with imgforge's own
 * seed code (src/disk/cidata.c), the same the boot check uses.
 *   mkseed OUT.iso [USER]   keys from SSH_PUBLIC_KEY or ~/.ssh/id_*.pub
 */
#include <stdio.h>
#include <stdlib.h>

#include "cidata.h"
#include "error.h"
#include "util.h"

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: mkseed OUT.iso [USER]\n");
		return 2;
	}
	char **keys = imgf_cidata_default_keys();
	if (!keys[0]) {
		fprintf(stderr,
			"mkseed: no SSH key: set SSH_PUBLIC_KEY or create ~/.ssh/id_*.pub\n");
		strv_free(keys);
		return 1;
	}
	struct imgf_cidata c = {
		.instance_id = "imgforge-seed",
		.hostname = "imgforge-node",
		.user = argc == 3 ? argv[2] : "capv",
		.ssh_keys = keys,
	};
	struct imgf_error *err = NULL;
	int r = imgf_cidata_write_iso(&c, argv[1], &err);
	strv_free(keys);
	if (r < 0) {
		fprintf(stderr, "mkseed: error: %s\n", err->msg);
		imgf_error_free(err);
		return 1;
	}
	printf("%s: NoCloud seed for user '%s'\n", argv[1], c.user);
	return 0;
}
