/*
 * libFuzzer target for a Go binary's build information (read from downloaded Kubernetes
 * binaries, so hostile): the input is a .go.buildinfo section, handed over in an exact-size
 * buffer so any overread is caught; a parsed -ldflags is searched for the version's -X.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gobuildinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imgf_go_buildinfo bi;
	struct imgf_error *err = NULL;
	if (imgf_go_buildinfo_parse(data, size, &bi, &err) == 0) {
		if (!bi.go_version)
			abort();
		if (bi.ldflags)
			free(imgf_go_ldflags_x(bi.ldflags,
					       "k8s.io/component-base/version.gitVersion"));
		imgf_go_buildinfo_release(&bi);
	} else if (!err) {
		abort();
	}
	imgf_error_free(err);
	return 0;
}
