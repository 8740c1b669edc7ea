/*
 * Image references as Docker and containerd read them: "[REGISTRY/]REPOSITORY[:TAG][@DIGEST]",
 * normalized (docker.io, library/), every part checked; registry hosts and mirrors.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imageref.h"
#include "strbuf.h"
#include "util.h"

#define NAME_MAX_LEN 255 /* Docker's limit on "registry/repository" */
#define TAG_MAX_LEN 128

/* ---- references ---------------------------------------------------------------------- */

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool repo_component_valid(const char *s, size_t n)
{
	size_t i = 0;
	if (n == 0 || !is_lower_alnum(s[0]))
		return false;
	while (i < n) {
		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == n)
			return true;
		size_t sep = i;
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i++;
			if (i < n && s[i] == '_')
				i++;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i == n || !is_lower_alnum(s[i]) || i == sep)
			return false;
	}
	return true;
}

static bool has_upper(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			return true;
	return false;
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} */
static bool tag_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > TAG_MAX_LEN || !(is_alnum(t[0]) || t[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(is_alnum(t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return false;
	return true;
}

/* Host label: [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])? */
static bool host_label_valid(const char *s, size_t n)
{
	if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(is_alnum(s[i]) || s[i] == '-'))
			return false;
	return true;
}

/* "host", "host:port", "[v6]" or "[v6]:port"; on error *why says what is wrong. */
static bool registry_valid(const char *r, char **why)
{
	const char *port = NULL;
	if (r[0] == '[') {
		const char *close = strchr(r, ']');
		struct in6_addr a6;
		_cleanup_free_ char *v6 = close ? xstrndup(r + 1, (size_t)(close - r - 1)) : NULL;
		if (!close || inet_pton(AF_INET6, v6, &a6) != 1) {
			*why = xasprintf("invalid IPv6 registry host '%s'", r);
			return false;
		}
		if (close[1] == ':')
			port = close + 2;
		else if (close[1]) {
			*why = xasprintf("invalid registry host '%s'", r);
			return false;
		}
	} else {
		const char *colon = strchr(r, ':');
		size_t hlen = colon ? (size_t)(colon - r) : strlen(r);
		const char *p = r, *end = r + hlen;
		if (hlen == 0) {
			*why = xasprintf("empty registry host in '%s'", r);
			return false;
		}
		while (p <= end) {
			const char *dot = memchr(p, '.', (size_t)(end - p));
			size_t l = dot ? (size_t)(dot - p) : (size_t)(end - p);
			if (!host_label_valid(p, l)) {
				*why = xasprintf("invalid registry host '%.*s'", (int)hlen, r);
				return false;
			}
			if (!dot)
				break;
			p = dot + 1;
		}
		if (colon)
			port = colon + 1;
	}
	if (port) {
		size_t n = strlen(port);
		if (n == 0 || n > 5 || !strspn(port, "0123456789") ||
		    strspn(port, "0123456789") != n || atol(port) > 65535 || atol(port) == 0) {
			*why = xasprintf("invalid registry port '%s'", port);
			return false;
		}
	}
	return true;
}

bool imgf_registry_host_valid(const char *host, char **why)
{
	return registry_valid(host, why);
}

/* "HOST[:PORT][/PATH]" -> host (new string) and path (inside m, or NULL). */
char *imgf_registry_mirror_split(const char *m, const char **path)
{
	const char *slash = strchr(m, '/');
	*path = slash ? slash + 1 : NULL;
	return slash ? xstrndup(m, (size_t)(slash - m)) : xstrdup(m);
}

bool imgf_registry_mirror_valid(const char *m, char **why)
{
	const char *path;
	_cleanup_free_ char *host = imgf_registry_mirror_split(m, &path);
	if (!registry_valid(host, why))
		return false;
	/* PATH: repository components, as a repository name has them. */
	for (const char *p = path; p;) {
		const char *next = strchr(p, '/');
		size_t n = next ? (size_t)(next - p) : strlen(p);
		if (!repo_component_valid(p, n)) {
			*why = xasprintf("invalid path '%s' in registry mirror '%s'", path, m);
			return false;
		}
		p = next ? next + 1 : NULL;
	}
	return true;
}

void imgf_image_ref_release(struct imgf_image_ref *r)
{
	if (!r)
		return;
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	free(r->full);
	memset(r, 0, sizeof(*r));
}

static int ref_error(struct imgf_error **err, const char *ref, char *why)
{
	imgf_error_set(err, IMGF_EXIT_FAIL, "invalid image reference '%s': %s", ref, why);
	free(why);
	return -1;
}

bool imgf_registry_digest_valid(const char *d)
{
	return str_has_prefix(d, "sha256:") && strlen(d) == 71 &&
	       strspn(d + 7, "0123456789abcdef") == 64;
}

int imgf_image_ref_parse(const char *ref, struct imgf_image_ref *out, struct imgf_error **err)
{
	memset(out, 0, sizeof(*out));
	if (!ref || !*ref)
		return ref_error(err, ref ? ref : "", xstrdup("empty reference"));
	for (const char *p = ref; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return ref_error(err, ref,
					 xstrdup("contains whitespace or control characters"));
	if (strstr(ref, "://"))
		return ref_error(err, ref, xstrdup("a reference has no URL scheme"));

	_cleanup_free_ char *name = NULL, *tag = NULL, *digest = NULL;
	const char *at = strchr(ref, '@');
	if (at) {
		const char *d = at + 1;
		const char *colon = strchr(d, ':');
		if (!*d)
			return ref_error(err, ref, xstrdup("empty digest after '@'"));
		if (!colon)
			return ref_error(err, ref, xasprintf("digest '%s' has no algorithm", d));
		if (!str_has_prefix(d, "sha256:"))
			return ref_error(
				err, ref,
				xasprintf("unsupported digest algorithm '%.*s' (only sha256)",
					  (int)(colon - d), d));
		if (!imgf_registry_digest_valid(d))
			return ref_error(
				err, ref,
				xasprintf(
					"digest '%s' is not 'sha256:' and 64 lowercase hex digits",
					d));
		digest = xstrdup(d);
		name = xstrndup(ref, (size_t)(at - ref));
	} else {
		name = xstrdup(ref);
	}
	if (!*name)
		return ref_error(err, ref, xstrdup("empty name"));

	/* A tag is a ':' in the last path component (a ':' before a '/' is a port). */
	char *slash = strrchr(name, '/');
	char *colon = strrchr(slash ? slash : name, ':');
	if (colon) {
		*colon = '\0';
		tag = xstrdup(colon + 1);
		if (!*tag)
			return ref_error(err, ref, xstrdup("empty tag after ':'"));
		if (!tag_valid(tag))
			return ref_error(
				err, ref,
				xasprintf("invalid tag '%s' (want [A-Za-z0-9_][A-Za-z0-9_.-]*, "
					  "at most %d characters)",
					  tag, TAG_MAX_LEN));
	}
	if (!*name)
		return ref_error(err, ref, xstrdup("empty name"));

	_cleanup_free_ char *registry = NULL, *repo = NULL;
	const char *first_slash = strchr(name, '/');
	if (first_slash) {
		size_t flen = (size_t)(first_slash - name);
		bool is_registry = memchr(name, '.', flen) || memchr(name, ':', flen) ||
				   (flen == 9 && memcmp(name, "localhost", 9) == 0) ||
				   name[0] == '[';
		if (is_registry) {
			registry = xstrndup(name, flen);
			repo = xstrdup(first_slash + 1);
		}
	}
	if (!registry) {
		registry = xstrdup("docker.io");
		repo = xstrdup(name);
	} else {
		char *why = NULL;
		if (!registry_valid(registry, &why))
			return ref_error(err, ref, why);
	}
	if (!strcmp(registry, "index.docker.io")) {
		free(registry);
		registry = xstrdup("docker.io");
	}
	if (!*repo)
		return ref_error(err, ref,
				 xasprintf("empty repository name after '%s/'", registry));
	if (has_upper(repo, strlen(repo)))
		return ref_error(err, ref,
				 xasprintf("repository name '%s' must be lowercase", repo));
	for (const char *p = repo;;) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);
		if (n == 0)
			return ref_error(
				err, ref,
				xasprintf("empty path component in repository '%s'", repo));
		if (!repo_component_valid(p, n))
			return ref_error(
				err, ref,
				xasprintf(
					"invalid repository path component '%.*s' (want lowercase "
					"letters and digits separated by '.', '_', '__' or '-')",
					(int)n, p));
		if (!s)
			break;
		p = s + 1;
	}
	if (!strcmp(registry, "docker.io") && !strchr(repo, '/')) {
		char *r = xasprintf("library/%s", repo);
		free(repo);
		repo = r;
	}
	if (strlen(registry) + 1 + strlen(repo) > NAME_MAX_LEN)
		return ref_error(err, ref,
				 xasprintf("name longer than %d characters", NAME_MAX_LEN));
	if (!tag && !digest)
		tag = xstrdup("latest");

	struct strbuf full = STRBUF_INIT;
	strbuf_addf(&full, "%s/%s", registry, repo);
	if (tag)
		strbuf_addf(&full, ":%s", tag);
	if (digest)
		strbuf_addf(&full, "@%s", digest);
	out->registry = STEAL_POINTER(&registry);
	out->repository = STEAL_POINTER(&repo);
	out->tag = STEAL_POINTER(&tag);
	out->digest = STEAL_POINTER(&digest);
	out->full = strbuf_detach(&full, NULL);
	return 0;
}

/* 127.0.0.0/8, localhost, [::1] (with or without a port) are spoken to over plain HTTP. */
bool imgf_registry_is_loopback(const char *registry)
{
	_cleanup_free_ char *host = NULL;
	if (registry[0] == '[') {
		const char *close = strchr(registry, ']');
		host = xstrndup(registry + 1, close ? (size_t)(close - registry - 1) : 0);
		struct in6_addr a6;
		return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	const char *colon = strchr(registry, ':');
	host = colon ? xstrndup(registry, (size_t)(colon - registry)) : xstrdup(registry);
	if (!strcmp(host, "localhost"))
		return true;
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}
