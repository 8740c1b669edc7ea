/* libFuzzer target: YAML config parsing and interpolation of untrusted text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc = NULL;
	struct imgf_error *err = NULL;
	if (imgf_config_parse_yaml("fuzz.yaml", (const char *)data, size, &doc, &err) == 0) {
		json_t *vars = json_pack("{s:s,s:s}", "a", "x", "b", "{{ a }}");
		json_t *out = NULL;
		if (imgf_interpolate_json(doc, vars, "fuzz", &out, &err) == 0)
			json_decref(out);
		json_decref(vars);
		json_decref(doc);
	}
	imgf_error_free(err);
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	free(imgf_template_first_var(s));
	free(s);
	return 0;
}
