#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "builder.h"
#include "checksum.h"
#include "config.h"
#include "contract.h"
#include "data.h"
#include "digest.h"
#include "build.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "log.h"
#include "provisioner.h"
#include "redact.h"
#include "stepcache.h"
#include "stepcache-internal.h"
#include "strbuf.h"
#include "util.h"

#define LIST_MAX (1u << 20)  /* a checksum list */
#define ENTRY_MAX (8u << 20) /* an index entry */

void imgf_stepcache_free(struct imgf_stepcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; c->keys && c->keys[i]; i++)
		json_decref(c->found[i]);
	for (size_t i = 0; c->use && i < c->nuse; i++)
		if (c->use[i] >= 0)
			close(c->use[i]);
	free(c->use);
	if (c->final_use >= 0)
		close(c->final_use);
	strv_free(c->keys);
	free(c->found);
	free(c->dir);
	free(c->final_key);
	json_decref(c->final_found);
	free(c);
}

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

/*
 * Twin builds — the same builder and steps, as capi-qcow2 and capi-ova built in parallel —
 * have the same keys, so they meet in the cache. Two flock()s per key keep one from
 * destroying what the other uses:
 *   CACHE/steps/KEY.save  exclusive while a build looks for, saves and records a state under
 *                         KEY: the twin that comes second waits, finds the first one's entry
 *                         and goes on from its state (cache_adopt) rather than replacing it;
 *   CACHE/steps/KEY.use   shared by every build that stands on KEY's state (the cached steps
 *                         it starts from, each step it saves or adopts, the artifact it gives
 *                         out) until the build ends; a state is removed only by whoever takes
 *                         it exclusively without waiting, else it stays (prune keeps the
 *                         entry; --no-cache's new entry carries it as "superseded").
 */
static char *lock_path(const char *dir, const char *key, const char *what)
{
	_cleanup_free_ char *name = xasprintf("%s.%s", key, what);
	return path_join(dir, name);
}

/*
 * flock(op) on DIR/KEY.WHAT, made if missing. A remover unlinks it while holding it, so the
 * lock counts only on the file still at that path. Returns the descriptor, or -1 with errno
 * (EWOULDBLOCK: held elsewhere, with LOCK_NB; EINTR: interrupted).
 */
static int lock_take(const char *dir, const char *key, const char *what, int op)
{
	_cleanup_free_ char *path = lock_path(dir, key, what);
	struct imgf_error *e = NULL;
	if (mkdir_p(dir, 0700, &e) < 0) {
		imgf_error_free(e);
		return -1;
	}
	for (int tries = 0; tries < 10; tries++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return -1;
		int r;
		while ((r = flock(fd, op)) < 0 && errno == EINTR && !imgf_interrupted)
			;
		if (r < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		struct stat a, b;
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			return fd;
		close(fd);
	}
	errno = EAGAIN;
	return -1;
}

/* Remove DIR/KEY.WHAT unless someone holds it (it is made again when next needed). */
static void lock_remove(const char *dir, const char *key, const char *what)
{
	int fd = lock_take(dir, key, what, LOCK_EX | LOCK_NB);
	if (fd < 0)
		return;
	_cleanup_free_ char *path = lock_path(dir, key, what);
	unlink(path);
	close(fd);
}

/* Stand on key's state until the build ends (a shared KEY.use); *slot keeps the lock. */
static void use_take(const struct imgf_stepcache *c, int *slot, const char *key)
{
	if (*slot >= 0)
		return;
	*slot = lock_take(c->dir, key, "use", LOCK_SH);
	if (*slot < 0)
		log_debug("step cache: cannot lock '%.12s': %s", key, strerror(errno));
}

/* The save lock of key: the caller waits (saying so) while a twin build holds it. */
static int save_lock(const struct imgf_build *b, const char *key, const char *what)
{
	int fd = lock_take(b->cache->dir, key, "save", LOCK_EX | LOCK_NB);
	if (fd < 0 && errno == EWOULDBLOCK) {
		log_info("%s: %s: waiting for another build that is caching the same state (%.12s)",
			 b->def->name, what, key);
		fd = lock_take(b->cache->dir, key, "save", LOCK_EX);
	}
	return fd;
}

/*
 * A record's id that names a file (has a '/') must resolve inside CACHE/steps/BUILDER, the
 * only place a builder keeps state: a planted record ("../" in its id, or a path elsewhere)
 * must not make the cache check, remove or rewrite a file outside it. The directory is
 * resolved (symlinks and "..") and the last component is a plain name, so what is removed
 * is the entry of that directory itself.
 */
static int record_id_check(const char *cache_dir, const char *builder, const char *id,
			   struct imgf_error **err)
{
	if (!strchr(id, '/'))
		return 0; /* not a path: a docker image ID */
	if (!imgf_builder_find(builder))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "id '%s' of unknown builder '%s'", id,
				      builder);
	const char *name = path_basename(id);
	_cleanup_free_ char *own = xasprintf("%s/steps/%s", cache_dir, builder);
	_cleanup_free_ char *dir = path_dirname(id);
	_cleanup_free_ char *real_own = realpath(own, NULL);
	_cleanup_free_ char *real_dir = realpath(dir, NULL);
	size_t n = real_own ? strlen(real_own) : 0;
	if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || !real_own || !real_dir ||
	    strncmp(real_dir, real_own, n) != 0 || (real_dir[n] != '/' && real_dir[n] != '\0'))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "id '%s' is not a file inside '%s'", id,
				      own);
	return 0;
}

static char *entry_path(const struct imgf_stepcache *c, const char *key)
{
	_cleanup_free_ char *name = xasprintf("%s.json", key);
	return path_join(c->dir, name);
}

static json_t *entry_load(const char *path)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	struct imgf_error *e = NULL;
	if (read_file(path, ENTRY_MAX, &text, &len, &e) < 0) {
		imgf_error_free(e);
		return NULL;
	}
	return json_loadb(text, len, 0, NULL);
}

/* Remove a state an entry named, checked to be the cache's (a failure only says so). */
static void state_drop(const struct imgf_builder_ops *ops, const char *cache_dir,
		       const char *builder, const char *id, bool final)
{
	struct imgf_error *e = NULL;
	if (record_id_check(cache_dir, builder, id, &e) < 0 ||
	    (ops && ops->cache && ops->cache->drop(id, final, &e) < 0))
		log_debug("step cache: the state '%s' stays: %s", id, e->msg);
	imgf_error_free(e);
}

/* The states an entry names besides its own: those of entries it replaced while another
 * build stood on them. */
static void superseded_drop(const struct imgf_builder_ops *ops, const char *cache_dir,
			    const char *builder, json_t *entry)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(entry, "superseded"), i, v)
	{
		const char *id = json_string_value(json_object_get(v, "id"));
		if (id)
			state_drop(ops, cache_dir, builder, id,
				   json_is_true(json_object_get(v, "final")));
	}
}

/*
 * A new entry for a key (--no-cache refreshes them, or the old one was not intact): the state
 * the old one named goes, unless a build stands on it — then it stays, and the new entry
 * carries it under "superseded" until the entry is replaced or pruned when nobody does.
 * Steals entry.
 */
static void entry_replace(struct imgf_build *b, json_t *entry)
{
	const char *key = json_string_value(json_object_get(entry, "key"));
	_cleanup_free_ char *path = entry_path(b->cache, key);
	json_t *old = entry_load(path);
	const char *old_id = json_string_value(json_object_get(old, "id"));
	const char *id = json_string_value(json_object_get(entry, "id"));
	if (old_id) {
		bool final = json_is_true(json_object_get(old, "final"));
		bool same = id && !strcmp(old_id, id);
		int fd = lock_take(b->cache->dir, key, "use", LOCK_EX | LOCK_NB);
		if (fd >= 0) {
			if (!same)
				state_drop(b->builder, b->cache_dir, b->builder->name, old_id,
					   final);
			superseded_drop(b->builder, b->cache_dir, b->builder->name, old);
			close(fd);
		} else {
			json_t *keep = json_object_get(old, "superseded");
			keep = json_is_array(keep) ? json_deep_copy(keep) : json_array();
			if (!same)
				json_array_append_new(
					keep, json_pack("{s:s,s:b}", "id", old_id, "final", final));
			json_object_set_new(entry, "superseded", keep);
			log_info("%s: the cached state '%s' stays while another build uses it",
				 b->def->name, old_id);
		}
	}
	json_decref(old);
	imgf_stepcache_entry_write(b->cache->dir, entry);
	json_decref(entry);
}

void imgf_stepcache_entry_write(const char *dir, json_t *entry)
{
	const char *key = json_string_value(json_object_get(entry, "key"));
	_cleanup_free_ char *name = xasprintf("%s.json", key);
	_cleanup_free_ char *path = path_join(dir, name);
	_cleanup_free_ char *raw = json_dumps(entry, JSON_INDENT(1) | JSON_SORT_KEYS);
	/* the inputs' URLs may carry credentials; the manifest gets them redacted anyway */
	_cleanup_free_ char *text = imgf_redact(raw);
	struct imgf_error *e = NULL;
	int r = mkdir_p(dir, 0700, &e);
	if (r == 0)
		chmod(dir, 0700); /* an older imgforge made it 0755 */
	if (r < 0 || write_file_atomic(path, text, strlen(text), 0600, &e) < 0)
		log_warn("step cache: cannot record '%s': %s", path, e->msg);
	imgf_error_free(e);
}

static int lookup_locked(struct imgf_build *b, const char *key, bool final, const char *what,
			 const char *path, json_t **out, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	json_t *entry = entry_load(path);
	const char *id = json_string_value(json_object_get(entry, "id"));
	const char *builder = json_string_value(json_object_get(entry, "builder"));
	const char *ekey = json_string_value(json_object_get(entry, "key"));
	int r = 0;
	struct imgf_error *outside = NULL;
	if (id && builder && ekey && !strcmp(builder, b->builder->name) && !strcmp(ekey, key) &&
	    json_is_true(json_object_get(entry, "final")) == final) {
		if (record_id_check(b->cache_dir, builder, id, &outside) == 0)
			r = b->builder->cache->check(b, key, id, final, err);
		else
			log_warn("step cache: '%s': %s", path, outside->msg);
		imgf_error_free(outside);
	}
	if (r < 0) {
		json_decref(entry);
		return -1;
	}
	if (r == 0) {
		log_warn("%s: %s: the cache entry %.12s is missing or damaged: it is removed and "
			 "built again",
			 b->def->name, what, key);
		imgf_event(
			"cache-damaged",
			json_pack("{s:s,s:s,s:s}", "image", b->def->name, "step", what, "key", key),
			NULL);
		unlink(path);
		json_decref(entry);
		return 0;
	}
	json_object_set_new(entry, "used", json_integer((json_int_t)time(NULL)));
	imgf_stepcache_entry_write(c->dir, entry);
	*out = entry;
	return 1;
}

/*
 * The entry for `key` when its builder state is there and intact; a damaged one is removed.
 * The caller stands on the key (use_take) first, so what is found stays; the entry is read
 * and rewritten under the key's save lock (taken here unless `saving` says it is held), so
 * it never undoes what a twin build records meanwhile.
 */
static int lookup(struct imgf_build *b, const char *key, bool final, bool saving, const char *what,
		  json_t **out, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	_cleanup_free_ char *path = entry_path(c, key);
	*out = NULL;
	if (access(path, F_OK) < 0)
		return 0;
	int save = saving ? -1 : save_lock(b, key, what);
	int r = lookup_locked(b, key, final, what, path, out, err);
	if (save >= 0)
		close(save);
	return r;
}

/* Every step's key, from the base's digest on. */
static int compute_keys(struct imgf_build *b, const char *base, struct imgf_error **err)
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

int imgf_stepcache_open(struct imgf_build *b, struct imgf_error **err)
{
	const struct imgf_builder_cache_ops *ops = b->builder->cache;
	if (!ops || !ops->base || !ops->save || !ops->check || !ops->drop)
		return 0;
	_cleanup_free_ char *base = NULL;
	if (b->builder->cache->base(b, false, &base, err) < 0)
		return -1;
	struct imgf_stepcache *c = xcalloc(1, sizeof(*c));
	b->cache = c;
	c->dir = path_join(b->cache_dir, "steps");
	c->keys = xcalloc(b->nsteps + 1, sizeof(char *));
	c->found = xcalloc(b->nsteps + 1, sizeof(json_t *));
	c->mark = json_array_size(b->inputs);
	c->nuse = b->nsteps;
	c->use = xcalloc(b->nsteps + 1, sizeof(int));
	for (size_t i = 0; i < b->nsteps; i++)
		c->use[i] = -1;
	c->final_use = -1;
	if (!base) {
		/* Not at hand: nothing of it can be cached; the keys come once it is. */
		c->pending = true;
		return 0;
	}
	if (compute_keys(b, base, err) < 0)
		return -1;
	if (b->opts->no_cache)
		return 0; /* every step runs, and refreshes its entry */
	/* Standing on every key while looking: the chain found stays while the build uses it. */
	for (size_t i = 0; i < b->nsteps; i++)
		use_take(c, &c->use[i], c->keys[i]);
	/* The longest cached prefix: the deepest intact entry holds every step before it. */
	int r = 0;
	for (size_t i = b->nsteps; i-- > 0;) {
		json_t *e = NULL;
		if ((r = lookup(b, c->keys[i], false, false, b->steps[i].label, &e, err)) < 0)
			break;
		if (e) {
			c->found[i] = e;
			c->hit = i + 1;
			break;
		}
	}
	for (size_t i = c->hit; i < b->nsteps; i++) {
		if (c->use[i] >= 0)
			close(c->use[i]);
		c->use[i] = -1;
	}
	return r < 0 ? -1 : 0;
}

int imgf_stepcache_settle(struct imgf_build *b, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	if (!c || !c->pending)
		return 0;
	_cleanup_free_ char *base = NULL;
	if (b->builder->cache->base(b, true, &base, err) < 0)
		return -1;
	c->pending = false;
	/* Every step runs (hit stays 0) and is kept under its key. */
	return compute_keys(b, base ? base : "", err);
}

void imgf_stepcache_say_cached(struct imgf_build *b, size_t i)
{
	struct imgf_step *s = &b->steps[i];
	_cleanup_free_ char *hit = xasprintf("%s: step %zu/%zu: %s: cached (%.12s)", b->def->name,
					     i + 1, b->nsteps, s->label, b->cache->keys[i]);
	imgf_event("step-cached",
		   json_pack("{s:s,s:i,s:s,s:s}", "image", b->def->name, "index", (int)i + 1,
			     "step", s->label, "key", b->cache->keys[i]),
		   hit);
}

const char *imgf_stepcache_from(const struct imgf_build *b)
{
	if (!b->cache || !b->cache->hit)
		return NULL;
	return json_string_value(json_object_get(b->cache->found[b->cache->hit - 1], "id"));
}

static bool recorded(const struct imgf_build *b, const char *name)
{
	size_t i;
	json_t *in;
	json_array_foreach(b->inputs, i, in)
	{
		const char *n = json_string_value(json_object_get(in, "name"));
		if (n && !strcmp(n, name))
			return true;
	}
	return false;
}

void imgf_stepcache_replay(struct imgf_build *b, size_t step)
{
	if (!b->cache || step + 1 != b->cache->hit)
		return;
	/* The deepest hit's entry holds what every step up to it recorded. */
	size_t i;
	json_t *in;
	json_array_foreach(json_object_get(b->cache->found[step], "inputs"), i, in)
	{
		const char *name = json_string_value(json_object_get(in, "name"));
		const char *sha = json_string_value(json_object_get(in, "sha256"));
		if (!name || !sha || recorded(b, name))
			continue; /* the docker base: recorded by cache_base, or after the steps'
				   * inputs when it was pulled (imgf_stepcache_settle) */
		const char *kind = json_string_value(json_object_get(in, "kind"));
		if (kind && !strcmp(kind, "deb"))
			imgf_build_record_package(b, json_deep_copy(in));
		else if (json_is_true(json_object_get(in, "local")))
			imgf_build_record_local_input(
				b, name, json_string_value(json_object_get(in, "path")) ?: "", sha);
		else
			imgf_build_record_input(
				b, name, json_string_value(json_object_get(in, "url")) ?: "", sha);
	}
}

/* What the build recorded since the cache opened: every step's inputs so far. */
static json_t *inputs_so_far(struct imgf_build *b)
{
	json_t *out = json_array();
	for (size_t i = b->cache->mark; i < json_array_size(b->inputs); i++)
		json_array_append(out, json_array_get(b->inputs, i));
	return out;
}

static json_t *entry_new(struct imgf_build *b, const char *key, const char *step, long index,
			 const char *id, int64_t size, bool final)
{
	json_int_t now = (json_int_t)time(NULL);
	return json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:I,s:I,s:I,s:b,s:o}", "key", key, "image",
			 b->def->name, "step", step, "index", (json_int_t)index, "builder",
			 b->builder->name, "id", id, "size", (json_int_t)size, "created", now,
			 "used", now, "final", final, "inputs", inputs_so_far(b));
}

/* Step i's state as a twin build cached it (entry e, stolen): the target goes on from it. */
static void step_share(struct imgf_build *b, struct imgf_target *t, size_t i, json_t *e)
{
	struct imgf_stepcache *c = b->cache;
	struct imgf_step *s = &b->steps[i];
	const char *id = json_string_value(json_object_get(e, "id"));
	struct imgf_error *err = NULL;
	if (!b->builder->cache->adopt) {
		log_info("%s: step '%s' is cached by another build (%.12s): this one goes on "
			 "with its own state, not kept",
			 b->def->name, s->label, c->keys[i]);
	} else if (b->builder->cache->adopt(b, t, id, &err) < 0) {
		log_warn("%s: step '%s': cannot go on from the state another build cached: %s",
			 b->def->name, s->label, err->msg);
	} else {
		log_info("%s: step '%s' is cached by another build with the same steps (%.12s): "
			 "going on from its state",
			 b->def->name, s->label, c->keys[i]);
		imgf_event("step-shared",
			   json_pack("{s:s,s:i,s:s,s:s,s:s}", "image", b->def->name, "index",
				     (int)i + 1, "step", s->label, "key", c->keys[i], "id", id),
			   NULL);
	}
	imgf_error_free(err);
	json_decref(c->found[i]);
	c->found[i] = e;
}

void imgf_stepcache_step_done(struct imgf_build *b, struct imgf_target *t, size_t i)
{
	struct imgf_stepcache *c = b->cache;
	if (!c)
		return;
	struct imgf_step *s = &b->steps[i];
	int save = save_lock(b, c->keys[i], s->label);
	if (save < 0) {
		log_warn("%s: step '%s' is not cached: cannot lock its key: %s", b->def->name,
			 s->label, strerror(errno));
		return;
	}
	if (!b->opts->no_cache) {
		/* A twin build may have cached it meanwhile: one entry, shared. */
		use_take(c, &c->use[i], c->keys[i]);
		json_t *e = NULL;
		struct imgf_error *le = NULL;
		if (lookup(b, c->keys[i], false, true, s->label, &e, &le) < 0) {
			log_warn("%s: step '%s': %s", b->def->name, s->label, le->msg);
			imgf_error_free(le);
		}
		if (e) {
			step_share(b, t, i, e);
			close(save);
			return;
		}
	}
	_cleanup_free_ char *id = NULL;
	int64_t size = 0;
	struct imgf_error *e = NULL;
	double t0 = imgf_now();
	if (b->builder->cache->save(b, t, c->keys[i], s->label, &id, &size, &e) < 0) {
		log_warn("%s: step '%s' is not cached: %s", b->def->name, s->label, e->msg);
		imgf_error_free(e);
		close(save);
		return;
	}
	imgf_build_phase(b, "cache-save", imgf_now() - t0);
	entry_replace(b, entry_new(b, c->keys[i], s->label, (long)i, id, size, false));
	use_take(c, &c->use[i], c->keys[i]);
	close(save);
	log_debug("%s: step '%s' cached as %.12s (%s)", b->def->name, s->label, c->keys[i], id);
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

int imgf_stepcache_reuse(struct imgf_build *b, struct imgf_artifact *out, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	if (!c || !c->final_key || !b->builder->cache->reuse || b->opts->no_cache ||
	    c->hit != b->nsteps)
		return 0;
	json_t *e = NULL;
	use_take(c, &c->final_use, c->final_key); /* what is given out stays meanwhile */
	if (lookup(b, c->final_key, true, false, "artifact", &e, err) < 0)
		return -1;
	if (!e)
		return 0;
	c->final_found = e;
	const char *id = json_string_value(json_object_get(e, "id"));
	if (b->builder->cache->reuse(b, id, out, err) < 0)
		return -1;
	for (size_t i = 0; i < b->nsteps; i++)
		imgf_stepcache_say_cached(b, i);
	log_info("%s: nothing changed: the artifact built before is given out again", b->def->name);
	return 1;
}

static void keep_artifact(struct imgf_build *b, const struct imgf_artifact *art);

void imgf_stepcache_keep_artifact(struct imgf_build *b, const struct imgf_artifact *art)
{
	struct imgf_stepcache *c = b->cache;
	if (!c || !c->final_key || !b->builder->cache->reuse || !art->id)
		return;
	/* Again, from the artifact's labels: what prepare recorded (qemu's base image) is in
	 * them now, as a rebuild's are replayed from the cached steps before it looks. */
	imgf_stepcache_final_key(b);
	if (c->final_use >= 0) /* reuse's look at the key before: this one may differ */
		close(c->final_use);
	c->final_use = -1;
	int save = save_lock(b, c->final_key, "artifact");
	if (save < 0) {
		log_warn("%s: the artifact is not cached: cannot lock its key: %s", b->def->name,
			 strerror(errno));
		return;
	}
	if (!b->opts->no_cache) {
		/* A twin build may have kept the same artifact meanwhile: that one stays. */
		use_take(c, &c->final_use, c->final_key);
		json_t *e = NULL;
		struct imgf_error *le = NULL;
		if (lookup(b, c->final_key, true, true, "artifact", &e, &le) < 0) {
			log_warn("%s: artifact: %s", b->def->name, le->msg);
			imgf_error_free(le);
		}
		if (e) {
			log_info("%s: the artifact is cached already by another build (%.12s)",
				 b->def->name, c->final_key);
			json_decref(e);
			close(save);
			return;
		}
	}
	keep_artifact(b, art);
	close(save);
}

/* imgf_stepcache_keep_artifact under the final key's save lock. */
static void keep_artifact(struct imgf_build *b, const struct imgf_artifact *art)
{
	struct imgf_stepcache *c = b->cache;
	_cleanup_free_ char *id = NULL;
	int64_t size = 0;
	if (!b->builder->cache->keep) {
		id = xstrdup(art->id);
	} else {
		struct imgf_error *e = NULL;
		double t0 = imgf_now();
		if (b->builder->cache->keep(b, art, c->final_key, &id, &size, &e) < 0) {
			log_warn("%s: the artifact is not cached: %s", b->def->name, e->msg);
			imgf_error_free(e);
			return;
		}
		imgf_build_phase(b, "cache-save", imgf_now() - t0);
	}
	entry_replace(b, entry_new(b, c->final_key, "(artifact)", -1, id, size, true));
}

/* ---- imgforge cache ls | prune ----------------------------------------------------------- */

struct entry_ref {
	char *path;
	json_t *j;
};

static int cmp_created(const void *a, const void *b)
{
	const struct entry_ref *x = a, *y = b;
	json_int_t cx = json_integer_value(json_object_get(x->j, "created"));
	json_int_t cy = json_integer_value(json_object_get(y->j, "created"));
	return cx < cy ? -1 : cx > cy;
}

static int cmp_used(const void *a, const void *b)
{
	const struct entry_ref *x = a, *y = b;
	json_int_t cx = json_integer_value(json_object_get(x->j, "used"));
	json_int_t cy = json_integer_value(json_object_get(y->j, "used"));
	return cx < cy ? -1 : cx > cy ? 1 : -cmp_created(a, b); /* children before parents */
}

/* Every readable entry; an unreadable one is removed (it would never be trusted anyway). */
static int entries_load(const char *cache_dir, struct entry_ref **out, size_t *n,
			struct imgf_error **err)
{
	_cleanup_free_ char *dir = path_join(cache_dir, "steps");
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : imgf_error_errno(err, errno, "open '%s'", dir);
	size_t alloc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!str_has_suffix(de->d_name, ".json"))
			continue;
		char *path = path_join(dir, de->d_name);
		json_t *j = entry_load(path);
		const char *id = json_string_value(json_object_get(j, "id"));
		const char *builder = json_string_value(json_object_get(j, "builder"));
		struct imgf_error *e = NULL;
		if (!json_is_string(json_object_get(j, "key")) || !id) {
			log_warn("step cache: '%s' is damaged: removed", path);
		} else if (record_id_check(cache_dir, builder ? builder : "", id, &e) < 0) {
			/* only the record goes: what it names is not the cache's */
			log_warn("step cache: '%s' is damaged: removed: %s", path, e->msg);
			imgf_error_free(e);
		} else {
			ALLOC_GROW(*out, *n + 1, alloc);
			(*out)[(*n)++] = (struct entry_ref){path, j};
			continue;
		}
		unlink(path);
		json_decref(j);
		free(path);
	}
	closedir(d);
	return 0;
}

static void entries_free(struct entry_ref *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].path);
		json_decref(e[i].j);
	}
	free(e);
}

static void human_size(int64_t n, char *buf, size_t cap)
{
	if (n < 1024)
		snprintf(buf, cap, "%" PRId64 "B", n);
	else if (n < (1 << 20))
		snprintf(buf, cap, "%.1fK", n / 1024.0);
	else if (n < (1 << 30))
		snprintf(buf, cap, "%.1fM", n / 1048576.0);
	else
		snprintf(buf, cap, "%.1fG", n / 1073741824.0);
}

static void human_age(int64_t s, char *buf, size_t cap)
{
	if (s < 120)
		snprintf(buf, cap, "%" PRId64 "s", s);
	else if (s < 7200)
		snprintf(buf, cap, "%" PRId64 "m", s / 60);
	else if (s < 172800)
		snprintf(buf, cap, "%" PRId64 "h", s / 3600);
	else
		snprintf(buf, cap, "%" PRId64 "d", s / 86400);
}

int imgf_stepcache_ls(const char *cache_dir, bool json, struct imgf_error **err)
{
	struct entry_ref *e;
	size_t n;
	if (entries_load(cache_dir, &e, &n, err) < 0)
		return -1;
	if (n)
		qsort(e, n, sizeof(*e), cmp_created);
	int64_t now = (int64_t)time(NULL), total = 0;
	if (!json)
		printf("%-12s  %-16s  %-20s  %-7s  %8s  %6s\n", "KEY", "IMAGE", "STEP", "BUILDER",
		       "SIZE", "AGE");
	for (size_t i = 0; i < n; i++) {
		json_t *j = e[i].j;
		const char *key = json_string_value(json_object_get(j, "key"));
		int64_t size = json_integer_value(json_object_get(j, "size"));
		int64_t age = now - json_integer_value(json_object_get(j, "created"));
		total += size;
		if (json) {
			json_t *ev = json_deep_copy(j);
			json_object_del(ev, "inputs");
			json_object_set_new(ev, "age", json_integer((json_int_t)age));
			imgf_event("cache-entry", ev, NULL);
			continue;
		}
		char sz[32], ag[32];
		human_size(size, sz, sizeof(sz));
		human_age(age < 0 ? 0 : age, ag, sizeof(ag));
		printf("%-12.12s  %-16s  %-20s  %-7s  %8s  %6s\n", key,
		       json_string_value(json_object_get(j, "image")) ?: "",
		       json_string_value(json_object_get(j, "step")) ?: "",
		       json_string_value(json_object_get(j, "builder")) ?: "", sz, ag);
	}
	if (!json) {
		char sz[32];
		human_size(total, sz, sizeof(sz));
		printf("%zu entr%s, %s\n", n, n == 1 ? "y" : "ies", sz);
	} else {
		imgf_event(
			"cache-total",
			json_pack("{s:I,s:I}", "entries", (json_int_t)n, "size", (json_int_t)total),
			NULL);
	}
	entries_free(e, n);
	return 0;
}

/* An entry and the states it names, unless a running build stands on them. */
static int drop_entry(const char *cache_dir, struct entry_ref *e, struct imgf_error **err)
{
	const char *builder = json_string_value(json_object_get(e->j, "builder"));
	const char *id = json_string_value(json_object_get(e->j, "id"));
	const char *key = json_string_value(json_object_get(e->j, "key"));
	bool final = json_is_true(json_object_get(e->j, "final"));
	const struct imgf_builder_ops *ops = builder ? imgf_builder_find(builder) : NULL;
	_cleanup_free_ char *dir = path_join(cache_dir, "steps");
	int use = lock_take(dir, key, "use", LOCK_EX | LOCK_NB);
	if (use < 0)
		return errno == EWOULDBLOCK
			       ? imgf_error_set(err, IMGF_EXIT_FAIL, "a running build uses it")
			       : imgf_error_errno(err, errno, "lock '%s.use'", key);
	int r = 0;
	if (ops && ops->cache && ops->cache->drop(id, final, err) < 0)
		r = -1;
	if (r == 0)
		superseded_drop(ops, cache_dir, builder ? builder : "", e->j);
	if (r == 0 && unlink(e->path) < 0 && errno != ENOENT)
		r = imgf_error_errno(err, errno, "remove '%s'", e->path);
	if (r == 0) {
		lock_remove(dir, key, "save");
		_cleanup_free_ char *use_path = lock_path(dir, key, "use");
		unlink(use_path); /* held: nobody takes it meanwhile (lock_take checks) */
	}
	close(use);
	return r;
}

/* The lock files of keys that have no entry any more, unless held. */
static void locks_sweep(const char *cache_dir)
{
	_cleanup_free_ char *dir = path_join(cache_dir, "steps");
	DIR *d = opendir(dir);
	if (!d)
		return;
	char **keys = NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *dot = strrchr(de->d_name, '.');
		if (!dot || (strcmp(dot, ".use") && strcmp(dot, ".save")))
			continue;
		_cleanup_free_ char *key = xstrndup(de->d_name, (size_t)(dot - de->d_name));
		_cleanup_free_ char *entry = xasprintf("%s/%s.json", dir, key);
		if (access(entry, F_OK) < 0)
			keys = strv_push(keys, xasprintf("%s%s", key, dot));
	}
	closedir(d);
	for (size_t i = 0; keys && keys[i]; i++) {
		char *dot = strrchr(keys[i], '.');
		*dot = '\0';
		lock_remove(dir, keys[i], dot + 1);
	}
	strv_free(keys);
}

int imgf_stepcache_prune(const char *cache_dir, uint64_t max_size, int64_t older_than_s,
			 struct imgf_error **err)
{
	struct entry_ref *e;
	size_t n;
	if (entries_load(cache_dir, &e, &n, err) < 0)
		return -1;
	/* Least recently used first; among equals the newer (a child) before its parent. */
	if (n)
		qsort(e, n, sizeof(*e), cmp_used);
	bool all = max_size == UINT64_MAX && older_than_s < 0;
	int64_t now = (int64_t)time(NULL);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += (uint64_t)json_integer_value(json_object_get(e[i].j, "size"));
	size_t removed = 0, kept_busy = 0;
	uint64_t freed = 0;
	/* Children go first: an entry a kept child builds on cannot go, and stays. */
	for (size_t pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			if (!e[i].j)
				continue;
			int64_t used = json_integer_value(json_object_get(e[i].j, "used"));
			uint64_t size =
				(uint64_t)json_integer_value(json_object_get(e[i].j, "size"));
			bool old = older_than_s >= 0 && now - used > older_than_s;
			/* --max-size 0 empties the cache, records of no size too */
			bool over = max_size != UINT64_MAX && (total > max_size || max_size == 0);
			if (!all && !old && !over)
				continue;
			struct imgf_error *de = NULL;
			if (drop_entry(cache_dir, &e[i], &de) < 0) {
				if (pass == 1) {
					log_warn("step cache: %.12s kept: %s",
						 json_string_value(json_object_get(e[i].j, "key")),
						 de->msg);
					kept_busy++;
				}
				imgf_error_free(de);
				continue;
			}
			total -= size;
			freed += size;
			removed++;
			json_decref(e[i].j);
			e[i].j = NULL;
		}
	}
	locks_sweep(cache_dir);
	char sz[32];
	human_size((int64_t)freed, sz, sizeof(sz));
	imgf_event("cache-pruned",
		   json_pack("{s:I,s:I,s:I}", "removed", (json_int_t)removed, "freed",
			     (json_int_t)freed, "kept", (json_int_t)kept_busy),
		   NULL);
	if (!imgf_log_json())
		printf("removed %zu entr%s, %s freed\n", removed, removed == 1 ? "y" : "ies", sz);
	entries_free(e, n);
	return 0;
}

int imgf_duration_parse(const char *s, int64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return -1;
	int64_t mul = 1;
	if (!*end)
		mul = 1;
	else if (!strcmp(end, "s"))
		mul = 1;
	else if (!strcmp(end, "m"))
		mul = 60;
	else if (!strcmp(end, "h"))
		mul = 3600;
	else if (!strcmp(end, "d"))
		mul = 86400;
	else if (!strcmp(end, "w"))
		mul = 604800;
	else
		return -1;
	if (v > INT64_MAX / mul)
		return -1;
	*out = (int64_t)v * mul;
	return 0;
}
