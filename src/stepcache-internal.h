/*
 * What the parts of the step cache share: stepcache.c (the cache through a build),
 * stepcache-key.c (the keys), stepcache-entry.c (the index entries and their locks),
 * stepcache-remote.c (the cache in a registry) and stepcache-prune.c (imgforge cache ls and
 * prune); and the pieces tests/unit/test-stepcache.c tests. Not for other users.
 */
#ifndef IMGF_STEPCACHE_INTERNAL_H
#define IMGF_STEPCACHE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct imgf_build;
struct imgf_builder_ops;
struct imgf_error;
struct imgf_step;
struct imgf_stepcache;

/* ---- keys (stepcache-key.c) -------------------------------------------------------------- */

/* The cache key of step s after the key `prev` (see stepcache.h), newly allocated in *key. */
int imgf_stepcache_step_key(const struct imgf_step *s, const char *prev, char **key,
			    struct imgf_error **err);

/* Every step's key, from the base's digest on. */
int imgf_stepcache_compute_keys(struct imgf_build *b, const char *base, struct imgf_error **err);

/* ---- entries and their locks (stepcache-entry.c, which tells how twin builds share them) -- */

/* DIR/KEY.WHAT, the lock file WHAT ("save" or "use") of key. */
char *imgf_stepcache_lock_path(const char *dir, const char *key, const char *what);

/*
 * flock(op) on DIR/KEY.WHAT, made if missing. A remover unlinks it while holding it, so the
 * lock counts only on the file still at that path. Returns the descriptor, or -1 with errno
 * (EWOULDBLOCK: held elsewhere, with LOCK_NB; EINTR: interrupted).
 */
int imgf_stepcache_lock_take(const char *dir, const char *key, const char *what, int op);

/* Remove DIR/KEY.WHAT unless someone holds it (it is made again when next needed). */
void imgf_stepcache_lock_remove(const char *dir, const char *key, const char *what);

/* Stand on key's state until the build ends (a shared KEY.use); *slot keeps the lock. */
void imgf_stepcache_use_take(const struct imgf_stepcache *c, int *slot, const char *key);

/* The save lock of key: the caller waits (saying so) while a twin build holds it. */
int imgf_stepcache_save_lock(const struct imgf_build *b, const char *key, const char *what);

/*
 * A record's id that names a file (has a '/') must resolve inside CACHE/steps/BUILDER, the
 * only place a builder keeps state: a planted record ("../" in its id, or a path elsewhere)
 * must not make the cache check, remove or rewrite a file outside it. The directory is
 * resolved (symlinks and "..") and the last component is a plain name, so what is removed
 * is the entry of that directory itself.
 */
int imgf_stepcache_record_id_check(const char *cache_dir, const char *builder, const char *id,
				   struct imgf_error **err);

/* The index entry at path; NULL when it cannot be read or is not JSON. */
json_t *imgf_stepcache_entry_load(const char *path);

/* The states an entry names besides its own: those of entries it replaced while another
 * build stood on them. */
void imgf_stepcache_superseded_drop(const struct imgf_builder_ops *ops, const char *cache_dir,
				    const char *builder, json_t *entry);

/*
 * A new entry for a key (--no-cache refreshes them, or the old one was not intact): the state
 * the old one named goes, unless a build stands on it — then it stays, and the new entry
 * carries it under "superseded" until the entry is replaced or pruned when nobody does.
 * Steals entry.
 */
void imgf_stepcache_entry_replace(struct imgf_build *b, json_t *entry);

/*
 * Write an index entry as DIR/KEY.json: the URLs in it redacted (src/base/redact.h), the file
 * 0600 in a 0700 DIR (an existing DIR is made 0700), as the cache's records are only ever
 * read by their owner. A failure only warns.
 */
void imgf_stepcache_entry_write(const char *dir, json_t *entry);

/*
 * The entry for `key` when its builder state is there and intact; a damaged one is removed.
 * The caller stands on the key (imgf_stepcache_use_take) first, so what is found stays; the
 * entry is read and rewritten under the key's save lock (taken here unless `saving` says it
 * is held), so it never undoes what a twin build records meanwhile.
 */
int imgf_stepcache_lookup(struct imgf_build *b, const char *key, bool final, bool saving,
			  const char *what, json_t **out, struct imgf_error **err);

/* A new entry for key, created and used now, with every step's inputs so far. */
json_t *imgf_stepcache_entry_new(struct imgf_build *b, const char *key, const char *step,
				 long index, const char *id, int64_t size, bool final);

/* What the build recorded since the cache opened: every step's inputs so far. */
json_t *imgf_stepcache_inputs_so_far(struct imgf_build *b);

/* ---- the cache in a registry (stepcache-remote.c) ---------------------------------------- */

/*
 * --cache-from: the deepest step past the local prefix that the registry holds, checked and
 * loaded (src/regcache.h), becomes a local entry as if this build had saved it. An entry that
 * fails its checks is named in a warning and a shallower one is looked for. A file builder's
 * steps come one by one up to the deepest, each on the one before; the first that fails
 * stops it there.
 */
void imgf_stepcache_remote_lookup(struct imgf_build *b);

/* --cache-to: step i's state `id` and what the steps recorded (inputs, borrowed) to the
 * registry; a failure warns, and no later step is tried (the registry is likely away). */
void imgf_stepcache_remote_put(struct imgf_build *b, size_t i, const char *id, json_t *inputs);

/* --cache-to at the start: the deepest cached step (and, for a file builder, every step below
 * it the registry lacks) to the registry, unless it is there already. */
void imgf_stepcache_remote_put_deepest(struct imgf_build *b);
/* --cache-to: the finished image `id` (an image builder's), under the final key, unless the
 * registry has it. */
void imgf_stepcache_remote_put_artifact(struct imgf_build *b, const char *id);
/* --cache-from, when every step is cached and the finished image is not: it from the registry
 * (an image builder's), checked and loaded, as the local artifact entry (a new reference), or
 * NULL (none there, or not usable: said). */
json_t *imgf_stepcache_remote_get_artifact(struct imgf_build *b);

#endif
