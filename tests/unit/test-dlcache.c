/*
 * The download cache shared by downloads and registry blobs: entry paths, verification
 * (missing, good, wrong size, corrupt, not a file) and committing a verified file.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "dlcache.h"
#include "error.h"
#include "fsutil.h"
#include "util.h"

#include "test.h"

/* sha256("hello") */
#define HELLO_SHA256 "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

TEST(entries_live_under_downloads_alg_hex)
{
	_cleanup_free_ char *e = imgf_dlcache_entry("/c", IMGF_SHA512, "ab");
	CHECK_STR(e, "/c/downloads/sha512/ab");
	_cleanup_free_ char *p = imgf_dlcache_partial_dir("/c");
	CHECK_STR(p, "/c/downloads/partial");
}

TEST(an_entry_is_used_only_when_it_verifies)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("test-dlcache", &dir, NULL) == 0);
	_cleanup_free_ char *entry = imgf_dlcache_entry(dir, IMGF_SHA256, HELLO_SHA256);
	struct imgf_error *err = NULL;
	char sha[65] = "";
	uint64_t size = 0;
	CHECK(imgf_dlcache_check(entry, IMGF_SHA256, HELLO_SHA256, UINT64_MAX, "t", sha, &size,
				 &err) == 0);

	/* commit: flushed, read-only, renamed into place with its directory made */
	_cleanup_free_ char *tmp = path_join(dir, "tmp");
	CHECK(write_file_atomic(tmp, "hello", 5, 0644, NULL) == 0);
	int fd = open(tmp, O_RDONLY);
	CHECK(fd >= 0);
	CHECK(imgf_dlcache_commit(fd, tmp, entry, &err) == 0);
	close(fd);
	struct stat st;
	CHECK(stat(entry, &st) == 0 && (st.st_mode & 0777) == 0444);
	CHECK(access(tmp, F_OK) < 0);

	CHECK(imgf_dlcache_check(entry, IMGF_SHA256, HELLO_SHA256, 5, "t", sha, &size, &err) == 1);
	CHECK_STR(sha, HELLO_SHA256);
	CHECK(size == 5);

	/* the wrong size: dropped without hashing */
	CHECK(imgf_dlcache_check(entry, IMGF_SHA256, HELLO_SHA256, 6, "t", NULL, NULL, &err) == 0);
	CHECK(access(entry, F_OK) < 0);

	/* the right size, other bytes: dropped */
	CHECK(write_file_atomic(entry, "HELLO", 5, 0444, NULL) == 0);
	CHECK(imgf_dlcache_check(entry, IMGF_SHA256, HELLO_SHA256, 5, "t", NULL, NULL, &err) == 0);
	CHECK(access(entry, F_OK) < 0);

	/* a directory in its place is an error, not something to delete */
	CHECK(mkdir(entry, 0755) == 0);
	CHECK(imgf_dlcache_check(entry, IMGF_SHA256, HELLO_SHA256, UINT64_MAX, "t", NULL, NULL,
				 &err) < 0);
	CHECK_ERR(err, "is not a regular file; remove it");
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(another_algorithm_gives_the_sha256_too)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("test-dlcache", &dir, NULL) == 0);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA512, "hello", 5, hex);
	_cleanup_free_ char *entry = imgf_dlcache_entry(dir, IMGF_SHA512, hex);
	_cleanup_free_ char *d = path_dirname(entry);
	CHECK(mkdir_p(d, 0755, NULL) == 0);
	CHECK(write_file_atomic(entry, "hello", 5, 0444, NULL) == 0);
	char sha[65] = "";
	CHECK(imgf_dlcache_check(entry, IMGF_SHA512, hex, UINT64_MAX, "t", sha, NULL, NULL) == 1);
	CHECK_STR(sha, HELLO_SHA256);
	rm_rf(dir, NULL);
}
