/*
 * src/disk/sidecar.c: ARTIFACT.sha256 is bare hex and a newline; its stamp lets image-upload reuse
 * it only while the artifact is the one that was hashed. A rewrite that keeps the size and
 * puts the mtime back, a replacement, a sidecar edited in place, a missing stamp: each means
 * "hash it again". Where the temp directory's filesystem takes no user xattrs the tests that
 * need a stamp print "# skipped: ..." and pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "sidecar.h"
#include "test.h"
#include "util.h"

struct fixture {
	char *dir;
	char *art; /* DIR/disk.qcow2: 3 MiB of a pattern */
	char *side;
	char hex[IMGF_DIGEST_HEX_MAX];
};

static void put(const char *path, const char *data, size_t len)
{
	struct imgf_error *err = NULL;
	CHECK(write_file_atomic(path, data, len, 0644, &err) == 0);
	imgf_error_free(err);
}

static void fixture_init(struct fixture *f)
{
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-sidecar", &f->dir, &err) == 0);
	imgf_error_free(err);
	f->art = path_join(f->dir, "disk.qcow2");
	f->side = xasprintf("%s.sha256", f->art);
	size_t len = 3u << 20;
	char *data = xmalloc(len);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)(i * 7 + i / 4096);
	put(f->art, data, len);
	imgf_digest_buffer(IMGF_SHA256, data, len, f->hex);
	free(data);
}

static void fixture_release(struct fixture *f)
{
	rm_rf(f->dir, NULL);
	free(f->dir);
	free(f->art);
	free(f->side);
}

/* Whether the sidecar got a stamp; prints why a test is skipped when the filesystem has none. */
static bool stamped(const struct fixture *f)
{
	if (getxattr(f->side, IMGF_SIDECAR_XATTR, NULL, 0) >= 0)
		return true;
	printf("# skipped: no user xattrs in '%s' (%s)\n", f->dir, strerror(errno));
	return false;
}

static char *slurp(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	struct imgf_error *err = NULL;
	CHECK(read_file(path, 4096, &text, &len, &err) == 0);
	imgf_error_free(err);
	return text ? text : xstrdup("");
}

TEST(sidecar_is_bare_hex_and_reused_while_the_artifact_is_unchanged)
{
	struct fixture f;
	fixture_init(&f);
	char hex[IMGF_DIGEST_HEX_MAX], got[65];
	struct imgf_error *err = NULL;
	CHECK(imgf_sidecar_write(f.art, hex, &err) == 0);
	imgf_error_free(err);
	CHECK_STR(hex, f.hex);
	char *text = slurp(f.side);
	char *want = xasprintf("%s\n", f.hex);
	CHECK_STR(text, want);
	if (stamped(&f)) {
		const char *why = "unset";
		CHECK(imgf_sidecar_reuse(f.art, got, &why));
		CHECK_STR(got, f.hex);
		CHECK(why == NULL);
		/* reading the artifact and writing other files beside it changes nothing */
		char *text2 = NULL, *other = path_join(f.dir, "manifest.json");
		size_t len = 0;
		CHECK(read_file(f.art, 0, &text2, &len, &err) == 0);
		put(other, "{}", 2);
		CHECK(imgf_sidecar_reuse(f.art, got, &why));
		free(text2);
		free(other);
	}
	free(text);
	free(want);
	fixture_release(&f);
}

TEST(sidecar_is_not_reused_after_a_rewrite_with_size_and_mtime_put_back)
{
	struct fixture f;
	fixture_init(&f);
	char hex[IMGF_DIGEST_HEX_MAX], got[65];
	struct imgf_error *err = NULL;
	CHECK(imgf_sidecar_write(f.art, hex, &err) == 0);
	imgf_error_free(err);
	if (stamped(&f)) {
		struct stat st;
		CHECK(stat(f.art, &st) == 0);
		usleep(20000); /* past the filesystem's timestamp granularity */
		int fd = open(f.art, O_WRONLY);
		CHECK(fd >= 0);
		CHECK(pwrite(fd, "X", 1, 12345) == 1);
		struct timespec times[2] = {st.st_atim, st.st_mtim};
		CHECK(futimens(fd, times) == 0);
		close(fd);
		struct stat now;
		CHECK(stat(f.art, &now) == 0);
		CHECK(now.st_size == st.st_size && now.st_mtim.tv_sec == st.st_mtim.tv_sec &&
		      now.st_mtim.tv_nsec == st.st_mtim.tv_nsec);
		const char *why = NULL;
		CHECK(!imgf_sidecar_reuse(f.art, got, &why));
		CHECK_STR(why, "the artifact or the sidecar changed since the stamp was recorded");
	}
	fixture_release(&f);
}

TEST(sidecar_is_not_reused_for_a_replaced_artifact)
{
	struct fixture f;
	fixture_init(&f);
	char hex[IMGF_DIGEST_HEX_MAX], got[65];
	struct imgf_error *err = NULL;
	CHECK(imgf_sidecar_write(f.art, hex, &err) == 0);
	imgf_error_free(err);
	if (stamped(&f)) {
		/* the same bytes, another file: a copy moved into place is hashed again */
		char *copy = path_join(f.dir, "copy");
		char *text = NULL;
		size_t len = 0;
		CHECK(read_file(f.art, 0, &text, &len, &err) == 0);
		put(copy, text, len);
		CHECK(rename(copy, f.art) == 0);
		const char *why = NULL;
		CHECK(!imgf_sidecar_reuse(f.art, got, &why));
		CHECK(why != NULL);
		free(text);
		free(copy);
	}
	fixture_release(&f);
}

TEST(sidecar_edited_in_place_is_not_reused)
{
	struct fixture f;
	fixture_init(&f);
	char hex[IMGF_DIGEST_HEX_MAX], got[65];
	struct imgf_error *err = NULL;
	CHECK(imgf_sidecar_write(f.art, hex, &err) == 0);
	imgf_error_free(err);
	if (stamped(&f)) {
		/* in place: the file, and its stamp, stay */
		int fd = open(f.side, O_WRONLY | O_TRUNC);
		CHECK(fd >= 0);
		const char *other =
			"0000000000000000000000000000000000000000000000000000000000000000\n";
		CHECK(write(fd, other, strlen(other)) == (ssize_t)strlen(other));
		close(fd);
		CHECK(getxattr(f.side, IMGF_SIDECAR_XATTR, NULL, 0) > 0);
		const char *why = NULL;
		CHECK(!imgf_sidecar_reuse(f.art, got, &why));
		CHECK_STR(why, "the artifact or the sidecar changed since the stamp was recorded");
		/* uppercase or sha256sum's "HEX  NAME" are not what a build writes */
		char *upper = xasprintf("%s\n", f.hex);
		for (char *p = upper; *p; p++)
			if (*p >= 'a' && *p <= 'f')
				*p = (char)(*p - 'a' + 'A');
		fd = open(f.side, O_WRONLY | O_TRUNC);
		CHECK(fd >= 0 && write(fd, upper, strlen(upper)) == (ssize_t)strlen(upper));
		close(fd);
		CHECK(!imgf_sidecar_reuse(f.art, got, &why));
		free(upper);
	}
	fixture_release(&f);
}

TEST(sidecar_without_a_stamp_is_not_reused)
{
	struct fixture f;
	fixture_init(&f);
	char got[65];
	const char *why = NULL;
	CHECK(!imgf_sidecar_reuse(f.art, got, &why));
	CHECK_STR(why, "no sidecar");
	char *line = xasprintf("%s\n", f.hex);
	put(f.side, line, strlen(line)); /* right text, written by someone else: no stamp */
	CHECK(!imgf_sidecar_reuse(f.art, got, &why));
	CHECK_STR(why, "the sidecar has no stamp");
	free(line);
	fixture_release(&f);
}

TEST(sidecar_for_an_artifact_changed_after_hashing_has_no_stamp)
{
	struct fixture f;
	fixture_init(&f);
	struct stat hashed;
	CHECK(stat(f.art, &hashed) == 0);
	usleep(20000);
	int fd = open(f.art, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "more", 4) == 4);
	close(fd);
	struct imgf_error *err = NULL;
	CHECK(imgf_sidecar_write_hex(f.art, f.hex, &hashed, &err) == 0);
	imgf_error_free(err);
	char *text = slurp(f.side);
	char *want = xasprintf("%s\n", f.hex);
	CHECK_STR(text, want);
	CHECK(getxattr(f.side, IMGF_SIDECAR_XATTR, NULL, 0) < 0);
	char got[65];
	const char *why = NULL;
	CHECK(!imgf_sidecar_reuse(f.art, got, &why));
	free(text);
	free(want);
	fixture_release(&f);
}
