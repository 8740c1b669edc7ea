/*
 * Registry authentication shared by the pull and push clients: WWW-Authenticate challenges and
 * the credentials of a docker-style config.json.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "regauth.h"
#include "strbuf.h"
#include "util.h"

#define DOCKER_CONFIG_MAX (4u << 20)

void imgf_reg_challenge_release(struct imgf_reg_challenge *ch)
{
	free(ch->scheme);
	free(ch->realm);
	free(ch->service);
	free(ch->scope);
	memset(ch, 0, sizeof(*ch));
}

int imgf_reg_challenge_parse(const char *h, struct imgf_reg_challenge *ch)
{
	memset(ch, 0, sizeof(*ch));
	const char *p = h;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t sl = strcspn(p, " \t");
	if (!sl)
		return -1;
	ch->scheme = xstrndup(p, sl);
	p += sl;
	while (*p) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		if (!*p)
			break;
		size_t kl = strcspn(p, "= ,\t");
		if (!kl || p[kl] != '=')
			goto bad;
		_cleanup_free_ char *key = xstrndup(p, kl);
		p += kl + 1;
		struct strbuf v = STRBUF_INIT;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				strbuf_addch(&v, *p++);
			}
			if (*p != '"') {
				strbuf_release(&v);
				goto bad;
			}
			p++;
		} else {
			size_t vl = strcspn(p, " ,\t");
			strbuf_add(&v, p, vl);
			p += vl;
		}
		char **slot = NULL;
		if (!strcasecmp(key, "realm"))
			slot = &ch->realm;
		else if (!strcasecmp(key, "service"))
			slot = &ch->service;
		else if (!strcasecmp(key, "scope"))
			slot = &ch->scope;
		if (slot && !*slot)
			*slot = strbuf_detach(&v, NULL);
		strbuf_release(&v);
	}
	return 0;
bad:
	imgf_reg_challenge_release(ch);
	return -1;
}

char *imgf_reg_auth_file_default(void)
{
	const char *dc = getenv("DOCKER_CONFIG");
	const char *home = getenv("HOME");
	char *p = dc && *dc	  ? path_join(dc, "config.json")
		  : home && *home ? xasprintf("%s/.docker/config.json", home)
				  : NULL;
	if (p && access(p, F_OK) < 0) {
		free(p);
		p = NULL;
	}
	return p;
}

/* Whether an auths key ("host", "https://host/v1/") names `registry`. */
static bool auth_key_matches(const char *key, const char *registry)
{
	if (str_has_prefix(key, "https://"))
		key += 8;
	else if (str_has_prefix(key, "http://"))
		key += 7;
	size_t n = strcspn(key, "/");
	if (!strcmp(registry, "docker.io") &&
	    ((n == 15 && !strncmp(key, "index.docker.io", n)) ||
	     (n == 20 && !strncmp(key, "registry-1.docker.io", n))))
		return true;
	return strlen(registry) == n && !strncmp(key, registry, n);
}

static char *base64_decode(const char *s, size_t *len)
{
	size_t n = strlen(s);
	if (n % 4)
		return NULL;
	unsigned char *out = xmalloc(n / 4 * 3 + 1);
	int r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (r < 0) {
		free(out);
		return NULL;
	}
	size_t l = (size_t)r;
	for (size_t i = n; i > 0 && s[i - 1] == '='; i--)
		l--;
	out[l] = '\0';
	*len = l;
	return (char *)out;
}

int imgf_reg_auth_lookup(const char *path, const char *registry, char **user, char **password,
			 struct imgf_error **err)
{
	*user = *password = NULL;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (read_file(path, DOCKER_CONFIG_MAX, &data, &len, err) < 0)
		return imgf_error_prefix(err, "registry credentials");
	json_error_t jerr;
	json_t *root = json_loadb(data, len, 0, &jerr);
	if (!json_is_object(root)) {
		json_decref(root);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "registry credentials '%s': not a JSON object%s%s", path,
				      root ? "" : ": ", root ? "" : jerr.text);
	}
	int ret = 0;
	json_t *auths = json_object_get(root, "auths");
	const char *key;
	json_t *ent;
	json_object_foreach(auths, key, ent)
	{
		if (!auth_key_matches(key, registry))
			continue;
		const char *a = json_string_value(json_object_get(ent, "auth"));
		const char *u = json_string_value(json_object_get(ent, "username"));
		const char *p = json_string_value(json_object_get(ent, "password"));
		if (a && *a) {
			size_t dl = 0;
			_cleanup_free_ char *dec = base64_decode(a, &dl);
			char *colon = dec ? memchr(dec, ':', dl) : NULL;
			if (!colon || colon == dec || memchr(dec, '\0', dl)) {
				ret = imgf_error_set(err, IMGF_EXIT_FAIL,
						     "registry credentials '%s': auths.'%s'.auth "
						     "is not base64 of 'USER:PASSWORD'",
						     path, key);
				goto out;
			}
			*user = xstrndup(dec, (size_t)(colon - dec));
			*password = xstrdup(colon + 1);
			ret = 1;
			goto out;
		}
		if (u && *u && p) {
			*user = xstrdup(u);
			*password = xstrdup(p);
			ret = 1;
			goto out;
		}
		if (json_object_get(ent, "identitytoken")) {
			ret = imgf_error_set(err, IMGF_EXIT_FAIL,
					     "registry credentials '%s': auths.'%s' holds an "
					     "identitytoken, which is not supported (use auth)",
					     path, key);
			goto out;
		}
	}
	json_t *helpers = json_object_get(root, "credHelpers");
	json_object_foreach(helpers, key, ent)
	{
		if (auth_key_matches(key, registry)) {
			ret = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"registry credentials '%s': '%s' is left to credential "
				"helper '%s', which is not supported (give an auths "
				"entry)",
				path, registry, json_string_value(ent));
			goto out;
		}
	}
	const char *store = json_string_value(json_object_get(root, "credsStore"));
	if (store && *store)
		ret = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"registry credentials '%s': no auths entry for '%s', and "
			"credentials store '%s' is not supported (give an auths entry)",
			path, registry, store);
out:
	json_decref(root);
	return ret;
}

char *imgf_reg_error_text(const struct strbuf *body)
{
	if (!body->len)
		return NULL;
	json_t *root = json_loadb(body->buf, body->len, 0, NULL);
	json_t *e0 = json_array_get(json_object_get(root, "errors"), 0);
	const char *code = json_string_value(json_object_get(e0, "code"));
	const char *msg = json_string_value(json_object_get(e0, "message"));
	char *r = NULL;
	if (code && msg)
		r = xasprintf("%s: %s", code, msg);
	else if (code || msg)
		r = xstrdup(code ? code : msg);
	json_decref(root);
	return r;
}

void imgf_reg_tls_unverified_warn(const char *registry)
{
	static bool warned;
	if (__atomic_exchange_n(&warned, true, __ATOMIC_RELAXED))
		return;
	log_warn("registry '%s': TLS without verifying its certificate (tls_verify false): anyone "
		 "on the way can read and change what is pushed or pulled",
		 registry);
}
