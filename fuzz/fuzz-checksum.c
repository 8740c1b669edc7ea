/*
 * libFuzzer target for checksum specs and checksum lists (downloaded, so hostile). The whole
 * input is tried as a spec; then its first line is a file name and the rest a list, handed
 * over in an exact-size buffer without a terminating NUL so any overread is caught.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_hex(const struct imgf_checksum *c)
{
	size_t len = strlen(c->hex);
	if (len != imgf_digest_hex_len(c->alg))
		abort();
	for (size_t i = 0; i < len; i++)
		if (!((c->hex[i] >= '0' && c->hex[i] <= '9') ||
		      (c->hex[i] >= 'a' && c->hex[i] <= 'f')))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imgf_checksum c;
	struct imgf_error *err = NULL;

	char *spec = malloc(size + 1);
	if (!spec)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	if (imgf_checksum_parse(spec, &c, &err) == 0) {
		if (c.is_list != (c.url != NULL))
			abort();
		if (!c.is_list)
			check_hex(&c);
		imgf_checksum_release(&c);
	} else if (!err || !err->msg[0]) {
		abort();
	}
	imgf_error_clear(&err);
	free(spec);

	const uint8_t *nl = memchr(data, '\n', size);
	size_t name_len = nl ? (size_t)(nl - data) : 0;
	size_t list_len = nl ? size - name_len - 1 : size;
	char *name = strndup((const char *)data, name_len);
	char *list = malloc(list_len ? list_len : 1);
	if (!name || !list) {
		free(name);
		free(list);
		return 0;
	}
	memcpy(list, nl ? nl + 1 : data, list_len);

	memset(&c, 0, sizeof(c));
	c.is_list = true;
	c.url = strdup("https://fuzz.invalid/SHA256SUMS");
	if (size > 0 && (data[0] & 1)) {
		c.alg_known = true;
		c.alg = (data[0] & 2) ? IMGF_SHA512 : IMGF_SHA256;
	}
	enum imgf_digest_alg want = c.alg;
	bool known = c.alg_known;
	if (imgf_checksum_list_lookup(&c, list, list_len, name, &err) == 0) {
		check_hex(&c);
		if (known && c.alg != want)
			abort();
	} else if (!err || !err->msg[0]) {
		abort();
	}
	imgf_error_free(err);
	imgf_checksum_release(&c);
	free(name);
	free(list);
	return 0;
}
