/* Pieces of upload.c exposed for unit tests (tests/unit/test-gcs.c). */
#ifndef IMGF_UPLOAD_INTERNAL_H
#define IMGF_UPLOAD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/* True when a Kubernetes version names a release: ^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9]+)?$ */
bool imgf_upload_version_is_release(const char *version);

/* The sha256 in a .sha256 file's text: bare hex or sha256sum's "HEX  NAME", lowercased into
 * hex[65]; -1 when the text holds none. */
int imgf_upload_parse_sha256(const char *text, size_t len, char hex[65]);

#endif
