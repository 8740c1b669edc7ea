/* Pieces of stepcache.c exposed for unit tests (tests/unit/test-stepcache.c). */
#ifndef IMGF_STEPCACHE_INTERNAL_H
#define IMGF_STEPCACHE_INTERNAL_H

#include <jansson.h>

struct imgf_error;
struct imgf_step;

/*
 * Write an index entry as DIR/KEY.json: the URLs in it redacted (src/redact.h), the file
 * 0600 in a 0700 DIR (an existing DIR is made 0700), as the cache's records are only ever
 * read by their owner. A failure only warns.
 */
void imgf_stepcache_entry_write(const char *dir, json_t *entry);

/* The cache key of step s after the key `prev` (see stepcache.h), newly allocated in *key. */
int imgf_stepcache_step_key(const struct imgf_step *s, const char *prev, char **key,
			    struct imgf_error **err);

#endif
