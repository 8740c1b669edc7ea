/* Base64 (RFC 4648 section 4, padded) and base64url (section 5, unpadded). */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base64.h"
#include "util.h"

char *imgf_base64_encode(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	const unsigned char *p = data;
	size_t o = 0;
	/* EVP_EncodeBlock takes an int length; feed it in pieces that are multiples of 3. */
	while (len) {
		size_t n = len > (1u << 30) ? (1u << 30) : len;
		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p, (int)n);
		p += n;
		len -= n;
	}
	out[o] = '\0';
	return out;
}

char *imgf_base64url_encode(const void *data, size_t len)
{
	char *s = imgf_base64_encode(data, len);
	size_t n = strlen(s);
	while (n && s[n - 1] == '=')
		s[--n] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+')
			s[i] = '-';
		else if (s[i] == '/')
			s[i] = '_';
	}
	return s;
}
