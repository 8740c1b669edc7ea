#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"

static int error_vset(struct imgf_error **err, int status, const char *suffix, const char *fmt,
		      va_list ap)
{
	if (!err || *err)
		return -1;
	struct imgf_error *e = xcalloc(1, sizeof(*e));
	char *msg = xvasprintf(fmt, ap);
	e->status = status;
	if (suffix) {
		e->msg = xasprintf("%s: %s", msg, suffix);
		free(msg);
	} else {
		e->msg = msg;
	}
	*err = e;
	return -1;
}

int imgf_error_set(struct imgf_error **err, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(err, status, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

int imgf_error_errno(struct imgf_error **err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(err, IMGF_EXIT_FAIL, strerror(errnum), fmt, ap);
	va_end(ap);
	return -1;
}

int imgf_error_prefix(struct imgf_error **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *ctx = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
	free(ctx);
	free((*err)->msg);
	(*err)->msg = msg;
	return -1;
}

int imgf_error_suffix(struct imgf_error **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *more = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s%s", (*err)->msg, more);
	free(more);
	free((*err)->msg);
	(*err)->msg = msg;
	return -1;
}

void imgf_error_free(struct imgf_error *e)
{
	if (!e)
		return;
	free(e->msg);
	free(e);
}

void imgf_error_clear(struct imgf_error **err)
{
	if (err) {
		imgf_error_free(*err);
		*err = NULL;
	}
}
