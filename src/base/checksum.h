/*
 * Checksum specifications (every download has one; there is no "none"):
 *   sha256:HEX | sha512:HEX          the digest itself
 *   file:URL                         a checksum list, bare hex or sha256sum format,
 *                                    matched by the artifact's file name
 *   URL ending .sha256/.sha256sum/.sha512   the same, algorithm from the suffix
 */
#ifndef IMGF_CHECKSUM_H
#define IMGF_CHECKSUM_H

#include <stdbool.h>
#include <stddef.h>

#include "digest.h"

struct imgf_error;

struct imgf_checksum {
	bool is_list;	/* true: the digest comes from the list at `url` */
	bool alg_known; /* false for file:URL until the list is read */
	enum imgf_digest_alg alg;
	char hex[IMGF_DIGEST_HEX_MAX];
	char *url; /* the list's URL when is_list */
};

/* Check the syntax of `spec`; the message lists the accepted forms. */
int imgf_checksum_parse(const char *spec, struct imgf_checksum *out, struct imgf_error **err);
void imgf_checksum_release(struct imgf_checksum *c);

/*
 * Find the digest for `filename` in a checksum list: a lone hex token, or lines "HEX  NAME",
 * "HEX *NAME" (sha256sum) or "ALG (NAME) = HEX" (BSD). A name may carry a directory
 * ("./x", "dir/x"): it is matched by its last component. When the list holds exactly one
 * digest and no name matches, that one is used only if the list has no names at all.
 * Fills c->alg (from the hex length when !c->alg_known) and c->hex.
 */
int imgf_checksum_list_lookup(struct imgf_checksum *c, const char *text, size_t len,
			      const char *filename, struct imgf_error **err);

#endif
