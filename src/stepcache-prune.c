/*
 * imgforge cache ls and imgforge cache prune: every entry of CACHE/steps listed, or removed
 * with the states it names (least recently used first, by age or down to a size) unless a
 * running build stands on it; and the durations --older-than takes.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "builder.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "stepcache.h"
#include "stepcache-internal.h"
#include "util.h"

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
		json_t *j = imgf_stepcache_entry_load(path);
		const char *id = json_string_value(json_object_get(j, "id"));
		const char *builder = json_string_value(json_object_get(j, "builder"));
		struct imgf_error *e = NULL;
		if (!json_is_string(json_object_get(j, "key")) || !id) {
			log_warn("step cache: '%s' is damaged: removed", path);
		} else if (imgf_stepcache_record_id_check(cache_dir, builder ? builder : "", id,
							  &e) < 0) {
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
	int use = imgf_stepcache_lock_take(dir, key, "use", LOCK_EX | LOCK_NB);
	if (use < 0)
		return errno == EWOULDBLOCK
			       ? imgf_error_set(err, IMGF_EXIT_FAIL, "a running build uses it")
			       : imgf_error_errno(err, errno, "lock '%s.use'", key);
	int r = 0;
	if (ops && ops->cache && ops->cache->drop(id, final, err) < 0)
		r = -1;
	if (r == 0)
		imgf_stepcache_superseded_drop(ops, cache_dir, builder ? builder : "", e->j);
	if (r == 0 && unlink(e->path) < 0 && errno != ENOENT)
		r = imgf_error_errno(err, errno, "remove '%s'", e->path);
	if (r == 0) {
		imgf_stepcache_lock_remove(dir, key, "save");
		_cleanup_free_ char *use_path = imgf_stepcache_lock_path(dir, key, "use");
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
		imgf_stepcache_lock_remove(dir, keys[i], dot + 1);
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
