/*
 * builders/qemu.c pieces that need neither an appliance nor libvirt: the work directory in a
 * shared TMPDIR is its owner's only. (Builds and boot checks are in t1255-t1290.)
 */
#include <stdlib.h>
#include <sys/stat.h>

#include "builders/qemu-internal.h"
#include "error.h"
#include "fsutil.h"
#include "test.h"
#include "util.h"

TEST(work_dir_in_a_shared_tmpdir_is_private)
{
	_cleanup_free_ char *shared = NULL;
	CHECK(make_temp_dir("test-qemu", &shared, NULL) == 0);
	CHECK(chmod(shared, 01777) == 0); /* as /tmp and /var/tmp are */
	const char *old = getenv("TMPDIR");
	_cleanup_free_ char *saved = old ? xstrdup(old) : NULL;
	setenv("TMPDIR", shared, 1);
	_cleanup_free_ char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_work_dir_make(&dir, &err) == 0);
	struct stat st;
	CHECK(dir && str_has_prefix(dir, shared) && stat(dir, &st) == 0);
	CHECK((st.st_mode & 07777) == 0700);
	imgf_error_free(err);
	if (saved)
		setenv("TMPDIR", saved, 1);
	else
		unsetenv("TMPDIR");
	rm_rf(shared, NULL);
}
