/* Streaming digests over OpenSSL EVP. */
#ifndef IMGF_DIGEST_H
#define IMGF_DIGEST_H

#include <stddef.h>

struct imgf_error;

enum imgf_digest_alg {
	IMGF_SHA256,
	IMGF_SHA512,
};

#define IMGF_DIGEST_HEX_MAX 129 /* sha512 hex + NUL */

struct imgf_digest {
	void *ctx; /* EVP_MD_CTX */
	enum imgf_digest_alg alg;
};

const char *imgf_digest_alg_name(enum imgf_digest_alg alg); /* "sha256" */
size_t imgf_digest_hex_len(enum imgf_digest_alg alg);	    /* 64 or 128 */
/* Parse "sha256"/"sha512"; returns -1 when unknown. */
int imgf_digest_alg_from_name(const char *name, enum imgf_digest_alg *alg);

void imgf_digest_init(struct imgf_digest *d, enum imgf_digest_alg alg);
void imgf_digest_update(struct imgf_digest *d, const void *data, size_t len);
/* Lowercase hex into hex[IMGF_DIGEST_HEX_MAX]; the context may be reused after init. */
void imgf_digest_final_hex(struct imgf_digest *d, char *hex);
void imgf_digest_release(struct imgf_digest *d);

int imgf_digest_file(const char *path, enum imgf_digest_alg alg, char *hex,
		     struct imgf_error **err);
/*
 * imgf_digest_file read once per process: a file asked for again, unchanged (the same device,
 * inode, size, mtime and ctime, and none of them changed while it was read), gives the digest
 * of the first read. For large host files more than one step of a build hashes (the
 * Kubernetes server tarball of both the kubernetes and the images step).
 */
int imgf_digest_file_once(const char *path, enum imgf_digest_alg alg, char *hex,
			  struct imgf_error **err);
void imgf_digest_buffer(enum imgf_digest_alg alg, const void *data, size_t len, char *hex);

#endif
