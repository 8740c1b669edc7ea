/*
 * The step cache (src/stepcache*.c): `imgforge cache prune` picks entries by age and by size (least
 * recently used first) and removes unreadable ones; --older-than parses durations. The entries here
 * name a builder that does not exist, so only their records go (t1235 covers the images).
 * A step's key holds every host path its provisioner says it reads, however it is written.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "build.h"
#include "builder.h"
#include "config.h"
#include "contract.h"
#include "engine.h"
#include "error.h"
#include "fsutil.h"
#include "provisioner.h"
#include "stepcache-internal.h"
#include "stepcache.h"
#include "strbuf.h"
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

/* The contract of a build with none of its variables set. */
static const struct imgf_contract no_contract;

/* ---- what a step's key holds -------------------------------------------------------------- */

/* A step of provisioner `prov` with the config `json`, in a build with no variables. */
struct keyed_step {
	struct imgf_config cfg;
	struct imgf_build build;
	struct imgf_step s;
};

static void keyed_step_init(struct keyed_step *k, const char *prov, const char *json)
{
	k->cfg = (struct imgf_config){.vars = json_object()};
	k->build = (struct imgf_build){.config = &k->cfg, .contract = &no_contract};
	k->s = (struct imgf_step){.ops = imgf_provisioner_find(prov), .build = &k->build};
	CHECK(k->s.ops != NULL);
	k->s.cfg = json_loads(json, 0, NULL);
	CHECK(k->s.cfg != NULL);
}

static void keyed_step_release(struct keyed_step *k)
{
	json_decref(k->s.cfg);
	json_decref(k->cfg.vars);
}

static char *key_of(struct keyed_step *k)
{
	char *key = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_step_key(&k->s, "prev", &key, &err) == 0);
	imgf_error_free(err);
	return key ? key : xstrdup("");
}

/* Write `text` to path (making its directory), keeping the mtime of the file it replaces:
 * only the content tells the two apart. */
static void put_same_time(const char *path, const char *text)
{
	_cleanup_free_ char *dir = path_dirname(path);
	CHECK(mkdir_p(dir, 0755, NULL) == 0);
	struct stat st;
	bool had = stat(path, &st) == 0;
	CHECK(write_file_atomic(path, text, strlen(text), 0644, NULL) == 0);
	if (had) {
		struct timespec ts[2] = {st.st_atim, st.st_mtim};
		CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
	}
}

/* A scratch directory made the working directory (relative paths resolve there). */
static char *enter_scratch(char **old_cwd)
{
	*old_cwd = getcwd(NULL, 0);
	char *dir = fresh_dir();
	CHECK(chdir(dir) == 0);
	return dir;
}

static void leave_scratch(char *dir, char *old_cwd)
{
	CHECK(chdir(old_cwd) == 0);
	rm_rf(dir, NULL);
	free(dir);
	free(old_cwd);
}

TEST(key_changes_with_a_relative_source_files_content)
{
	char *cwd;
	char *dir = enter_scratch(&cwd);
	put_same_time("files/motd", "hello\n");
	struct keyed_step k;
	keyed_step_init(&k, "file", "{\"source\": \"files/motd\", \"destination\": \"/etc/motd\"}");
	_cleanup_free_ char *before = key_of(&k);
	put_same_time("files/motd", "HELLO\n"); /* same size, same mtime */
	_cleanup_free_ char *after = key_of(&k);
	CHECK(strcmp(before, after) != 0);
	/* the same file written another way is the same content */
	keyed_step_release(&k);
	keyed_step_init(&k, "file",
			"{\"source\": \"./files/motd\", \"destination\": \"/etc/motd\"}");
	_cleanup_free_ char *dotted = key_of(&k);
	put_same_time("files/motd", "hello\n");
	_cleanup_free_ char *dotted_after = key_of(&k);
	CHECK(strcmp(dotted, dotted_after) != 0);
	keyed_step_release(&k);
	leave_scratch(dir, cwd);
}

/* Every key a provisioner types as a host path, with a config that reads it: `path` is
 * changed between two keys (a file, or a file inside the directory `dir`). */
static const struct {
	const char *prov, *key, *json, *path;
} host_path_cases[] = {
	{"file", "source", "{\"source\": \"in/f\", \"destination\": \"/f\"}", "in/f"},
	{"file", "source", "{\"source\": \"tree\", \"destination\": \"/t\"}", "tree/a/b"},
	{"shell", "script", "{\"script\": \"scripts/s.sh\"}", "scripts/s.sh"},
	{"kubernetes", "tarball",
	 "{\"kubernetes_source\": \"tarball\", \"tarball\": \"k/server.tar.gz\", \"version\": "
	 "\"v1.31.2\"}",
	 "k/server.tar.gz"},
	{"kubernetes", "local_dir",
	 "{\"kubernetes_source\": \"local\", \"local_dir\": \"kube\", \"version\": \"v1.31.2\"}",
	 "kube/_output/bin/kubeadm"},
	{"images", "tarball",
	 "{\"kubernetes_source\": \"tarball\", \"tarball\": \"k/server.tar.gz\"}",
	 "k/server.tar.gz"},
	{"images", "local_dir", "{\"kubernetes_source\": \"local\", \"local_dir\": \"kube\"}",
	 "kube/_output/release-images/amd64/kube-proxy.tar"},
	{"images", "additional_images",
	 "{\"additional_images\": \"registry.example/x:1 ./tars/extra.tar\"}", "tars/extra.tar"},
};

TEST(key_changes_with_the_content_of_every_host_path_key)
{
	char *cwd;
	char *dir = enter_scratch(&cwd);
	for (size_t i = 0; i < ARRAY_SIZE(host_path_cases); i++) {
		put_same_time(host_path_cases[i].path, "one\n");
		struct keyed_step k;
		keyed_step_init(&k, host_path_cases[i].prov, host_path_cases[i].json);
		_cleanup_free_ char *before = key_of(&k);
		put_same_time(host_path_cases[i].path, "two\n");
		_cleanup_free_ char *after = key_of(&k);
		if (!strcmp(before, after))
			fprintf(stderr, "  %s: %s: '%s' changed, the key did not\n",
				host_path_cases[i].prov, host_path_cases[i].key,
				host_path_cases[i].path);
		CHECK(strcmp(before, after) != 0);
		keyed_step_release(&k);
	}
	leave_scratch(dir, cwd);
}

TEST(every_key_typed_as_a_host_path_has_a_case_above)
{
	_cleanup_free_ char *names = imgf_provisioner_names(); /* "'shell', 'file', …" */
	for (char *p = names; (p = strchr(p, '\'')); p++) {
		char *end = strchr(p + 1, '\'');
		_cleanup_free_ char *name = xstrndup(p + 1, (size_t)(end - p - 1));
		p = end;
		const struct imgf_provisioner_ops *ops = imgf_provisioner_find(name);
		for (const struct imgf_key *key = ops->keys; key->name; key++) {
			if (key->type != IMGF_KEY_HOST_PATH &&
			    key->type != IMGF_KEY_HOST_PATH_WORDS)
				continue;
			bool found = false;
			for (size_t i = 0; i < ARRAY_SIZE(host_path_cases); i++)
				found |= !strcmp(host_path_cases[i].prov, name) &&
					 !strcmp(host_path_cases[i].key, key->name);
			if (!found)
				fprintf(stderr, "  %s: %s: no case\n", name, key->name);
			CHECK(found);
		}
	}
}

TEST(a_directory_is_keyed_by_its_files_content_and_links)
{
	char *cwd;
	char *dir = enter_scratch(&cwd);
	put_same_time("kube/_output/bin/kubelet", "aaaa");
	put_same_time("kube/hack/notes", "bbbb");
	struct keyed_step k;
	keyed_step_init(&k, "kubernetes",
			"{\"kubernetes_source\": \"local\", \"local_dir\": \"kube\", "
			"\"version\": \"v1.31.2\"}");
	_cleanup_free_ char *k1 = key_of(&k);
	_cleanup_free_ char *k1_again = key_of(&k);
	CHECK_STR(k1, k1_again);
	put_same_time("kube/hack/notes", "cccc"); /* deep, same size and mtime */
	_cleanup_free_ char *k2 = key_of(&k);
	CHECK(strcmp(k1, k2) != 0);
	CHECK(symlink("bin/kubelet", "kube/_output/link") == 0);
	_cleanup_free_ char *k3 = key_of(&k);
	CHECK(strcmp(k2, k3) != 0);
	CHECK(unlink("kube/_output/link") == 0 && symlink("bin/other", "kube/_output/link") == 0);
	_cleanup_free_ char *k4 = key_of(&k);
	CHECK(strcmp(k3, k4) != 0);
	CHECK(chmod("kube/hack/notes", 0600) == 0);
	_cleanup_free_ char *k5 = key_of(&k);
	CHECK(strcmp(k4, k5) != 0);
	keyed_step_release(&k);
	leave_scratch(dir, cwd);
}

TEST(host_paths_are_only_what_the_step_reads_on_the_host)
{
	struct {
		const char *prov, *json, *want;
	} cases[] = {
		/* a download's source is in the target */
		{"file",
		 "{\"source\": \"/etc/os-release\", \"destination\": \"out\", "
		 "\"direction\": \"download\"}",
		 ""},
		{"file", "{\"source\": \"rel/f\", \"destination\": \"/f\"}", "rel/f,"},
		/* a URL is no host path; a source other than the key's reads none */
		{"kubernetes",
		 "{\"kubernetes_source\": \"tarball\", \"tarball\": "
		 "\"https://dl.example/k.tar.gz\", \"local_dir\": \"kube\"}",
		 ""},
		{"kubernetes",
		 "{\"kubernetes_source\": \"release\", \"source\": "
		 "\"https://dl.example/bin\", \"tarball\": \"k.tar.gz\"}",
		 ""},
		{"images",
		 "{\"kubernetes_source\": \"local\", \"local_dir\": \"kube\", "
		 "\"additional_images\": \"a/b:1, ./c.tar ../d.tar\\n/e.tar f.tar\"}",
		 "kube,./c.tar,../d.tar,/e.tar,"},
		/* containerd's source is a kind of install, not a path */
		{"containerd", "{\"source\": \"./package\"}", ""},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct keyed_step k;
		keyed_step_init(&k, cases[i].prov, cases[i].json);
		_cleanup_strv_ char **paths = imgf_step_host_paths(&k.s);
		struct strbuf sb = STRBUF_INIT;
		for (size_t j = 0; paths[j]; j++)
			strbuf_addf(&sb, "%s,", paths[j]);
		CHECK_STR(sb.buf, cases[i].want);
		strbuf_release(&sb);
		keyed_step_release(&k);
	}
}

/* ---- twin builds: one entry per key, and no state removed under a build ----------------- */

/* A builder whose states are names: what it saved, adopted and dropped is counted. */
static char saved[8][64], adopted[8][64], dropped[8][64];
static size_t nsaved, nadopted, ndropped;

static void note(char list[8][64], size_t *n, const char *what)
{
	if (*n < 8)
		snprintf(list[(*n)++], 64, "%s", what);
}

static bool noted(char list[8][64], size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], what))
			return true;
	return false;
}

static int fake_base(struct imgf_build *b, bool pull, char **digest, struct imgf_error **err)
{
	*digest = xstrdup("base");
	return 0;
}

static int fake_save(struct imgf_build *b, struct imgf_target *t, const char *key, const char *step,
		     char **id, int64_t *size, struct imgf_error **err)
{
	*id = xasprintf("%s-%.6s", b->def->name, key);
	*size = 1;
	note(saved, &nsaved, *id);
	return 0;
}

static int fake_adopt(struct imgf_build *b, struct imgf_target *t, const char *id,
		      struct imgf_error **err)
{
	note(adopted, &nadopted, id);
	return 0;
}

static int fake_check(struct imgf_build *b, const char *key, const char *id, bool final,
		      struct imgf_error **err)
{
	return noted(saved, nsaved, id) && !noted(dropped, ndropped, id);
}

static int fake_drop(const char *id, bool final, struct imgf_error **err)
{
	note(dropped, &ndropped, id);
	return 0;
}

static const struct imgf_builder_cache_ops fake_cache = {
	.base = fake_base,
	.save = fake_save,
	.adopt = fake_adopt,
	.check = fake_check,
	.drop = fake_drop,
};

static const struct imgf_builder_ops fake_builder = {
	.name = "fake",
	.cache = &fake_cache,
};

/* An image of two shell steps, the same for every image: twins. */
struct twin {
	struct imgf_config cfg;
	struct imgf_image_def def;
	struct imgf_build_opts opts;
	struct imgf_build b;
	struct imgf_step steps[2];
};

/* With a builder and its config (taken) of the test's own. */
static void twin_open_with(struct twin *t, const char *name, const char *cache_dir, bool no_cache,
			   const struct imgf_builder_ops *builder, json_t *cfg);

static void twin_open(struct twin *t, const char *name, const char *cache_dir, bool no_cache)
{
	twin_open_with(t, name, cache_dir, no_cache, &fake_builder, json_object());
}

static void twin_open_with(struct twin *t, const char *name, const char *cache_dir, bool no_cache,
			   const struct imgf_builder_ops *builder, json_t *cfg)
{
	memset(t, 0, sizeof(*t));
	t->cfg.vars = json_object();
	t->def.name = (char *)name;
	t->opts.no_cache = no_cache;
	t->b = (struct imgf_build){.config = &t->cfg,
				   .contract = &no_contract,
				   .def = &t->def,
				   .opts = &t->opts,
				   .builder = builder,
				   .builder_cfg = cfg,
				   .steps = t->steps,
				   .nsteps = 2,
				   .cache_dir = (char *)cache_dir,
				   .inputs = json_array(),
				   .labels = json_object()};
	for (size_t i = 0; i < 2; i++)
		t->steps[i] = (struct imgf_step){
			.ops = imgf_provisioner_find("shell"),
			.build = &t->b,
			.index = i,
			.label = i ? "second" : "first",
			.cfg = json_pack("{s:[s]}", "inline", i ? "echo two" : "echo one"),
		};
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_open(&t->b, &err) == 0);
	imgf_error_free(err);
	CHECK(t->b.cache != NULL);
}

/* The build ends: its locks go with its cache. */
static void twin_close(struct twin *t)
{
	imgf_stepcache_free(t->b.cache);
	t->b.cache = NULL;
	for (size_t i = 0; i < 2; i++)
		json_decref(t->steps[i].cfg);
	json_decref(t->b.builder_cfg);
	json_decref(t->b.inputs);
	json_decref(t->b.labels);
	json_decref(t->cfg.vars);
}

static json_t *entry_of(const char *dir, const char *key)
{
	_cleanup_free_ char *path = xasprintf("%s/steps/%s.json", dir, key);
	return json_load_file(path, 0, NULL);
}

static const char *id_of(json_t *entry)
{
	return json_string_value(json_object_get(entry, "id"));
}

static void fake_reset(void)
{
	nsaved = nadopted = ndropped = 0;
}

/* How many entries the cache holds. */
static size_t entries_in(const char *dir)
{
	_cleanup_free_ char *steps = path_join(dir, "steps");
	size_t n = 0;
	DIR *d = opendir(steps);
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += str_has_suffix(de->d_name, ".json");
	if (d)
		closedir(d);
	return n;
}

TEST(twin_builds_share_each_steps_entry_and_never_drop_each_others_state)
{
	fake_reset();
	_cleanup_free_ char *dir = fresh_dir();
	struct twin a, b;
	twin_open(&a, "capi-qcow2", dir, false);
	twin_open(&b, "capi-ova", dir, false);
	CHECK_STR(a.b.cache->keys[0], b.b.cache->keys[0]);
	CHECK(a.b.cache->hit == 0 && b.b.cache->hit == 0);
	/* both ran the first step; a saves first, b goes on from a's state */
	imgf_stepcache_step_done(&a.b, NULL, 0);
	imgf_stepcache_step_done(&b.b, NULL, 0);
	/* the second step: b is first this time */
	imgf_stepcache_step_done(&b.b, NULL, 1);
	imgf_stepcache_step_done(&a.b, NULL, 1);
	CHECK(nsaved == 2 && ndropped == 0);
	json_t *e0 = entry_of(dir, a.b.cache->keys[0]);
	json_t *e1 = entry_of(dir, a.b.cache->keys[1]);
	CHECK(e0 && e1 && noted(adopted, nadopted, id_of(e0)) &&
	      noted(adopted, nadopted, id_of(e1)));
	CHECK(e0 && str_has_prefix(id_of(e0), "capi-qcow2-"));
	CHECK(e1 && str_has_prefix(id_of(e1), "capi-ova-"));
	json_decref(e0);
	json_decref(e1);
	/* prune while they run: every entry stays, in use */
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_prune(dir, UINT64_MAX, -1, &err) == 0);
	CHECK(entries_in(dir) == 2);
	twin_close(&a);
	CHECK(imgf_stepcache_prune(dir, UINT64_MAX, -1, &err) == 0);
	CHECK(entries_in(dir) == 2); /* b still stands on both */
	twin_close(&b);
	CHECK(imgf_stepcache_prune(dir, UINT64_MAX, -1, &err) == 0);
	CHECK(entries_in(dir) == 0);
	/* and no lock file outlives its entry */
	_cleanup_free_ char *steps = path_join(dir, "steps");
	DIR *d = opendir(steps);
	struct dirent *de;
	size_t left = 0;
	while (d && (de = readdir(d)))
		left += de->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK(left == 0);
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(no_cache_replaces_an_entry_but_not_the_state_a_running_build_stands_on)
{
	fake_reset();
	_cleanup_free_ char *dir = fresh_dir();
	struct twin a, b;
	twin_open(&a, "first", dir, false);
	imgf_stepcache_step_done(&a.b, NULL, 0);
	twin_open(&b, "again", dir, true); /* --no-cache */
	imgf_stepcache_step_done(&b.b, NULL, 0);
	CHECK(nsaved == 2 && ndropped == 0 && nadopted == 0);
	json_t *e = entry_of(dir, a.b.cache->keys[0]);
	CHECK(e && str_has_prefix(id_of(e), "again-"));
	json_t *sup = json_array_get(json_object_get(e, "superseded"), 0);
	CHECK(sup && str_has_prefix(id_of(sup), "first-"));
	json_decref(e);
	twin_close(&a);
	twin_close(&b);
	/* nobody stands on either now: the next --no-cache build drops both */
	struct twin c;
	twin_open(&c, "third", dir, true);
	imgf_stepcache_step_done(&c.b, NULL, 0);
	CHECK(ndropped == 2 && noted(dropped, ndropped, saved[0]) &&
	      noted(dropped, ndropped, saved[1]));
	e = entry_of(dir, c.b.cache->keys[0]);
	CHECK(e && !json_object_get(e, "superseded"));
	json_decref(e);
	twin_close(&c);
	rm_rf(dir, NULL);
}

TEST(a_build_standing_on_cached_steps_keeps_them_from_prune)
{
	fake_reset();
	_cleanup_free_ char *dir = fresh_dir();
	struct twin a, warm;
	twin_open(&a, "cold", dir, false);
	imgf_stepcache_step_done(&a.b, NULL, 0);
	imgf_stepcache_step_done(&a.b, NULL, 1);
	twin_close(&a);
	twin_open(&warm, "warm", dir, false);
	CHECK(warm.b.cache->hit == 2);
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_prune(dir, 0, -1, &err) == 0);
	CHECK(entries_in(dir) == 2);
	twin_close(&warm);
	CHECK(imgf_stepcache_prune(dir, 0, -1, &err) == 0);
	CHECK(entries_in(dir) == 0);
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

/* Five shell steps, the ones marked in `quick` made quick; step `change` (or none, -1) says
 * something else. */
struct chain {
	struct imgf_config cfg;
	struct imgf_image_def def;
	struct imgf_build_opts opts;
	struct imgf_build b;
	struct imgf_step steps[5];
	struct imgf_provisioner_ops quick_ops;
};

static void chain_open(struct chain *c, const char *dir, const char *quick, int change)
{
	memset(c, 0, sizeof(*c));
	c->quick_ops = *imgf_provisioner_find("shell");
	c->quick_ops.quick = imgf_provisioner_quick;
	c->cfg.vars = json_object();
	c->def.name = "chain";
	c->b = (struct imgf_build){.config = &c->cfg,
				   .contract = &no_contract,
				   .def = &c->def,
				   .opts = &c->opts,
				   .builder = &fake_builder,
				   .builder_cfg = json_object(),
				   .steps = c->steps,
				   .nsteps = 5,
				   .cache_dir = (char *)dir,
				   .inputs = json_array(),
				   .labels = json_object()};
	static const char *const labels[] = {"one", "two", "three", "four", "five"};
	for (int i = 0; i < 5; i++)
		c->steps[i] = (struct imgf_step){
			.ops = quick[i] == 'q' ? &c->quick_ops : imgf_provisioner_find("shell"),
			.build = &c->b,
			.index = (size_t)i,
			.label = (char *)labels[i],
			.cfg = json_pack("{s:[s]}", "inline", i == change ? "changed" : labels[i]),
		};
	struct imgf_error *err = NULL;
	CHECK(imgf_stepcache_open(&c->b, &err) == 0);
	imgf_error_free(err);
	CHECK(c->b.cache != NULL);
}

static void chain_close(struct chain *c)
{
	imgf_stepcache_free(c->b.cache);
	for (size_t i = 0; i < 5; i++)
		json_decref(c->steps[i].cfg);
	json_decref(c->b.builder_cfg);
	json_decref(c->b.inputs);
	json_decref(c->b.labels);
	json_decref(c->cfg.vars);
}

TEST(the_state_after_a_run_of_quick_steps_is_kept_once_after_the_last_of_them)
{
	fake_reset();
	_cleanup_free_ char *dir = fresh_dir();
	struct chain cold;
	/* quick, quick, slow, quick, quick: kept after two, three and five (the last) */
	chain_open(&cold, dir, "qqsqq", -1);
	bool want[5] = {false, true, true, false, true};
	for (size_t i = 0; i < 5; i++) {
		CHECK(imgf_stepcache_keeps(&cold.b, i) == want[i]);
		imgf_stepcache_step_done(&cold.b, NULL, i);
	}
	CHECK(nsaved == 3 && entries_in(dir) == 3);
	for (size_t i = 0; i < 5; i++) {
		json_t *e = entry_of(dir, cold.b.cache->keys[i]);
		CHECK((e != NULL) == want[i]);
		json_decref(e);
	}
	chain_close(&cold);
	/* nothing changed: every step cached */
	struct chain warm;
	chain_open(&warm, dir, "qqsqq", -1);
	CHECK(warm.b.cache->hit == 5);
	chain_close(&warm);
	/* a quick step changed: from the deepest kept state before it, the quick step between
	 * runs again */
	struct chain four;
	chain_open(&four, dir, "qqsqq", 4);
	CHECK(four.b.cache->hit == 4 - 1);
	chain_close(&four);
	/* a slow step changed: from the state just before it, kept at the end of the quick run */
	struct chain three;
	chain_open(&three, dir, "qqsqq", 2);
	CHECK(three.b.cache->hit == 2);
	chain_close(&three);
	/* all quick: only the last is kept */
	fake_reset();
	_cleanup_free_ char *dir2 = fresh_dir();
	struct chain all;
	chain_open(&all, dir2, "qqqqq", -1);
	for (size_t i = 0; i < 5; i++) {
		CHECK(imgf_stepcache_keeps(&all.b, i) == (i == 4));
		imgf_stepcache_step_done(&all.b, NULL, i);
	}
	CHECK(nsaved == 1 && entries_in(dir2) == 1);
	chain_close(&all);
	rm_rf(dir, NULL);
	rm_rf(dir2, NULL);
}

static const char *const fake_late_keys[] = {"boot", "firmware", NULL};

static const struct imgf_builder_cache_ops fake_late_cache = {
	.late_keys = fake_late_keys,
	.base = fake_base,
	.save = fake_save,
	.adopt = fake_adopt,
	.check = fake_check,
	.drop = fake_drop,
};

static const struct imgf_builder_ops fake_late_builder = {
	.name = "fake",
	.cache = &fake_late_cache,
};

TEST(a_late_builder_key_changes_no_step_key_but_the_final_one)
{
	fake_reset();
	_cleanup_free_ char *dir = fresh_dir();
	struct twin bios, uefi, bigger;
	twin_open_with(&bios, "bios", dir, false, &fake_late_builder,
		       json_pack("{s:s,s:s,s:b}", "disk", "4G", "firmware", "bios", "boot", 1));
	twin_open_with(&uefi, "uefi", dir, false, &fake_late_builder,
		       json_pack("{s:s,s:s,s:s}", "disk", "4G", "firmware", "uefi", "boot", "x"));
	twin_open_with(&bigger, "bigger", dir, false, &fake_late_builder,
		       json_pack("{s:s,s:s,s:b}", "disk", "8G", "firmware", "bios", "boot", 1));
	for (size_t i = 0; i < 2; i++) {
		CHECK_STR(bios.b.cache->keys[i], uefi.b.cache->keys[i]);
		CHECK(strcmp(bios.b.cache->keys[i], bigger.b.cache->keys[i]) != 0);
	}
	json_t *pps = json_array();
	bios.def.post_processors = uefi.def.post_processors = pps;
	imgf_stepcache_final_key(&bios.b);
	imgf_stepcache_final_key(&uefi.b);
	json_decref(pps);
	CHECK(strcmp(bios.b.cache->final_key, uefi.b.cache->final_key) != 0);
	/* The same late key on a builder that does not declare it late is in the step keys. */
	struct twin plain;
	twin_open_with(&plain, "plain", dir, false, &fake_builder,
		       json_pack("{s:s,s:s,s:s}", "disk", "4G", "firmware", "uefi", "boot", "x"));
	struct twin plain2;
	twin_open_with(&plain2, "plain2", dir, false, &fake_builder,
		       json_pack("{s:s,s:s,s:b}", "disk", "4G", "firmware", "bios", "boot", 1));
	CHECK(strcmp(plain.b.cache->keys[0], plain2.b.cache->keys[0]) != 0);
	twin_close(&bios);
	twin_close(&uefi);
	twin_close(&bigger);
	twin_close(&plain);
	twin_close(&plain2);
	rm_rf(dir, NULL);
}
