/* Base64 (RFC 4648 section 4, padded) and base64url (section 5, unpadded). */
#ifndef IMGF_BASE64_H
#define IMGF_BASE64_H

#include <stddef.h>

/* Base64 (standard, padded) and base64url (no padding) of data; newly allocated. */
char *imgf_base64_encode(const void *data, size_t len);
char *imgf_base64url_encode(const void *data, size_t len);

#endif
