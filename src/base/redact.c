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

/* Where a URL ends as a whole: its path may hold '@' and ':', but not a quote or a blank. */
static bool url_end(unsigned char c)
{
	return c == '\0' || c == '"' || c == '\'' || c == '\\' || c <= ' ' || c == 0x7f;
}

/* "sha256:..." after an '@': a digest reference (NAME:TAG@sha256:HEX), not a password. */
static bool digest_follows(const char *s)
{
	return !strncmp(s, "sha256:", 7) || !strncmp(s, "sha512:", 7);
}

static void hide(struct strbuf *sb, const char **done, const char *from, const char *at)
{
	strbuf_add(sb, *done, (size_t)(from - *done));
	strbuf_addstr(sb, "***");
	*done = at;
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
		if (at)
			hide(&sb, &done, auth, at);
		/*
		 * A URL turned into a path keeps its userinfo as a path component
		 * ("file:///mirror/files/user:token@host/x"): a component "USER:PASS@..." goes too.
		 * The path ends where the URL does, or where a URL nested in it starts.
		 */
		const char *end = q;
		while (!url_end((unsigned char)*end))
			end++;
		const char *nested = strstr(q, "://");
		if (nested && nested < end)
			end = nested;
		while (q < end) {
			const char *c = *q == '/' ? q + 1 : q;
			const char *ce = c;
			while (ce < end && *ce != '/')
				ce++;
			const char *cat = memrchr(c, '@', (size_t)(ce - c));
			if (cat && memchr(c, ':', (size_t)(cat - c)) && !digest_follows(cat + 1))
				hide(&sb, &done, c, cat);
			q = ce;
		}
		p = end - 3; /* the next search starts where this URL ends */
	}
	strbuf_addstr(&sb, done);
	return strbuf_detach(&sb, NULL);
}
