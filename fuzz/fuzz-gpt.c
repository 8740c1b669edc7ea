/*
 * libFuzzer target for the GPT of a disk the guest wrote (src/disk/gpt.c). The input is a disk's
 * first bytes; the file is that, padded to whole sectors and extended by 0 to 255 sectors
 * (the first byte). Whatever the bytes, the relocation returns an error having written
 * nothing, or succeeds: the file keeps its size, and a second call finds the backup in place.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "gpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (8u << 20))
		return 0;
	off_t len = (off_t)((size - 1 + 511) / 512 * 512) + 512 * (off_t)data[0];
	int fd = memfd_create("disk", 0);
	if (fd < 0 || ftruncate(fd, len) < 0 || pwrite(fd, data + 1, size - 1, 0) < 0)
		abort();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	unsigned char *before = malloc((size_t)len ? (size_t)len : 1);
	if (pread(fd, before, (size_t)len, 0) != len)
		abort();
	bool moved = false;
	struct imgf_error *err = NULL;
	int r = imgf_gpt_relocate_backup(path, (uint64_t)len, &moved, &err);
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size != len)
		abort();
	unsigned char *after = malloc((size_t)len ? (size_t)len : 1);
	if (pread(fd, after, (size_t)len, 0) != len)
		abort();
	if (r < 0) {
		if (!err || moved || memcmp(before, after, (size_t)len) != 0)
			abort();
	} else if (moved) {
		if (imgf_gpt_relocate_backup(path, (uint64_t)len, &moved, NULL) < 0 || moved)
			abort();
	}
	imgf_error_free(err);
	free(before);
	free(after);
	close(fd);
	return 0;
}
