/*
 * Downloads (fetch.h): the options, one URL into a buffer, and imgf_fetch_all, which resolves
 * every checksum first (checksum lists read once per call), takes what the cache already holds
 * and places the rest as transfers into it. The transfers run in fetch-loop.c and
 * fetch-xfer.c (what they share: fetch-internal.h).
 */
#include <arpa/inet.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "checksum.h"
#include "digest.h"
#include "dlcache.h"
#include "error.h"
#include "fetch.h"
#include "fetch-internal.h"
#include "fsutil.h"
#include "http.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"

/* With the default 5 attempts and 1 s base a URL gives up within a few minutes at worst:
 * see http.h for the bounds of one attempt. */
#define LIST_MAX (1024 * 1024) /* a checksum list is text; a bigger one is not a list */

char *imgf_cache_dir_default(void)
{
	const char *v = getenv("IMGFORGE_CACHE_DIR");
	if (v && *v)
		return xstrdup(v);
	v = getenv("XDG_CACHE_HOME");
	if (v && v[0] == '/') /* the XDG spec says to ignore relative paths */
		return path_join(v, "imgforge");
	v = getenv("HOME");
	if (!v || !*v) {
		struct passwd *pw = getpwuid(getuid());
		v = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/tmp";
	}
	return xasprintf("%s/.cache/imgforge", v);
}

void imgf_fetch_opts_default(struct imgf_fetch_opts *o, const char *cache_dir)
{
	o->cache_dir = cache_dir;
	o->max_attempts = IMGF_HTTP_MAX_ATTEMPTS;
	o->retry_base_ms = imgf_http_retry_policy(o->max_attempts).base_ms;
	o->parallel = 4;
	o->max_size = IMGF_FETCH_MAX_SIZE_DEFAULT;
	o->timeout_s = IMGF_FETCH_TIMEOUT_DEFAULT;
	o->stall_s = IMGF_HTTP_STALL_S_DEFAULT;
}

int imgf_fetch_checksum_list(const struct imgf_input *in, const char *url, size_t max,
			     const struct imgf_fetch_opts *o, struct strbuf *out,
			     struct imgf_error **err)
{
	if (imgf_fetch_to_buffer(url, max, o, out, err) == 0)
		return 0;
	const char *co = in->checksum_origin ? in->checksum_origin : in->origin;
	if (co && *err && (*err)->status != IMGF_EXIT_INTERRUPTED)
		imgf_error_suffix(err, " (URL from %s; point it at a mirror with --var)", co);
	return imgf_error_prefix(err, "'%s': checksum list", in->name);
}

void imgf_input_release(struct imgf_input *in)
{
	free(in->name);
	free(in->url);
	free(in->checksum);
	free(in->origin);
	free(in->checksum_origin);
	free(in->path);
	memset(in, 0, sizeof(*in));
}

int imgf_fetch_to_buffer(const char *url, size_t max, const struct imgf_fetch_opts *o,
			 struct strbuf *out, struct imgf_error **err)
{
	struct imgf_fetch_opts defaults, fixed;
	if (!o) {
		imgf_fetch_opts_default(&defaults, NULL);
		o = &defaults;
	}
	if (imgf_http_init(err) < 0)
		return -1;
	struct fetch f;
	imgf_fetch_init(&f, o, &fixed);
	f.multi = curl_multi_init();
	struct xfer *x = imgf_fetch_xfer_new(&f, url, url);
	size_t saved_max = out->max;
	x->buf = out;
	x->buf_max = max;
	out->max = max;
	int r = imgf_fetch_run(&f);
	out->max = saved_max;
	out->overflow = 0;
	if (r < 0) {
		strbuf_reset(out);
		imgf_fetch_take_error(&f, err);
	}
	imgf_fetch_release(&f);
	return r;
}

bool imgf_url_unauthenticated(const char *url)
{
	if (!url || strncasecmp(url, "http://", 7) != 0)
		return false;
	CURLU *u = curl_url();
	char *host = NULL;
	bool remote = true;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		struct in_addr a4;
		remote = !(!strcasecmp(host, "localhost") || !strcmp(host, "[::1]") ||
			   (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127));
	}
	curl_free(host);
	curl_url_cleanup(u);
	return remote;
}

/* ---- imgf_fetch_all ---- */

/* Checksum lists already read in this call: many inputs share one SHA256SUMS. */
struct list_cache {
	char *url;
	struct strbuf text;
};

/* The file name a checksum list knows the URL's file by: its last path component. */
static char *url_file_name(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t len = strcspn(p, "?#");
	const char *slash = memrchr(p, '/', len);
	const char *base = slash ? slash + 1 : p + len; /* no path at all: host only */
	size_t blen = (size_t)(p + len - base);
	char *name = xstrndup(base, blen);
	if (strchr(name, '%')) {
		int out = 0;
		char *u = curl_easy_unescape(NULL, name, (int)blen, &out);
		if (u && out > 0 && (size_t)out == strlen(u) && !strchr(u, '/')) {
			free(name);
			name = xstrdup(u);
		}
		curl_free(u);
	}
	return name;
}

static int resolve_checksum(struct imgf_input *in, const struct imgf_fetch_opts *o,
			    struct list_cache **lists, size_t *nlists, size_t *alloc,
			    struct imgf_error **err)
{
	struct imgf_checksum c;
	if (imgf_checksum_parse(in->checksum, &c, err) < 0)
		return imgf_error_prefix(err, "fetch '%s'", in->name);
	if (c.is_list) {
		struct list_cache *l = NULL;
		for (size_t i = 0; i < *nlists && !l; i++)
			if (strcmp((*lists)[i].url, c.url) == 0)
				l = &(*lists)[i];
		if (!l) {
			struct strbuf text = STRBUF_INIT;
			if (imgf_fetch_checksum_list(in, c.url, LIST_MAX, o, &text, err) < 0) {
				strbuf_release(&text);
				imgf_checksum_release(&c);
				return -1;
			}
			if (imgf_url_unauthenticated(c.url))
				log_warn("'%s': checksum list '%s' comes over plain http: the "
					 "download's integrity rests on an unauthenticated "
					 "connection (serve it over https)",
					 in->name, c.url);
			ALLOC_GROW(*lists, *nlists + 1, *alloc);
			l = &(*lists)[(*nlists)++];
			l->url = xstrdup(c.url);
			l->text = text;
		}
		_cleanup_free_ char *file = url_file_name(in->url);
		int r;
		if (!*file)
			r = imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"'%s': URL '%s' names no file to look up in checksum list "
				"'%s'",
				in->name, in->url, c.url);
		else if ((r = imgf_checksum_list_lookup(&c, l->text.buf, l->text.len, file, err)) <
			 0)
			imgf_error_prefix(err, "'%s'", in->name);
		if (r < 0) {
			imgf_checksum_release(&c);
			return -1;
		}
	}
	in->alg = c.alg;
	memcpy(in->hex, c.hex, sizeof(in->hex));
	imgf_checksum_release(&c);
	return 0;
}

static void list_cache_free(struct list_cache *lists, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lists[i].url);
		strbuf_release(&lists[i].text);
	}
	free(lists);
}

int imgf_fetch_all(struct imgf_input *inputs, size_t n, const struct imgf_fetch_opts *o,
		   struct imgf_error **err)
{
	struct imgf_fetch_opts defaults, fixed;
	if (!o) {
		imgf_fetch_opts_default(&defaults, NULL);
		o = &defaults;
	}
	if (n == 0)
		return 0;
	if (imgf_http_init(err) < 0)
		return -1;
	_cleanup_free_ char *default_dir = o->cache_dir ? NULL : imgf_cache_dir_default();
	const char *cache = o->cache_dir ? o->cache_dir : default_dir;

	/* 1. Every checksum, so a bad one fails before anything is downloaded. */
	struct list_cache *lists = NULL;
	size_t nlists = 0, lists_alloc = 0;
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (!inputs[i].name || !inputs[i].url || !inputs[i].checksum)
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "fetch '%s': input needs a name, a URL and a checksum",
					   inputs[i].name ? inputs[i].name : "(unnamed)");
		else
			r = resolve_checksum(&inputs[i], o, &lists, &nlists, &lists_alloc, err);
	}
	list_cache_free(lists, nlists);
	if (r < 0)
		return -1;

	/* 2. What the cache has, verified; the rest becomes transfers. */
	_cleanup_free_ char *partial = imgf_dlcache_partial_dir(cache);
	if (mkdir_p(partial, 0755, err) < 0)
		return imgf_error_prefix(err, "cache '%s'", cache);
	struct fetch f;
	imgf_fetch_init(&f, o, &fixed);
	f.multi = curl_multi_init();
	_cleanup_free_ struct xfer **owner =
		xcalloc(n, sizeof(*owner)); /* the transfer per input */
	for (size_t i = 0; i < n && r == 0; i++) {
		struct imgf_input *in = &inputs[i];
		_cleanup_free_ char *final = imgf_dlcache_entry(cache, in->alg, in->hex);
		for (size_t j = 0; j < i && r == 0; j++) {
			if (strcmp(inputs[j].url, in->url) == 0 &&
			    (inputs[j].alg != in->alg || strcmp(inputs[j].hex, in->hex) != 0))
				r = imgf_error_set(err, IMGF_EXIT_FAIL,
						   "inputs '%s' and '%s' fetch '%s' with different "
						   "checksums",
						   inputs[j].name, in->name, in->url);
			else if (!owner[i] && owner[j] && strcmp(owner[j]->final_path, final) == 0)
				owner[i] = owner[j]; /* the same file: download it once */
		}
		if (owner[i] || r < 0)
			continue;
		r = imgf_fetch_cache_entry_check(in, final, err);
		if (r < 0) {
			imgf_error_prefix(err, "fetch '%s'", in->name);
			break;
		}
		if (r == 1) {
			imgf_fetch_event_fetched(in, true);
			r = 0;
			continue;
		}
		_cleanup_free_ char *dir = path_dirname(final);
		if (mkdir_p(dir, 0755, err) < 0) {
			r = imgf_error_prefix(err, "cache '%s'", cache);
			break;
		}
		char url_hash[IMGF_DIGEST_HEX_MAX];
		imgf_digest_buffer(IMGF_SHA256, in->url, strlen(in->url), url_hash);
		struct xfer *x = imgf_fetch_xfer_new(&f, in->url, in->name);
		x->in = in;
		if (in->max_size)
			x->max = in->max_size;
		x->final_path = STEAL_POINTER(&final);
		x->part_path = xasprintf("%s/%s.part", partial, url_hash);
		owner[i] = x;
	}

	/* 3. Download, in parallel, verifying as the bytes arrive. */
	if (r == 0)
		r = imgf_fetch_run(&f);
	if (r == 0) {
		for (size_t i = 0; i < n; i++) {
			struct imgf_input *in = &inputs[i];
			const struct imgf_input *src = owner[i] ? owner[i]->in : NULL;
			if (!src || src == in)
				continue;
			free(in->path);
			in->path = xstrdup(src->path);
			memcpy(in->sha256, src->sha256, sizeof(in->sha256));
			in->size = src->size;
		}
	} else {
		imgf_fetch_take_error(&f, err);
	}
	imgf_fetch_release(&f);
	return r;
}
