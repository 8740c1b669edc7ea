/* A Go binary's build information and -X stamps, read without running it (gobuildinfo.h). */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "gobuildinfo.h"
#include "strbuf.h"
#include "util.h"

#define MAGIC "\xff Go buildinf:"
#define MAGIC_LEN 14
#define HEADER_LEN 32		 /* magic, pointer size, flags, padding */
#define FLAG_INLINE 2		 /* Go 1.18+: the strings follow the header */
#define SENTINEL_LEN 16		 /* the module info's framing, before and after */
#define BUILDINFO_MAX (4u << 20) /* a .go.buildinfo larger than this is refused */
#define DATA_MAX (64u << 20)	 /* .data or .noptrdata larger than this is not scanned */
#define SHSTRTAB_MAX (1u << 20)	 /* section names */
#define SHNUM_MAX 4096		 /* section headers */
#define STAMP_MIN 6		 /* "v1.2.3" */
#define STAMP_MAX 64

void imgf_go_buildinfo_release(struct imgf_go_buildinfo *bi)
{
	free(bi->go_version);
	free(bi->path);
	free(bi->goos);
	free(bi->goarch);
	free(bi->ldflags);
	memset(bi, 0, sizeof(*bi));
}

void imgf_go_binary_release(struct imgf_go_binary *b)
{
	imgf_go_buildinfo_release(&b->bi);
	strv_free(b->stamps);
	b->stamps = NULL;
}

/* An unsigned LEB128 varint as encoding/binary writes it; false when truncated or over 64
 * bits. */
static bool uvarint(const unsigned char **p, const unsigned char *end, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0, i = 0; *p < end; i++, shift += 7) {
		unsigned char b = *(*p)++;
		if (i == 9 && b > 1)
			return false;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
		if (i == 9)
			return false;
	}
	return false;
}

/* A varint-length string at *p (moved past it); false when it overruns `end`. */
static bool lenstring(const unsigned char **p, const unsigned char *end, const char **s, size_t *n)
{
	uint64_t len;
	if (!uvarint(p, end, &len) || len > (uint64_t)(end - *p))
		return false;
	*s = (const char *)*p;
	*n = (size_t)len;
	*p += len;
	return true;
}

/* A Go double-quoted string (strconv.Quote's escapes for ASCII), newly allocated; NULL when
 * it is not one. */
static char *go_unquote(const char *s, size_t n)
{
	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return NULL;
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 1; i < n - 1; i++) {
		char c = s[i];
		if (c == '"')
			goto bad;
		if (c != '\\') {
			strbuf_addch(&sb, c);
			continue;
		}
		if (++i >= n - 1)
			goto bad;
		switch (s[i]) {
		case '\\':
		case '"':
		case '\'':
			strbuf_addch(&sb, s[i]);
			break;
		case 'n':
			strbuf_addch(&sb, '\n');
			break;
		case 't':
			strbuf_addch(&sb, '\t');
			break;
		case 'r':
			strbuf_addch(&sb, '\r');
			break;
		case 'x': {
			if (i + 2 >= n - 1 || !str_is_hex(s + i + 1, 2))
				goto bad;
			char hex[3] = {s[i + 1], s[i + 2], 0};
			char ch = (char)strtoul(hex, NULL, 16);
			if (!ch)
				goto bad;
			strbuf_addch(&sb, ch);
			i += 2;
			break;
		}
		default:
			goto bad;
		}
	}
	return strbuf_detach(&sb, NULL);
bad:
	strbuf_release(&sb);
	return NULL;
}

/* One "build\tKEY=VALUE" line of the module info: the settings imgforge reads. */
static int build_setting(struct imgf_go_buildinfo *bi, const char *line, size_t n,
			 struct imgf_error **err)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{"-ldflags", offsetof(struct imgf_go_buildinfo, ldflags)},
		{"GOOS", offsetof(struct imgf_go_buildinfo, goos)},
		{"GOARCH", offsetof(struct imgf_go_buildinfo, goarch)},
	};
	const char *eq = memchr(line, '=', n);
	if (!eq)
		return 0;
	size_t klen = (size_t)(eq - line);
	for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
		if (strlen(keys[k].key) != klen || memcmp(line, keys[k].key, klen))
			continue;
		const char *v = eq + 1;
		size_t vlen = n - klen - 1;
		char *val = v[0] == '"' ? go_unquote(v, vlen) : xstrndup(v, vlen);
		if (!val)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "module info: build setting '%s' is not a Go "
					      "string",
					      keys[k].key);
		char **slot = (char **)((char *)bi + keys[k].off);
		free(*slot);
		*slot = val;
	}
	return 0;
}

/* runtime/debug's module info text: "path\t...", "build\tKEY=VALUE", ... one per line. */
static int parse_modinfo(struct imgf_go_buildinfo *bi, const char *s, size_t n,
			 struct imgf_error **err)
{
	const char *end = s + n;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
		if (memchr(s, '\0', len))
			return imgf_error_set(err, IMGF_EXIT_FAIL, "module info: a NUL byte");
		if (len > 5 && !memcmp(s, "path\t", 5)) {
			free(bi->path);
			bi->path = xstrndup(s + 5, len - 5);
		} else if (len > 6 && !memcmp(s, "build\t", 6)) {
			if (build_setting(bi, s + 6, len - 6, err) < 0)
				return -1;
		}
		s += len + (nl ? 1 : 0);
	}
	return 0;
}

int imgf_go_buildinfo_parse(const void *sec, size_t len, struct imgf_go_buildinfo *bi,
			    struct imgf_error **err)
{
	const unsigned char *p = sec, *end = p + len;
	memset(bi, 0, sizeof(*bi));
	if (len < HEADER_LEN || memcmp(p, MAGIC, MAGIC_LEN))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "no Go build information (expected the magic '\\xff Go "
				      "buildinf:' and a %d-byte header)",
				      HEADER_LEN);
	if (!(p[15] & FLAG_INLINE))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "Go build information of a Go before 1.18 (not read)");
	p += HEADER_LEN;
	const char *vers, *mod;
	size_t vlen, mlen;
	if (!lenstring(&p, end, &vers, &vlen) || !lenstring(&p, end, &mod, &mlen))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "Go build information is truncated or its string lengths "
				      "are out of range");
	if (!vlen || memchr(vers, '\0', vlen))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "Go build information names no Go version");
	bi->go_version = xstrndup(vers, vlen);
	/* Framed by two 16-byte sentinels, the text ending in a newline (debug/buildinfo). */
	if (mlen >= 2 * SENTINEL_LEN + 1 && mod[mlen - SENTINEL_LEN - 1] == '\n' &&
	    parse_modinfo(bi, mod + SENTINEL_LEN, mlen - 2 * SENTINEL_LEN, err) < 0) {
		imgf_go_buildinfo_release(bi);
		return -1;
	}
	return 0;
}

/* The next field of an -ldflags string as the go command splits it (cmd/internal/quoted):
 * a quoted field is taken whole, without its quotes. NULL at the end, or on an unterminated
 * quote (*bad). */
static char *ldflags_field(const char **s, bool *bad)
{
	const char *p = *s + strspn(*s, " \t\n\r");
	if (!*p) {
		*s = p;
		return NULL;
	}
	if (*p == '"' || *p == '\'') {
		const char *q = strchr(p + 1, *p);
		if (!q) {
			*bad = true;
			return NULL;
		}
		*s = q + 1;
		return xstrndup(p + 1, (size_t)(q - p - 1));
	}
	size_t n = strcspn(p, " \t\n\r");
	*s = p + n;
	return xstrndup(p, n);
}

char *imgf_go_ldflags_x(const char *ldflags, const char *name)
{
	char *found = NULL;
	bool bad = false, want_arg = false;
	size_t nlen = strlen(name);
	char *f;
	while ((f = ldflags_field(&ldflags, &bad))) {
		const char *arg = NULL;
		if (want_arg) {
			arg = f;
			want_arg = false;
		} else if (!strcmp(f, "-X") || !strcmp(f, "--X")) {
			want_arg = true;
		} else if (str_has_prefix(f, "-X=")) {
			arg = f + 3;
		} else if (str_has_prefix(f, "--X=")) {
			arg = f + 4;
		}
		if (arg && !strncmp(arg, name, nlen) && arg[nlen] == '=') {
			free(found);
			found = xstrdup(arg + nlen + 1);
		}
		free(f);
	}
	if (bad) {
		free(found);
		return NULL;
	}
	return found;
}

/* ---- The ELF file ---- */

struct section {
	uint64_t addr, off, size;
	bool present;
};

static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static bool read_at(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

/* Whether s (n bytes) is "vMAJOR.MINOR.PATCH" with an optional -pre/+build suffix. */
static bool version_like(const char *s, size_t n)
{
	size_t i = 1, dots = 0;
	if (n < STAMP_MIN || s[0] != 'v' || s[1] < '0' || s[1] > '9')
		return false;
	for (; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'); i++) {
		if (s[i] == '.' && (s[i - 1] == '.' || ++dots > 2))
			return false;
	}
	if (dots != 2 || s[i - 1] == '.')
		return false;
	if (i == n)
		return true;
	if (s[i] != '-' && s[i] != '+')
		return false;
	for (i++; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') || strchr(".-+_", s[i])))
			return false;
	return true;
}

/*
 * The -X stamps: a string header {pointer, length} in .data or .noptrdata pointing into
 * .rodata at a version-like string that is NUL-terminated, as only the linker's -X writes Go
 * strings (string literals are not terminated).
 */
static char **scan_stamps(int fd, const struct section *rodata, const struct section *data,
			  size_t ndata)
{
	char **v = xcalloc(1, sizeof(*v));
	if (!rodata->present)
		return v;
	for (size_t d = 0; d < ndata; d++) {
		if (!data[d].present || data[d].size < 16 || data[d].size > DATA_MAX)
			continue;
		unsigned char *buf = xmalloc((size_t)data[d].size);
		if (!read_at(fd, buf, (size_t)data[d].size, data[d].off)) {
			free(buf);
			continue;
		}
		for (size_t i = 0; i + 16 <= data[d].size; i += 8) {
			uint64_t ptr = le(buf + i, 8), n = le(buf + i + 8, 8);
			if (n < STAMP_MIN || n > STAMP_MAX || ptr < rodata->addr ||
			    ptr - rodata->addr > rodata->size ||
			    rodata->size - (ptr - rodata->addr) < n + 1)
				continue;
			char s[STAMP_MAX + 1];
			if (!read_at(fd, s, (size_t)n + 1, rodata->off + (ptr - rodata->addr)) ||
			    s[n] != '\0' || !version_like(s, (size_t)n))
				continue;
			bool seen = false;
			for (size_t k = 0; v[k] && !seen; k++)
				seen = !strcmp(v[k], s);
			if (!seen)
				v = strv_push(v, xstrdup(s));
		}
		free(buf);
	}
	return v;
}

int imgf_go_binary_read(const char *path, struct imgf_go_binary *out, struct imgf_error **err)
{
	memset(out, 0, sizeof(*out));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	int r = -1;
	unsigned char h[64];
	unsigned char *shdrs = NULL;
	char *names = NULL, *bisec = NULL;
	if (!read_at(fd, h, sizeof(h), 0) || memcmp(h, "\177ELF", 4) || h[4] != 2 || h[5] != 1) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "'%s' is not a little-endian 64-bit ELF executable", path);
		goto out;
	}
	uint64_t shoff = le(h + 40, 8);
	unsigned shentsize = (unsigned)le(h + 58, 2), shnum = (unsigned)le(h + 60, 2),
		 shstrndx = (unsigned)le(h + 62, 2);
	if (shentsize < 64 || shnum == 0 || shnum > SHNUM_MAX || shstrndx >= shnum) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "'%s': no readable ELF section headers (%u of %u bytes)", path,
			       shnum, shentsize);
		goto out;
	}
	shdrs = xmalloc((size_t)shnum * shentsize);
	if (!read_at(fd, shdrs, (size_t)shnum * shentsize, shoff)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': ELF section headers are truncated",
			       path);
		goto out;
	}
	const unsigned char *sn = shdrs + (size_t)shstrndx * shentsize;
	uint64_t names_off = le(sn + 24, 8), names_size = le(sn + 32, 8);
	if (names_size == 0 || names_size > SHSTRTAB_MAX) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': no readable ELF section names", path);
		goto out;
	}
	names = xmalloc((size_t)names_size + 1);
	if (!read_at(fd, names, (size_t)names_size, names_off)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': ELF section names are truncated", path);
		goto out;
	}
	names[names_size] = '\0';
	struct section bi = {0}, rodata = {0}, data[2] = {{0}};
	for (unsigned i = 0; i < shnum; i++) {
		const unsigned char *s = shdrs + (size_t)i * shentsize;
		uint64_t name = le(s, 4);
		if (name >= names_size || le(s + 4, 4) == 8 /* SHT_NOBITS */)
			continue;
		struct section sec = {le(s + 16, 8), le(s + 24, 8), le(s + 32, 8), true};
		const char *n = names + name;
		if (!strcmp(n, ".go.buildinfo"))
			bi = sec;
		else if (!strcmp(n, ".rodata"))
			rodata = sec;
		else if (!strcmp(n, ".data"))
			data[0] = sec;
		else if (!strcmp(n, ".noptrdata"))
			data[1] = sec;
	}
	if (!bi.present) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "'%s' has no Go build information (no .go.buildinfo section; "
			       "expected a Go program built with Go 1.18 or later)",
			       path);
		goto out;
	}
	size_t bilen = bi.size > BUILDINFO_MAX ? BUILDINFO_MAX : (size_t)bi.size;
	bisec = xmalloc(bilen ? bilen : 1);
	if (!read_at(fd, bisec, bilen, bi.off)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': .go.buildinfo is truncated", path);
		goto out;
	}
	if (imgf_go_buildinfo_parse(bisec, bilen, &out->bi, err) < 0) {
		imgf_error_prefix(err, "'%s'", path);
		goto out;
	}
	out->stamps = scan_stamps(fd, &rodata, data, ARRAY_SIZE(data));
	r = 0;
out:
	free(shdrs);
	free(names);
	free(bisec);
	close(fd);
	if (r < 0)
		imgf_go_binary_release(out);
	return r;
}
