/*
 * libFuzzer target for bolt databases (containerd's meta.db, read from a build's
 * filesystem). Whatever the bytes, the rewrite returns an error or a database; a database
 * it wrote must rewrite to itself. Seed with tests/fixtures/bolt/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bolt.h"
#include "error.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf out = STRBUF_INIT, again = STRBUF_INIT;
	struct imgf_error *err = NULL;
	if (imgf_bolt_normalize(data, size, 1700000000, &out, &err) == 0) {
		if (imgf_bolt_normalize((const unsigned char *)out.buf, out.len, 1700000000, &again,
					&err) < 0 ||
		    again.len != out.len || memcmp(again.buf, out.buf, out.len) != 0)
			abort();
	} else if (!err || strncmp(err->msg, "bolt database: ", 15) != 0) {
		abort();
	}
	imgf_error_free(err);
	strbuf_release(&out);
	strbuf_release(&again);
	return 0;
}
