#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "redact.h"
#include "strbuf.h"
#include "util.h"

static bool scheme_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '-' || c == '.';
}

/*
 * Where a URL's authority ends. Quotes other than '"' and most punctuation may appear in a
 * userinfo, so only what cannot (a path, query or fragment, whitespace, '"', '\\', control
 * characters) ends it: reading too far only redacts more.
 */
static bool authority_end(unsigned char c)
{
	return c == '\0' || c == '/' || c == '?' || c == '#' || c == '"' || c == '\\' || c <= ' ' ||
	       c == 0x7f;
}

char *imgf_redact(const char *text)
{
	if (!text)
		return NULL;
	if (!strstr(text, "://"))
		return xstrdup(text);
	struct strbuf sb = STRBUF_INIT;
	const char *done = text; /* copied up to here */
	for (const char *p = strstr(text, "://"); p; p = strstr(p + 3, "://")) {
		const char *scheme = p;
		while (scheme > done && scheme_char(scheme[-1]))
			scheme--;
		if (scheme == p ||
		    !((*scheme >= 'a' && *scheme <= 'z') || (*scheme >= 'A' && *scheme <= 'Z')))
			continue;
		if ((size_t)(p - scheme) == 6 && !strncasecmp(scheme, "docker", 6))
			continue;
		const char *auth = p + 3, *at = NULL, *q = auth;
		for (; !authority_end((unsigned char)*q); q++)
			if (*q == '@')
				at = q;
		if (!at)
			continue;
		strbuf_add(&sb, done, (size_t)(auth - done));
		strbuf_addstr(&sb, "***");
		done = at;
		p = at - 2; /* the next search starts after the '@' */
	}
	strbuf_addstr(&sb, done);
	return strbuf_detach(&sb, NULL);
}
