/* One growable string (git's strbuf): buf is never NULL and always NUL-terminated. */
#ifndef IMGF_STRBUF_H
#define IMGF_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	size_t alloc;
	size_t len;
	size_t max; /* 0 = unlimited; strbuf_add past it sets overflow instead of growing */
	int overflow;
	char *buf;
};

extern char strbuf_slopbuf[];
#define STRBUF_INIT                                                                  \
	{                                                                            \
		.alloc = 0, .len = 0, .max = 0, .overflow = 0, .buf = strbuf_slopbuf \
	}

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
/* Hand out the buffer (caller frees) and reset sb. */
char *strbuf_detach(struct strbuf *sb, size_t *len);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, int c);
__attribute__((format(printf, 2, 3))) void strbuf_addf(struct strbuf *sb, const char *fmt, ...);
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
void strbuf_reset(struct strbuf *sb);
/* Append s escaped for XML text and attribute values (&<>"' and tab, newline, return). */
void strbuf_add_xml(struct strbuf *sb, const char *s);
void strbuf_trim_trailing_newline(struct strbuf *sb);
/* Append s quoted for sh, as one word whatever it holds: 'it'\''s', '' for the empty string. */
void strbuf_add_shell_quoted(struct strbuf *sb, const char *s);
/* An argv as one sh command line, every word quoted (newly allocated). */
char *shell_quote_argv(char *const *argv);

#endif
