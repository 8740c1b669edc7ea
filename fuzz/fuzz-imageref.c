/* libFuzzer target: image references as configs and registries hand them to us. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	struct imgf_image_ref ref;
	struct imgf_error *err = NULL;
	if (imgf_image_ref_parse(s, &ref, &err) == 0) {
		/* A normalised reference parses again to itself. */
		struct imgf_image_ref again;
		struct imgf_error *e2 = NULL;
		if (imgf_image_ref_parse(ref.full, &again, &e2) != 0 ||
		    strcmp(again.full, ref.full) != 0)
			abort();
		imgf_image_ref_release(&again);
		imgf_image_ref_release(&ref);
	}
	imgf_error_free(err);
	free(s);
	return 0;
}
