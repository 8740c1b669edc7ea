/*
 * src/stepcache.c: `imgforge cache prune` picks entries by age and by size (least recently
 * used first) and removes unreadable ones; --older-than parses durations. The entries here
 * name a builder that does not exist, so only their records go (t1235 covers the images).
 */
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "error.h"
#include "fsutil.h"
#include "stepcache-internal.h"
#include "stepcache.h"
#include "test.h"
#include "util.h"

static void put_entry(const char *dir, const char *key, int64_t size, int64_t used_ago)
{
	_cleanup_free_ char *steps = path_join(dir, "steps");
	CHECK(mkdir_p(steps, 0755, NULL) == 0);
	int64_t now = (int64_t)time(NULL);
	_cleanup_free_ char *text = xasprintf(
		"{\"key\": \"%s\", \"id\": \"id-%s\", \"builder\": \"none\", \"image\": \"i\", "
		"\"step\": \"s\", \"size\": %lld, \"created\": %lld, \"used\": %lld, "
		"\"final\": false}",
		key, key, (long long)size, (long long)(now - used_ago - 10),
		(long long)(now - used_ago));
	_cleanup_free_ char *name = xasprintf("%s.json", key);
	_cleanup_free_ char *path = path_join(steps, name);
	CHECK(write_file_atomic(path, text, strlen(text), 0644, NULL) == 0);
}

static bool has_entry(const char *dir, const char *key)
{
	_cleanup_free_ char *path = xasprintf("%s/steps/%s.json", dir, key);
	return access(path, F_OK) == 0;
}

static char *fresh_dir(void)
{
	char *dir = NULL;
	CHECK(make_temp_dir("test-stepcache", &dir, NULL) == 0);
	return dir;
}

TEST(prune_older_than_removes_only_entries_unused_that_long)
{
	_cleanup_free_ char *dir = fresh_dir();
	put_entry(dir, "a", 100, 3 * 86400);
	put_entry(dir, "b", 100, 60);
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_prune(dir, UINT64_MAX, 86400, &err) == 0);
	CHECK(!has_entry(dir, "a"));
	CHECK(has_entry(dir, "b"));
	rm_rf(dir, NULL);
}

TEST(prune_max_size_removes_the_least_recently_used_first)
{
	_cleanup_free_ char *dir = fresh_dir();
	put_entry(dir, "old", 400, 300);
	put_entry(dir, "mid", 400, 200);
	put_entry(dir, "new", 400, 100);
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_prune(dir, 800, -1, &err) == 0);
	CHECK(!has_entry(dir, "old"));
	CHECK(has_entry(dir, "mid"));
	CHECK(has_entry(dir, "new"));
	put_entry(dir, "empty", 0, 50); /* a step that changed nothing */
	CHECK(imgf_stepcache_prune(dir, 0, -1, &err) == 0);
	CHECK(!has_entry(dir, "mid") && !has_entry(dir, "new") && !has_entry(dir, "empty"));
	rm_rf(dir, NULL);
}

TEST(prune_without_limits_removes_everything_and_damaged_records_go)
{
	_cleanup_free_ char *dir = fresh_dir();
	put_entry(dir, "a", 1, 1);
	_cleanup_free_ char *bad = xasprintf("%s/steps/bad.json", dir);
	CHECK(write_file_atomic(bad, "{ nope", 6, 0644, NULL) == 0);
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_ls(dir, false, &err) == 0);
	CHECK(access(bad, F_OK) < 0);
	CHECK(has_entry(dir, "a"));
	CHECK(imgf_stepcache_prune(dir, UINT64_MAX, -1, &err) == 0);
	CHECK(!has_entry(dir, "a"));
	rm_rf(dir, NULL);
}

static void put_record(const char *dir, const char *key, const char *builder, const char *id)
{
	_cleanup_free_ char *steps = path_join(dir, "steps");
	CHECK(mkdir_p(steps, 0755, NULL) == 0);
	json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:b}", "key", key, "id", id,
			      "builder", builder, "image", "i", "step", "s", "size", 1, "created",
			      1, "used", 1, "final", 0);
	_cleanup_free_ char *text = json_dumps(j, 0);
	json_decref(j);
	_cleanup_free_ char *name = xasprintf("%s.json", key);
	_cleanup_free_ char *path = path_join(steps, name);
	CHECK(write_file_atomic(path, text, strlen(text), 0644, NULL) == 0);
}

static void touch(const char *path)
{
	CHECK(write_file_atomic(path, "x", 1, 0644, NULL) == 0);
}

TEST(prune_of_a_planted_record_never_removes_a_file_outside_the_cache)
{
	_cleanup_free_ char *dir = fresh_dir();
	_cleanup_free_ char *outside = fresh_dir();
	_cleanup_free_ char *qemu = xasprintf("%s/steps/qemu", dir);
	_cleanup_free_ char *fake = xasprintf("%s/steps/qemu", outside);
	CHECK(mkdir_p(qemu, 0755, NULL) == 0 && mkdir_p(fake, 0755, NULL) == 0);
	/* "../" out of the cache, and a look-alike directory elsewhere */
	_cleanup_free_ char *victim = xasprintf("%s/victim.qcow2", outside);
	_cleanup_free_ char *victim_side = xasprintf("%s.sha256", victim);
	_cleanup_free_ char *dotdot =
		xasprintf("%s/steps/qemu/../../../%s/victim.qcow2", dir, path_basename(outside));
	_cleanup_free_ char *alike = xasprintf("%s/other.qcow2", fake);
	/* through a symlinked directory inside the cache */
	_cleanup_free_ char *link = xasprintf("%s/link", qemu);
	CHECK(symlink(outside, link) == 0);
	_cleanup_free_ char *via_link = xasprintf("%s/victim.qcow2", link);
	/* and one of the cache's own disks, which goes */
	_cleanup_free_ char *own = xasprintf("%s/0123456789abcdef-00000000.qcow2", qemu);
	touch(victim);
	touch(victim_side);
	touch(alike);
	touch(own);
	put_record(dir, "dotdot", "qemu", dotdot);
	put_record(dir, "alike", "qemu", alike);
	put_record(dir, "link", "qemu", via_link);
	put_record(dir, "unknown", "../../..", dotdot);
	put_record(dir, "own", "qemu", own);
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_prune(dir, UINT64_MAX, -1, &err) == 0);
	CHECK(access(victim, F_OK) == 0);
	CHECK(access(victim_side, F_OK) == 0);
	CHECK(access(alike, F_OK) == 0);
	CHECK(access(own, F_OK) < 0);
	/* the planted records are gone: they would never be trusted */
	CHECK(!has_entry(dir, "dotdot") && !has_entry(dir, "alike") && !has_entry(dir, "link"));
	CHECK(!has_entry(dir, "unknown") && !has_entry(dir, "own"));
	rm_rf(dir, NULL);
	rm_rf(outside, NULL);
}

TEST(a_record_keeps_no_credentials_and_only_its_owner_reads_it)
{
	_cleanup_free_ char *dir = fresh_dir();
	_cleanup_free_ char *steps = path_join(dir, "steps");
	CHECK(mkdir(steps, 0755) == 0); /* as an older imgforge made it */
	json_t *entry =
		json_pack("{s:s,s:s,s:s,s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "key", "k1", "id",
			  "sha256:abc", "builder", "docker", "inputs", "name", "containerd", "url",
			  "https://user:s3cret@mirror.example/containerd.tar.gz", "sha256", "00",
			  "name", "runc", "url", "file://user:s3cret@/srv/runc", "sha256", "11");
	imgf_stepcache_entry_write(steps, entry);
	json_decref(entry);
	_cleanup_free_ char *path = path_join(steps, "k1.json");
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	CHECK(read_file(path, 0, &text, &len, NULL) == 0);
	CHECK(text && !strstr(text, "s3cret") && !strstr(text, "user:"));
	CHECK(text && strstr(text, "https://***@mirror.example/containerd.tar.gz"));
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	CHECK(stat(steps, &st) == 0 && (st.st_mode & 07777) == 0700);
	rm_rf(dir, NULL);
}

TEST(prune_of_a_missing_cache_is_nothing_to_do)
{
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_prune("/nonexistent/imgforge-cache", UINT64_MAX, -1, &err) == 0);
	CHECK(imgf_stepcache_ls("/nonexistent/imgforge-cache", true, &err) == 0);
}

TEST(duration_parse)
{
	int64_t v = -1;
	CHECK(imgf_duration_parse("90", &v) == 0 && v == 90);
	CHECK(imgf_duration_parse("30m", &v) == 0 && v == 1800);
	CHECK(imgf_duration_parse("12h", &v) == 0 && v == 43200);
	CHECK(imgf_duration_parse("7d", &v) == 0 && v == 604800);
	CHECK(imgf_duration_parse("2w", &v) == 0 && v == 1209600);
	CHECK(imgf_duration_parse("0s", &v) == 0 && v == 0);
	CHECK(imgf_duration_parse("", &v) < 0);
	CHECK(imgf_duration_parse("-1d", &v) < 0);
	CHECK(imgf_duration_parse("1y", &v) < 0);
	CHECK(imgf_duration_parse("d", &v) < 0);
	CHECK(imgf_duration_parse("99999999999999999999", &v) < 0);
	CHECK(imgf_duration_parse("9999999999999999w", &v) < 0);
}
