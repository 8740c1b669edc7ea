/* One error convention: a function that can fail returns < 0 and fills *err. */
#ifndef IMGF_ERROR_H
#define IMGF_ERROR_H

#include <stdarg.h>

/* Exit statuses, documented in README.md. */
enum {
	IMGF_EXIT_OK = 0,
	IMGF_EXIT_FAIL = 1,  /* a build, validation or upload failed */
	IMGF_EXIT_USAGE = 2, /* bad command line */
	IMGF_EXIT_INTERRUPTED = 130,
};

struct imgf_error {
	int status; /* exit status main() should use */
	char *msg;  /* lowercase, no final period; context prefixed on the way up */
};

/*
 * Fill *err (when err is non-NULL and *err is NULL) and return -1, so callers can write
 * `return imgf_error_set(err, 1, "...")`. A second error never overwrites the first.
 */
__attribute__((format(printf, 3, 4))) int imgf_error_set(struct imgf_error **err, int status,
							 const char *fmt, ...);
/* Like imgf_error_set with errno's text appended as ": strerror(errnum)". */
__attribute__((format(printf, 3, 4))) int imgf_error_errno(struct imgf_error **err, int errnum,
							   const char *fmt, ...);
/* Prepend "context: " to an existing error; returns -1. No-op when there is no error. */
__attribute__((format(printf, 2, 3))) int imgf_error_prefix(struct imgf_error **err,
							    const char *fmt, ...);
/* Append text to an existing error's message; returns -1. */
__attribute__((format(printf, 2, 3))) int imgf_error_suffix(struct imgf_error **err,
							    const char *fmt, ...);
void imgf_error_free(struct imgf_error *e);
/* Free *err and set it to NULL (for errors that are handled, not reported). */
void imgf_error_clear(struct imgf_error **err);

#endif
