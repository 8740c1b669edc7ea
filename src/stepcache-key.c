/*
 * The step cache's keys: each step's from the previous one's, its config, what its inputs
 * will be (read from their checksums, nothing downloaded), its provisioner's data files and
 * the host files it reads; the chain from the builder's config and base on; and the final
 * key of the artifact.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "checksum.h"
#include "config.h"
#include "contract.h"
#include "data.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "provisioner.h"
#include "stepcache.h"
#include "stepcache-internal.h"
#include "strbuf.h"
#include "util.h"

#define LIST_MAX (1u << 20) /* a checksum list */

/* sha256 of the canonical form of a JSON document (sorted keys, compact); steals doc. */
static char *digest_json(json_t *doc)
{
	_cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, text, strlen(text), hex);
	return xstrdup(hex);
}

/* The file name a checksum list knows a URL by: its last path component. */
static char *url_last_component(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t len = strcspn(p, "?#");
	const char *slash = memrchr(p, '/', len);
	const char *base = slash ? slash + 1 : p + len;
	return xstrndup(base, (size_t)(p + len - base));
}

/*
 * What an input will be, before it is downloaded: "ALG:HEX" from its checksum, reading a
 * checksum list where the checksum names one (lists are small; the artifact is not fetched).
 */
static int expected_digest(struct imgf_build *b, const struct imgf_input *in, json_t *lists,
			   char **out, struct imgf_error **err)
{
	struct imgf_checksum c;
	if (imgf_checksum_parse(in->checksum, &c, err) < 0)
		return -1;
	int r = 0;
	bool named = false; /* the error names the input already */
	if (c.is_list) {
		json_t *text = json_object_get(lists, c.url);
		if (!text) {
			struct strbuf sb = STRBUF_INIT;
			r = imgf_fetch_checksum_list(in, c.url, LIST_MAX, &b->fetch, &sb, err);
			named = r < 0;
			if (r == 0) {
				text = json_stringn(sb.buf, sb.len);
				json_object_set_new(lists, c.url, text);
			}
			strbuf_release(&sb);
		}
		if (r == 0) {
			_cleanup_free_ char *file = url_last_component(in->url);
			r = imgf_checksum_list_lookup(&c, json_string_value(text),
						      json_string_length(text), file, err);
		}
	}
	if (r == 0)
		*out = xasprintf("%s:%s", imgf_digest_alg_name(c.alg), c.hex);
	imgf_checksum_release(&c);
	return r < 0 && !named ? imgf_error_prefix(err, "input '%s'", in->name) : r;
}

int imgf_stepcache_input_digest(struct imgf_build *b, const struct imgf_input *in, char **out,
				struct imgf_error **err)
{
	json_t *lists = json_object();
	int r = expected_digest(b, in, lists, out, err);
	json_decref(lists);
	return r;
}

/* The step's provisioner data files as it would read them: interpolated, digested. */
static json_t *data_digests(const struct imgf_step *s)
{
	json_t *out = json_object();
	_cleanup_free_ char *prefix = xasprintf("provisioners/%s/", s->ops->name);
	for (const struct imgf_data_file *f = imgf_data_files; f->path; f++) {
		if (!str_has_prefix(f->path, prefix))
			continue;
		char hex[IMGF_DIGEST_HEX_MAX];
		_cleanup_free_ char *text = NULL;
		struct imgf_error *e = NULL;
		if (imgf_interpolate((const char *)f->data, s->build->config->vars, f->path, &text,
				     &e) < 0) {
			imgf_error_free(e); /* the step itself will say so */
			imgf_digest_buffer(IMGF_SHA256, f->data, f->size, hex);
		} else {
			imgf_digest_buffer(IMGF_SHA256, text, strlen(text), hex);
		}
		json_object_set_new(out, f->path, json_string(hex));
	}
	return out;
}

#define HASH_WHOLE_MAX (256ull << 20) /* a bigger file is known by size, times and inode */
#define TREE_HASH_MAX (2ull << 30)    /* a directory's files past this many bytes: likewise */

/*
 * One regular file: its sha256; past HASH_WHOLE_MAX, or once *budget (bytes still to hash)
 * is spent, what stat says of it (a write moves its ctime, which nothing sets back).
 */
static char *file_fingerprint(const char *path, const struct stat *st, uint64_t *budget)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	struct imgf_error *e = NULL;
	uint64_t size = (uint64_t)st->st_size;
	if (size <= HASH_WHOLE_MAX && size <= *budget &&
	    imgf_digest_file(path, IMGF_SHA256, hex, &e) == 0) {
		*budget -= size;
		return xasprintf("sha256:%s", hex);
	}
	imgf_error_free(e);
	return xasprintf("stat:%lld:%lld.%09ld:%lld.%09ld:%llu", (long long)st->st_size,
			 (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
			 (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec,
			 (unsigned long long)st->st_ino);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every entry under dir, in name order, as [name relative to the top, mode, what it holds]:
 * a file's fingerprint, a symlink's target (links are not followed). */
static void tree_walk(const char *dir, const char *rel, json_t *list, uint64_t *budget)
{
	DIR *d = opendir(dir);
	if (!d) {
		json_array_append_new(list, json_pack("[s,s]", rel, strerror(errno)));
		return;
	}
	char **names = NULL;
	size_t n = 0, alloc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		ALLOC_GROW(names, n + 1, alloc);
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d); /* before going down: a deep tree holds no descriptors */
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = path_join(dir, names[i]);
		_cleanup_free_ char *name =
			*rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
		struct stat st;
		char *what = NULL;
		if (lstat(path, &st) < 0) {
			what = xstrdup(strerror(errno));
			st.st_mode = 0;
		} else if (S_ISREG(st.st_mode)) {
			what = file_fingerprint(path, &st, budget);
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t len = readlink(path, target, sizeof(target) - 1);
			what = xstrndup(target, len < 0 ? 0 : (size_t)len);
		}
		json_array_append_new(
			list, json_pack("[s,i,s]", name, (int)st.st_mode, what ? what : ""));
		free(what);
		if (S_ISDIR(st.st_mode))
			tree_walk(path, name, list, budget);
		free(names[i]);
	}
	free(names);
}

/* A directory by content: every entry's name, mode and fingerprint (tree_walk). */
static char *tree_fingerprint(const char *path)
{
	json_t *list = json_array();
	uint64_t budget = TREE_HASH_MAX;
	tree_walk(path, "", list, &budget);
	_cleanup_free_ char *hex = digest_json(list);
	return xasprintf("tree:%s", hex);
}

/*
 * The host files and directories the step reads (its provisioner says which keys name them),
 * each with its fingerprint; a path that is not there says so (the step fails on it).
 */
static json_t *local_digests(const struct imgf_step *s)
{
	json_t *out = json_object();
	_cleanup_strv_ char **paths = imgf_step_host_paths(s);
	for (size_t i = 0; paths[i]; i++) {
		struct stat st;
		uint64_t budget = HASH_WHOLE_MAX;
		char *fp = stat(paths[i], &st) < 0 ? xasprintf("missing:%s", strerror(errno))
			   : S_ISDIR(st.st_mode)   ? tree_fingerprint(paths[i])
			   : S_ISREG(st.st_mode)   ? file_fingerprint(paths[i], &st, &budget)
						   : xasprintf("mode:%o", (unsigned)st.st_mode);
		json_object_set_new(out, paths[i], json_string(fp));
		free(fp);
	}
	return out;
}

static int step_key(const struct imgf_step *s, const char *prev, json_t *lists, char **key,
		    struct imgf_error **err)
{
	json_t *inputs = json_array();
	for (size_t j = 0; j < s->ninputs; j++) {
		char *d = NULL;
		if (expected_digest(s->build, &s->inputs[j], lists, &d, err) < 0) {
			json_decref(inputs);
			return -1;
		}
		json_array_append_new(
			inputs, json_pack("{s:s,s:s}", "name", s->inputs[j].name, "digest", d));
		free(d);
	}
	json_t *extra = NULL;
	if (s->ops->cache_key && s->ops->cache_key(s, &extra, err) < 0) {
		json_decref(inputs);
		return -1;
	}
	const char *arch = s->build->contract->arch;
	json_t *doc = json_pack("{s:s,s:s,s:s,s:O,s:o,s:o,s:o,s:s}", "prev", prev, "imgforge",
				IMGF_VERSION, "type", s->ops->name, "config", s->cfg, "inputs",
				inputs, "data", data_digests(s), "local", local_digests(s), "arch",
				arch ? arch : "");
	/* only when there is one: the keys of every other step stay as they were */
	if (extra)
		json_object_set_new(doc, "extra", extra);
	*key = digest_json(doc);
	return 0;
}

int imgf_stepcache_step_key(const struct imgf_step *s, const char *prev, char **key,
			    struct imgf_error **err)
{
	json_t *lists = json_object();
	int r = step_key(s, prev, lists, key, err);
	json_decref(lists);
	return r;
}

int imgf_stepcache_compute_keys(struct imgf_build *b, const char *base, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	/* The builder's config as the steps see it: without the keys that act after them. */
	json_t *cfg = json_deep_copy(b->builder_cfg);
	for (const char *const *k = b->builder->cache->late_keys; k && *k; k++)
		json_object_del(cfg, *k);
	_cleanup_free_ char *prev =
		digest_json(json_pack("{s:s,s:s,s:o,s:s}", "imgforge", IMGF_VERSION, "builder",
				      b->builder->name, "config", cfg, "base", base));
	json_t *lists = json_object();
	for (size_t i = 0; i < b->nsteps; i++) {
		if (step_key(&b->steps[i], prev, lists, &c->keys[i], err) < 0) {
			json_decref(lists);
			return imgf_error_prefix(err, "step cache: %s", b->steps[i].where);
		}
		free(prev);
		prev = xstrdup(c->keys[i]);
	}
	json_decref(lists);
	return 0;
}

void imgf_stepcache_final_key(struct imgf_build *b)
{
	struct imgf_stepcache *c = b->cache;
	if (!c)
		return;
	const char *last = b->nsteps ? c->keys[b->nsteps - 1] : "";
	free(c->final_key);
	c->final_key = digest_json(json_pack("{s:s,s:s,s:O,s:O,s:O,s:s}", "prev", last, "imgforge",
					     IMGF_VERSION, "builder", b->builder_cfg, "labels",
					     b->labels, "post_processors", b->def->post_processors,
					     "source_date_epoch", b->contract->epoch.text));
}

/* Which steps' states are kept: all but a quick step followed by another quick one. With the
 * keys, since what a state stands on (stepcache-remote.c) follows from it too. */
bool imgf_stepcache_keeps(const struct imgf_build *b, size_t i)
{
	const struct imgf_step *s = b->steps;
	return i + 1 >= b->nsteps || !s[i].ops->quick || !s[i].ops->quick(&s[i]) ||
	       !s[i + 1].ops->quick || !s[i + 1].ops->quick(&s[i + 1]);
}
