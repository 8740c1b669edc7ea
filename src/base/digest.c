#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "digest.h"
#include "error.h"
#include "util.h"

static const struct {
	const char *name;
	size_t hex_len;
} digest_algs[] = {
	[IMGF_SHA256] = {"sha256", 64},
	[IMGF_SHA512] = {"sha512", 128},
};

const char *imgf_digest_alg_name(enum imgf_digest_alg alg)
{
	return digest_algs[alg].name;
}

size_t imgf_digest_hex_len(enum imgf_digest_alg alg)
{
	return digest_algs[alg].hex_len;
}

int imgf_digest_alg_from_name(const char *name, enum imgf_digest_alg *alg)
{
	for (size_t i = 0; i < ARRAY_SIZE(digest_algs); i++) {
		if (strcmp(name, digest_algs[i].name) == 0) {
			*alg = (enum imgf_digest_alg)i;
			return 0;
		}
	}
	return -1;
}

static const EVP_MD *digest_md(enum imgf_digest_alg alg)
{
	return alg == IMGF_SHA512 ? EVP_sha512() : EVP_sha256();
}

/* OpenSSL only fails here when out of memory or misconfigured; both are fatal. */
static void digest_die(const char *what)
{
	fprintf(stderr, "imgforge: %s failed\n", what);
	abort();
}

void imgf_digest_init(struct imgf_digest *d, enum imgf_digest_alg alg)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		digest_die("EVP_MD_CTX_new");
	if (EVP_DigestInit_ex(ctx, digest_md(alg), NULL) != 1)
		digest_die("EVP_DigestInit_ex");
	d->ctx = ctx;
	d->alg = alg;
}

void imgf_digest_update(struct imgf_digest *d, const void *data, size_t len)
{
	if (len && EVP_DigestUpdate(d->ctx, data, len) != 1)
		digest_die("EVP_DigestUpdate");
}

/* Finishing frees the context, so release afterwards is a no-op and init starts afresh. */
void imgf_digest_final_hex(struct imgf_digest *d, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(d->ctx, md, &n) != 1)
		digest_die("EVP_DigestFinal_ex");
	for (unsigned int i = 0; i < n; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 0xf];
	}
	hex[2 * n] = '\0';
	imgf_digest_release(d);
}

void imgf_digest_release(struct imgf_digest *d)
{
	EVP_MD_CTX_free(d->ctx);
	d->ctx = NULL;
}

int imgf_digest_file(const char *path, enum imgf_digest_alg alg, char *hex, struct imgf_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	enum {
		BUFSZ = 1 << 16
	};
	_cleanup_free_ char *buf = xmalloc(BUFSZ);
	struct imgf_digest d;
	imgf_digest_init(&d, alg);
	for (;;) {
		ssize_t r = read(fd, buf, BUFSZ);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			imgf_digest_release(&d);
			return imgf_error_errno(err, e, "read '%s'", path);
		}
		if (r == 0)
			break;
		imgf_digest_update(&d, buf, (size_t)r);
	}
	imgf_digest_final_hex(&d, hex);
	return 0;
}

/* What identifies a file's content without reading it, for imgf_digest_file_once. */
struct file_stamp {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

static bool stamp_of(const char *path, struct file_stamp *st)
{
	struct stat sb;
	if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
		return false;
	*st = (struct file_stamp){sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim, sb.st_ctim};
	return true;
}

static bool stamp_eq(const struct file_stamp *a, const struct file_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

#define DIGEST_MEMO_MAX 8

static struct digest_memo {
	struct file_stamp st;
	enum imgf_digest_alg alg;
	char hex[IMGF_DIGEST_HEX_MAX];
} digest_memo[DIGEST_MEMO_MAX];
static size_t digest_memo_n, digest_memo_next;
static pthread_mutex_t digest_memo_lock = PTHREAD_MUTEX_INITIALIZER;

int imgf_digest_file_once(const char *path, enum imgf_digest_alg alg, char *hex,
			  struct imgf_error **err)
{
	struct file_stamp before, after;
	bool stamped = stamp_of(path, &before);
	if (stamped) {
		pthread_mutex_lock(&digest_memo_lock);
		for (size_t i = 0; i < digest_memo_n; i++) {
			if (digest_memo[i].alg == alg && stamp_eq(&digest_memo[i].st, &before)) {
				memcpy(hex, digest_memo[i].hex, IMGF_DIGEST_HEX_MAX);
				pthread_mutex_unlock(&digest_memo_lock);
				return 0;
			}
		}
		pthread_mutex_unlock(&digest_memo_lock);
	}
	if (imgf_digest_file(path, alg, hex, err) < 0)
		return -1;
	/* Kept only when nothing about the file changed while it was read. */
	if (stamped && stamp_of(path, &after) && stamp_eq(&before, &after)) {
		pthread_mutex_lock(&digest_memo_lock);
		struct digest_memo *m = &digest_memo[digest_memo_next];
		digest_memo_next = (digest_memo_next + 1) % DIGEST_MEMO_MAX;
		if (digest_memo_n < DIGEST_MEMO_MAX)
			digest_memo_n++;
		m->st = before;
		m->alg = alg;
		memcpy(m->hex, hex, IMGF_DIGEST_HEX_MAX);
		pthread_mutex_unlock(&digest_memo_lock);
	}
	return 0;
}

void imgf_digest_buffer(enum imgf_digest_alg alg, const void *data, size_t len, char *hex)
{
	struct imgf_digest d;
	imgf_digest_init(&d, alg);
	imgf_digest_update(&d, data, len);
	imgf_digest_final_hex(&d, hex);
}
