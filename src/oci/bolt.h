/*
 * A bolt database (go.etcd.io/bbolt, containerd's metadata store) rewritten so its bytes
 * depend only on its content: every bucket and key copied in key order into fresh pages
 * (the layout compaction gives, with no free pages), and the `createdat`/`updatedat` times
 * containerd records clamped to a given time. Two databases holding the same records,
 * however their pages were allocated and whenever they were written, come out the same.
 */
#ifndef IMGF_BOLT_H
#define IMGF_BOLT_H

#include <stddef.h>
#include <stdint.h>

struct imgf_error;
struct strbuf;

/* The largest database rewritten (it is held in memory two or three times); containerd's
 * for a kind node with its preloaded images is a few hundred KiB. */
#define IMGF_BOLT_MAX (16u << 20)

/*
 * Rewrite the database in `in` into `out` (reset first). Errors say what is malformed and
 * where (page, bucket path); `in` is never trusted beyond its length.
 */
int imgf_bolt_normalize(const unsigned char *in, size_t len, int64_t epoch, struct strbuf *out,
			struct imgf_error **err);

#endif
