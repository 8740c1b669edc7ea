/*
 * libFuzzer target for src/archive/archive*.c: the input is an archive in any format libarchive
 * reads, extracted into a fresh directory and copied into a tar. Either may refuse it; what
 * must not happen is a crash, a leak, or a file outside the temp directory (which the
 * checks are meant to make impossible).
 */
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "archive.h"
#include "error.h"
#include "fsutil.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An archive may make a directory mode 0000; open it up again so it can be removed. */
static int make_removable(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D || flag == FTW_DNR)
		chmod(path, (sb->st_mode & 07777) | S_IRWXU);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imgf_error *err = NULL;
	_cleanup_free_ char *dir = NULL;
	if (make_temp_dir("imgf-fuzz-archive", &dir, &err) < 0)
		abort();
	_cleanup_free_ char *input = path_join(dir, "input");
	_cleanup_free_ char *dest = path_join(dir, "dest");
	_cleanup_free_ char *out = path_join(dir, "out.tar");
	if (write_file_atomic(input, data, size, 0600, &err) < 0 || mkdir_p(dest, 0700, &err) < 0)
		abort();

	imgf_archive_extract(input, dest, &err);
	imgf_error_clear(&err);

	struct imgf_tar *t = imgf_tar_open(out, &err);
	if (!t)
		abort();
	static const char *const only[] = {"bin/x", NULL};
	imgf_tar_add_archive(t, input, 0, "prefix", NULL, &err);
	imgf_error_clear(&err);
	imgf_tar_add_archive(t, input, 1, NULL, only, &err);
	imgf_error_clear(&err);
	imgf_tar_close(t, &err);
	imgf_error_clear(&err);
	imgf_tar_free(t);

	if (rm_rf(dir, &err) < 0) {
		imgf_error_clear(&err);
		nftw(dir, make_removable, 16, FTW_PHYS);
		if (rm_rf(dir, &err) < 0)
			abort();
	}
	return 0;
}
