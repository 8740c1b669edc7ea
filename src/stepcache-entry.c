/*
 * The step cache's index entries (CACHE/steps/KEY.json): reading, writing and replacing
 * them, looking one up (trusted only when its builder finds the state intact), and the two
 * locks per key by which builds running at once share them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "redact.h"
#include "stepcache.h"
#include "stepcache-internal.h"
#include "util.h"

#define ENTRY_MAX (8u << 20) /* an index entry */

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
char *imgf_stepcache_lock_path(const char *dir, const char *key, const char *what)
{
	_cleanup_free_ char *name = xasprintf("%s.%s", key, what);
	return path_join(dir, name);
}

int imgf_stepcache_lock_take(const char *dir, const char *key, const char *what, int op)
{
	_cleanup_free_ char *path = imgf_stepcache_lock_path(dir, key, what);
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

void imgf_stepcache_lock_remove(const char *dir, const char *key, const char *what)
{
	int fd = imgf_stepcache_lock_take(dir, key, what, LOCK_EX | LOCK_NB);
	if (fd < 0)
		return;
	_cleanup_free_ char *path = imgf_stepcache_lock_path(dir, key, what);
	unlink(path);
	close(fd);
}

void imgf_stepcache_use_take(const struct imgf_stepcache *c, int *slot, const char *key)
{
	if (*slot >= 0)
		return;
	*slot = imgf_stepcache_lock_take(c->dir, key, "use", LOCK_SH);
	if (*slot < 0)
		log_debug("step cache: cannot lock '%.12s': %s", key, strerror(errno));
}

int imgf_stepcache_save_lock(const struct imgf_build *b, const char *key, const char *what)
{
	int fd = imgf_stepcache_lock_take(b->cache->dir, key, "save", LOCK_EX | LOCK_NB);
	if (fd < 0 && errno == EWOULDBLOCK) {
		log_info("%s: %s: waiting for another build that is caching the same state (%.12s)",
			 b->def->name, what, key);
		fd = imgf_stepcache_lock_take(b->cache->dir, key, "save", LOCK_EX);
	}
	return fd;
}

int imgf_stepcache_record_id_check(const char *cache_dir, const char *builder, const char *id,
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

json_t *imgf_stepcache_entry_load(const char *path)
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
	if (imgf_stepcache_record_id_check(cache_dir, builder, id, &e) < 0 ||
	    (ops && ops->cache && ops->cache->drop(id, final, &e) < 0))
		log_debug("step cache: the state '%s' stays: %s", id, e->msg);
	imgf_error_free(e);
}

void imgf_stepcache_superseded_drop(const struct imgf_builder_ops *ops, const char *cache_dir,
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

void imgf_stepcache_entry_replace(struct imgf_build *b, json_t *entry)
{
	const char *key = json_string_value(json_object_get(entry, "key"));
	_cleanup_free_ char *path = entry_path(b->cache, key);
	json_t *old = imgf_stepcache_entry_load(path);
	const char *old_id = json_string_value(json_object_get(old, "id"));
	const char *id = json_string_value(json_object_get(entry, "id"));
	if (old_id) {
		bool final = json_is_true(json_object_get(old, "final"));
		bool same = id && !strcmp(old_id, id);
		int fd = imgf_stepcache_lock_take(b->cache->dir, key, "use", LOCK_EX | LOCK_NB);
		if (fd >= 0) {
			if (!same)
				state_drop(b->builder, b->cache_dir, b->builder->name, old_id,
					   final);
			imgf_stepcache_superseded_drop(b->builder, b->cache_dir, b->builder->name,
						       old);
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
	json_t *entry = imgf_stepcache_entry_load(path);
	const char *id = json_string_value(json_object_get(entry, "id"));
	const char *builder = json_string_value(json_object_get(entry, "builder"));
	const char *ekey = json_string_value(json_object_get(entry, "key"));
	int r = 0;
	struct imgf_error *outside = NULL;
	if (id && builder && ekey && !strcmp(builder, b->builder->name) && !strcmp(ekey, key) &&
	    json_is_true(json_object_get(entry, "final")) == final) {
		if (imgf_stepcache_record_id_check(b->cache_dir, builder, id, &outside) == 0)
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

int imgf_stepcache_lookup(struct imgf_build *b, const char *key, bool final, bool saving,
			  const char *what, json_t **out, struct imgf_error **err)
{
	struct imgf_stepcache *c = b->cache;
	_cleanup_free_ char *path = entry_path(c, key);
	*out = NULL;
	if (access(path, F_OK) < 0)
		return 0;
	int save = saving ? -1 : imgf_stepcache_save_lock(b, key, what);
	int r = lookup_locked(b, key, final, what, path, out, err);
	if (save >= 0)
		close(save);
	return r;
}

json_t *imgf_stepcache_inputs_so_far(struct imgf_build *b)
{
	json_t *out = json_array();
	for (size_t i = b->cache->mark; i < json_array_size(b->inputs); i++)
		json_array_append(out, json_array_get(b->inputs, i));
	return out;
}

json_t *imgf_stepcache_entry_new(struct imgf_build *b, const char *key, const char *step,
				 long index, const char *id, int64_t size, bool final)
{
	json_int_t now = (json_int_t)time(NULL);
	return json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:I,s:I,s:I,s:b,s:o}", "key", key, "image",
			 b->def->name, "step", step, "index", (json_int_t)index, "builder",
			 b->builder->name, "id", id, "size", (json_int_t)size, "created", now,
			 "used", now, "final", final, "inputs", imgf_stepcache_inputs_so_far(b));
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
