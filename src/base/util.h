/* Allocation that aborts on failure, scoped cleanup helpers, small file and string helpers. */
#ifndef IMGF_UTIL_H
#define IMGF_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct imgf_error;

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
__attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...);
char *xvasprintf(const char *fmt, va_list ap);
/* Grow an array of `nmemb` elements to hold at least `want`, doubling. */
#define ALLOC_GROW(p, want, alloc)                                   \
	do {                                                         \
		if ((want) > (alloc)) {                              \
			(alloc) = (alloc) ? (alloc)*2 : 8;           \
			if ((alloc) < (want))                        \
				(alloc) = (want);                    \
			(p) = xrealloc((p), (alloc) * sizeof(*(p))); \
		}                                                    \
	} while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Scoped cleanup (crun/systemd style). */
void cleanup_freep(void *p);
void cleanup_closep(int *fd);
void cleanup_fclosep(FILE **f);
void cleanup_strvp(char ***v);
#define _cleanup_free_ __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_ __attribute__((cleanup(cleanup_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(cleanup_fclosep)))
#define _cleanup_strv_ __attribute__((cleanup(cleanup_strvp)))

/* Hand a scoped pointer out of its scope: returns *pp and sets it to NULL. */
static inline void *steal_pointer(void *pp)
{
	void **p = pp;
	void *r = *p;
	*p = NULL;
	return r;
}
#define STEAL_POINTER(pp) steal_pointer(pp)

bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);
bool str_is_hex(const char *s, size_t len);
/* A word safe to put in a shell script unquoted (package names, image refs, versions). */
bool str_is_shell_word(const char *s);
/* NULL-terminated string vectors. */
size_t strv_len(char *const *v);
void strv_free(char **v);
char **strv_push(char **v, char *s); /* takes ownership of s */
char *path_join(const char *a, const char *b);
/* Directory part of a path ("." when none), newly allocated. */
char *path_dirname(const char *path);
const char *path_basename(const char *path);

/* A byte count: digits with an optional binary suffix K, M, G, T (or KiB, MiB, GiB, TiB). */
int imgf_size_parse(const char *s, uint64_t *out);

/* Set by the SIGINT/SIGTERM handler; long operations poll it. */
extern volatile _Atomic int imgf_interrupted;
/* How many SIGINT/SIGTERM arrived: tells a real interrupt from one the program raised.
 * Both are atomic: the fetch-ahead thread (src/fetch-ahead.c) reads and sets them too. */
extern volatile _Atomic int imgf_signals;
void imgf_install_signal_handlers(void);

#endif
