#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "error.h"
#include "strbuf.h"
#include "util.h"

#define ACCEPTED_FORMS \
	"expected sha256:HEX, sha512:HEX, file:URL, or a URL ending in .sha256/.sha256sum/.sha512"

/* Longest piece of a spec, URL or name quoted in a message. */
#define QUOTE_MAX 160

/* A printable, length-capped copy of untrusted text for an error message. */
static char *quote_clip(const char *s, size_t len)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f)
			strbuf_addch(&sb, c);
		else
			strbuf_addf(&sb, "\\x%02x", c);
	}
	if (len > QUOTE_MAX)
		strbuf_addstr(&sb, "...");
	return strbuf_detach(&sb, NULL);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool is_hex_digit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void copy_hex_lower(char *dst, const char *src, size_t len)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = lower(src[i]);
	dst[len] = '\0';
}

/* The digest algorithm whose hex is `len` digits long; -1 for any other length. */
static int alg_from_hex_len(size_t len)
{
	if (len == imgf_digest_hex_len(IMGF_SHA256))
		return IMGF_SHA256;
	if (len == imgf_digest_hex_len(IMGF_SHA512))
		return IMGF_SHA512;
	return -1;
}

/* The length of a URL's path part, without any ?query or #fragment. */
static size_t url_path_len(const char *url)
{
	return strcspn(url, "?#");
}

static bool url_has_suffix(const char *url, const char *suffix)
{
	size_t n = url_path_len(url), ls = strlen(suffix);
	return n >= ls && memcmp(url + n - ls, suffix, ls) == 0;
}

/* A scheme followed by "://", e.g. "https://x": the only URLs a checksum may name. */
static bool looks_like_url(const char *s)
{
	size_t n = 0;
	while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
	       (n > 0 &&
		((s[n] >= '0' && s[n] <= '9') || s[n] == '+' || s[n] == '-' || s[n] == '.')))
		n++;
	return n > 0 && strncmp(s + n, "://", 3) == 0 && s[n + 3] != '\0';
}

static int parse_digest(const char *spec, const char *alg_name, size_t alg_len, const char *hex,
			struct imgf_checksum *out, struct imgf_error **err)
{
	char name[16];
	enum imgf_digest_alg alg;
	_cleanup_free_ char *q = quote_clip(spec, strlen(spec));

	if (alg_len >= sizeof(name))
		alg_len = sizeof(name) - 1;
	for (size_t i = 0; i < alg_len; i++)
		name[i] = lower(alg_name[i]);
	name[alg_len] = '\0';
	if (imgf_digest_alg_from_name(name, &alg) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "checksum '%s': unsupported algorithm '%s'; " ACCEPTED_FORMS,
				      q, name);

	size_t want = imgf_digest_hex_len(alg), got = strlen(hex);
	for (size_t i = 0; i < got; i++) {
		if (!is_hex_digit(hex[i])) {
			unsigned char c = (unsigned char)hex[i];
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				c >= 0x20 && c < 0x7f
					? "checksum '%s': '%c' at position %zu is not a hex digit"
					: "checksum '%s': byte 0x%02x at position %zu is not a hex digit",
				q, c, i + 1);
		}
	}
	if (got != want)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "checksum '%s': expected %zu hex digits after '%s:', got %zu",
				      q, want, name, got);
	out->alg = alg;
	out->alg_known = true;
	copy_hex_lower(out->hex, hex, got);
	return 0;
}

static int parse_list_url(const char *spec, const char *url, struct imgf_checksum *out,
			  struct imgf_error **err)
{
	_cleanup_free_ char *q = quote_clip(spec, strlen(spec));
	if (!*url)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "checksum '%s': missing URL after 'file:'", q);
	if (url[0] == '/')
		out->url = xasprintf("file://%s", url);
	else if (looks_like_url(url))
		out->url = xstrdup(url);
	else
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "checksum '%s': '%s' after 'file:' is not a URL (expected "
				      "http://, https://, file:// or an absolute path)",
				      q, q + 5);
	out->is_list = true;
	out->alg_known = false;
	return 0;
}

int imgf_checksum_parse(const char *spec, struct imgf_checksum *out, struct imgf_error **err)
{
	memset(out, 0, sizeof(*out));
	if (!spec)
		spec = "";
	/* Values read from files often carry a trailing newline; it is never meaningful. */
	while (is_blank(*spec))
		spec++;
	size_t len = strlen(spec);
	while (len && is_blank(spec[len - 1]))
		len--;
	_cleanup_free_ char *s = xstrndup(spec, len);

	if (!*s)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "empty checksum: " ACCEPTED_FORMS);

	/* "file:///x" is a file URL, not "file:" + "///x". */
	if (str_has_prefix(s, "file:") && !str_has_prefix(s, "file://"))
		return parse_list_url(s, s + 5, out, err);

	if (looks_like_url(s)) {
		static const struct {
			const char *suffix;
			enum imgf_digest_alg alg;
		} suffixes[] = {
			{".sha256", IMGF_SHA256},
			{".sha256sum", IMGF_SHA256},
			{".sha512", IMGF_SHA512},
		};
		for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
			if (url_has_suffix(s, suffixes[i].suffix)) {
				out->is_list = true;
				out->alg_known = true;
				out->alg = suffixes[i].alg;
				out->url = STEAL_POINTER(&s);
				return 0;
			}
		}
		if (str_has_prefix(s, "file://")) {
			out->is_list = true;
			out->alg_known = false;
			out->url = STEAL_POINTER(&s);
			return 0;
		}
		_cleanup_free_ char *q = quote_clip(s, len);
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"checksum '%s': a checksum URL must end in .sha256, .sha256sum "
			"or .sha512 (write file:URL for a list with another name)",
			q);
	}

	size_t alg_len = 0;
	while ((s[alg_len] >= 'a' && s[alg_len] <= 'z') ||
	       (s[alg_len] >= 'A' && s[alg_len] <= 'Z') ||
	       (s[alg_len] >= '0' && s[alg_len] <= '9') || s[alg_len] == '-')
		alg_len++;
	if (alg_len > 0 && s[alg_len] == ':')
		return parse_digest(s, s, alg_len, s + alg_len + 1, out, err);

	_cleanup_free_ char *q = quote_clip(s, len);
	if (str_is_hex(s, len) && alg_from_hex_len(len) >= 0)
		return imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"checksum '%s': a bare digest needs its algorithm, e.g. %s:%.8s...", q,
			imgf_digest_alg_name((enum imgf_digest_alg)alg_from_hex_len(len)), s);
	return imgf_error_set(err, IMGF_EXIT_FAIL, "unknown checksum form '%s': " ACCEPTED_FORMS,
			      q);
}

void imgf_checksum_release(struct imgf_checksum *c)
{
	free(c->url);
	memset(c, 0, sizeof(*c));
}

/* One line of a checksum list, pointing into the text. */
struct list_entry {
	const char *hex;
	size_t hex_len;
	const char *name; /* NULL for a lone digest */
	size_t name_len;
	int alg; /* from the hex length; -1 when it is no supported length */
};

static bool bsd_alg(const char *s, size_t len, int *alg)
{
	static const struct {
		const char *name;
		int alg;
	} names[] = {
		{"sha256", IMGF_SHA256},
		{"sha2-256", IMGF_SHA256},
		{"sha512", IMGF_SHA512},
		{"sha2-512", IMGF_SHA512},
	};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (strlen(names[i].name) != len)
			continue;
		size_t j = 0;
		while (j < len && lower(s[j]) == names[i].name[j])
			j++;
		if (j == len) {
			*alg = names[i].alg;
			return true;
		}
	}
	return false;
}

/* BSD style, as `sha256sum --tag` and `openssl dgst` write it: "SHA256 (NAME) = HEX". */
static bool parse_bsd_line(const char *p, size_t n, struct list_entry *e)
{
	const char *open = memchr(p, '(', n);
	const char *eq = memrchr(p, '=', n);
	if (!open || !eq || eq < open)
		return false;
	size_t alg_len = (size_t)(open - p);
	while (alg_len && is_blank(p[alg_len - 1]))
		alg_len--;
	int alg;
	if (!bsd_alg(p, alg_len, &alg))
		return false;
	const char *close = eq;
	while (close > open && is_blank(close[-1]))
		close--;
	if (close == open || close[-1] != ')')
		return false;
	close--;
	const char *hex = eq + 1, *end = p + n;
	while (hex < end && is_blank(*hex))
		hex++;
	size_t hex_len = (size_t)(end - hex);
	if (!str_is_hex(hex, hex_len))
		return false;
	e->hex = hex;
	e->hex_len = hex_len;
	e->name = open + 1;
	e->name_len = (size_t)(close - (open + 1));
	e->alg = alg_from_hex_len(hex_len);
	if (e->alg != alg)
		e->alg = -1;
	return true;
}

/* Parse one trimmed line; false when it is no checksum line (comments, PGP armour, prose). */
static bool parse_list_line(const char *p, size_t n, struct list_entry *e)
{
	memset(e, 0, sizeof(*e));
	size_t h = 0;
	while (h < n && is_hex_digit(p[h]))
		h++;
	if (h > 0 && (h == n || p[h] == ' ' || p[h] == '\t')) {
		e->hex = p;
		e->hex_len = h;
		e->alg = alg_from_hex_len(h);
		size_t i = h;
		while (i < n && (p[i] == ' ' || p[i] == '\t'))
			i++;
		if (i < n && p[i] == '*') /* sha256sum's binary mark */
			i++;
		if (i < n) {
			e->name = p + i;
			e->name_len = n - i;
		}
		return true;
	}
	return parse_bsd_line(p, n, e);
}

static bool name_matches(const struct list_entry *e, const char *filename, size_t flen)
{
	const char *base = e->name;
	size_t blen = e->name_len;
	const char *slash = memrchr(base, '/', blen);
	if (slash) {
		blen -= (size_t)(slash + 1 - base);
		base = slash + 1;
	}
	return blen == flen && memcmp(base, filename, flen) == 0;
}

static bool hex_equal(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

int imgf_checksum_list_lookup(struct imgf_checksum *c, const char *text, size_t len,
			      const char *filename, struct imgf_error **err)
{
	size_t flen = strlen(filename);
	_cleanup_free_ char *qlist =
		c->url ? quote_clip(c->url, strlen(c->url)) : xstrdup("(inline)");
	_cleanup_free_ char *qname = quote_clip(filename, flen);
	if (flen == 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "checksum list '%s': no file name to look up", qlist);

	const struct list_entry *match[2] = {NULL, NULL}; /* per algorithm */
	struct list_entry matched[2];
	struct list_entry bare = {0};
	size_t names = 0, bares = 0;
	size_t bad_len = 0; /* a digest of an unsupported length for filename */
	int wrong_alg = -1; /* a digest of the other algorithm for filename */
	int bare_wrong_alg = -1;

	const char *p = text, *end = text + len;
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		const char *s = p, *t = eol;
		p = nl ? nl + 1 : end;
		while (s < t && is_blank(*s))
			s++;
		while (t > s && is_blank(t[-1]))
			t--;
		struct list_entry e;
		if (s == t || *s == '#' || !parse_list_line(s, (size_t)(t - s), &e))
			continue;
		if (!e.name) {
			if (e.alg < 0)
				continue;
			if (c->alg_known && e.alg != (int)c->alg) {
				bare_wrong_alg = e.alg;
				continue;
			}
			if (bares++ == 0)
				bare = e;
			continue;
		}
		names++;
		if (!name_matches(&e, filename, flen))
			continue;
		if (e.alg < 0) {
			bad_len = e.hex_len;
			continue;
		}
		if (c->alg_known && e.alg != (int)c->alg) {
			wrong_alg = e.alg;
			continue;
		}
		if (match[e.alg]) {
			if (!hex_equal(match[e.alg]->hex, e.hex, e.hex_len))
				return imgf_error_set(
					err, IMGF_EXIT_FAIL,
					"'%s' appears in checksum list '%s' with "
					"different %s digests",
					qname, qlist,
					imgf_digest_alg_name((enum imgf_digest_alg)e.alg));
			continue;
		}
		matched[e.alg] = e;
		match[e.alg] = &matched[e.alg];
	}

	const struct list_entry *use = NULL;
	if (c->alg_known)
		use = match[c->alg];
	else
		use = match[IMGF_SHA256] ? match[IMGF_SHA256] : match[IMGF_SHA512];
	if (!use && names == 0 && bares == 1)
		use = &bare;

	if (!use) {
		const char *want = c->alg_known ? imgf_digest_alg_name(c->alg) : NULL;
		if (wrong_alg >= 0)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"'%s' in checksum list '%s' has a %s digest, expected %s", qname,
				qlist, imgf_digest_alg_name((enum imgf_digest_alg)wrong_alg), want);
		if (bad_len)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"'%s' in checksum list '%s' has a digest of %zu hex digits, "
				"expected 64 (sha256) or 128 (sha512)",
				qname, qlist, bad_len);
		if (names == 0 && bares > 1)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"checksum list '%s' holds %zu digests but no file names to "
				"find '%s' by",
				qlist, bares, qname);
		if (names == 0 && bares == 0 && bare_wrong_alg >= 0)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"checksum list '%s' holds a %s digest, expected %s", qlist,
				imgf_digest_alg_name((enum imgf_digest_alg)bare_wrong_alg), want);
		if (names == 0 && bares == 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "checksum list '%s' holds no sha256 or sha512 digest",
					      qlist);
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' not found in checksum list '%s'",
				      qname, qlist);
	}

	c->alg = (enum imgf_digest_alg)use->alg;
	c->alg_known = true;
	copy_hex_lower(c->hex, use->hex, use->hex_len);
	return 0;
}
