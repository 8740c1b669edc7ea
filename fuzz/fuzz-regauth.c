/* libFuzzer target: what a registry's replies hand the push client: a WWW-Authenticate
 * challenge and an upload's Location. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "regauth.h"
#include "regpush.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	struct imgf_reg_challenge ch;
	if (imgf_reg_challenge_parse(s, &ch) == 0) {
		if (!ch.scheme || !*ch.scheme)
			abort();
		imgf_reg_challenge_release(&ch);
	} else if (ch.scheme || ch.realm || ch.service || ch.scope) {
		abort(); /* a failed parse leaves nothing to free */
	}
	free(imgf_reg_upload_url(
		"https://r.example:5000", s,
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	free(s);
	return 0;
}
