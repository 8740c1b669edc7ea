/*
 * libFuzzer target for lock files (written by hand or by anyone who can commit beside the
 * configs) and for .deb control files read from mirrored packages. The input is tried as a
 * lock: one that passes the check must give every package's fields as the checker promised
 * (a relative .deb path without "..", a 64-digit sha256); then as control text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aptlock.h"
#include "error.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entry(json_t *doc)
{
	const char *name;
	json_t *img;
	json_object_foreach(json_object_get(doc, "images"), name, img)
	{
		size_t i, j;
		json_t *step, *p;
		json_array_foreach(json_object_get(img, "steps"), i, step)
		{
			json_array_foreach(json_object_get(step, "packages"), j, p)
			{
				const char *fn = json_string_value(json_object_get(p, "filename"));
				const char *sha = json_string_value(json_object_get(p, "sha256"));
				if (!fn || !sha || fn[0] == '/' || strstr(fn, "../") ||
				    strlen(sha) != 64)
					abort();
			}
		}
		free(imgf_aptlock_digest(img));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc = json_loadb((const char *)data, size, 0, NULL);
	struct imgf_error *err = NULL;
	if (doc && imgf_aptlock_check(doc, "fuzz", &err) == 0)
		check_entry(doc);
	imgf_error_free(err);
	json_decref(doc);
	char *text = xstrndup((const char *)data, size);
	free(imgf_control_field(text, "Package"));
	free(imgf_control_field(text, "Version"));
	free(text);
	return 0;
}
