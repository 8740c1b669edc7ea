/*
 * src/regcache.c, the step cache in a registry: which names --cache-to/--cache-from take, the
 * tags of an entry, the record's key chain checked against the build's; and, against
 * tests/lib/fakeregistry.py with a stand-in builder whose states are small images, a step
 * exported, said to be there and found again (the deepest step's state loaded, its inputs
 * handed back), a record of another chain refused by the link that differs, a blob the
 * registry serves tampered with refused by name while a shallower step whose blobs are intact
 * is used, and a registry that is away said to be so.
 */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "archive.h"
#include "build.h"
#include "builder.h"
#include "contract.h"
#include "digest.h"
#include "engine.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "httpd.h"
#include "provisioner.h"
#include "regcache.h"
#include "stepcache.h"
#include "util.h"
#include "test.h"

static char *root;

static void tmp_remove(void)
{
	if (root)
		rm_rf(root, NULL);
}

static const char *tmp_root(void)
{
	if (!root) {
		CHECK(make_temp_dir("test-regcache", &root, NULL) == 0);
		atexit(tmp_remove);
	}
	return root;
}

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
static const char K1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char K2[] = "2222222222222222222222222222222222222222222222222222222222222222";
static const char K3[] = "3333333333333333333333333333333333333333333333333333333333333333";

TEST(repo_check)
{
	static const char *const good[] = {"127.0.0.1:5000/imgforge/cache",
					   "registry.example.com/team/cache", "localhost/cache"};
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		struct imgf_error *e = NULL;
		CHECK(imgf_regcache_repo_check(good[i], &e) == 0);
		imgf_error_free(e);
	}
	static const struct {
		const char *s, *why;
	} bad[] = {
		{"kind/cache", "'kind' is not a registry"},
		{"127.0.0.1:5000", "is not REGISTRY/REPO"},
		{"127.0.0.1:5000/cache:v1", "names a tag"},
		{"127.0.0.1:5000/Cache", "'Cache' is not a repository name"},
		{"127.0.0.1:5000/cache@sha256:" HEX64, "is not REGISTRY/REPO"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct imgf_error *e = NULL;
		CHECK(imgf_regcache_repo_check(bad[i].s, &e) < 0);
		CHECK_ERR(e, bad[i].why);
		imgf_error_free(e);
	}
}

TEST(ref)
{
	_cleanup_free_ char *state = imgf_regcache_ref("127.0.0.1:5000/c", K1, NULL);
	_cleanup_free_ char *record = imgf_regcache_ref("127.0.0.1:5000/c", K1, "record");
	CHECK_STR(state, "127.0.0.1:5000/c:step-"
			 "1111111111111111111111111111111111111111111111111111111111111111");
	CHECK(str_has_suffix(
		record,
		":step-1111111111111111111111111111111111111111111111111111111111111111.record"));
	/* a tag is at most 128 characters of [A-Za-z0-9_.-] */
	CHECK(strlen(strrchr(record, ':') + 1) <= 128);
}

TEST(record_chain)
{
	const char *keys[] = {K1, K2, NULL};
	json_t *inputs = json_pack("[{s:s,s:s}]", "name", "containerd", "sha256", "ab");
	json_t *rec =
		imgf_regcache_record_new(keys, 1, "docker", "kind-node", "runc", "sha256:" HEX64,
					 "sha256:" HEX64, "arm64/v8", inputs);
	json_decref(inputs);
	CHECK_STR(json_string_value(json_object_get(rec, "architecture")), "arm64");
	CHECK_STR(json_string_value(json_object_get(rec, "variant")), "v8");
	CHECK(json_array_size(json_object_get(json_object_get(rec, "rootfs"), "diff_ids")) == 0);
	struct imgf_error *e = NULL;
	CHECK(imgf_regcache_record_check(rec, keys, 1, "docker", &e) == 0);
	imgf_error_free(e);
	e = NULL;

	/* the same key at the step, but reached by another chain */
	const char *other[] = {K3, K2, NULL};
	CHECK(imgf_regcache_record_check(rec, other, 1, "docker", &e) < 0);
	CHECK_ERR(e, "the record's key chain differs at step 1: 111111111111, this build's is "
		     "333333333333");
	imgf_error_free(e);
	e = NULL;
	CHECK(imgf_regcache_record_check(rec, keys, 0, "docker", &e) < 0);
	CHECK_ERR(e, "the record's key is 222222222222, not 111111111111");
	imgf_error_free(e);
	e = NULL;
	CHECK(imgf_regcache_record_check(rec, keys, 1, "qemu", &e) < 0);
	CHECK_ERR(e, "the record is of builder 'docker', not 'qemu'");
	imgf_error_free(e);
	e = NULL;
	json_object_set_new(json_object_get(rec, "imgforge"), "manifest", json_string("md5:x"));
	CHECK(imgf_regcache_record_check(rec, keys, 1, "docker", &e) < 0);
	CHECK_ERR(e, "the record's 'manifest' is not a sha256 digest");
	imgf_error_free(e);
	json_decref(rec);
}

/* ---- a stand-in builder whose states are small images ---------------------------------- */

struct fake_image {
	char id[72];
	char *config;
	char *layers[2];
	char layer_digest[2][72];
	size_t nlayers;
};

static struct fake_image images[2]; /* step 1: one layer; step 2: that one and another */
static int loads;
static char loaded[72];

static void sha256_of(const char *data, size_t len, char out[72])
{
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, data, len, hex);
	snprintf(out, 72, "sha256:%.64s", hex);
}

static void images_make(void)
{
	if (images[0].config)
		return;
	for (size_t n = 0; n < 2; n++) {
		struct fake_image *im = &images[n];
		im->nlayers = n + 1;
		json_t *diff = json_array();
		for (size_t l = 0; l < im->nlayers; l++) {
			im->layers[l] = xasprintf("the layer of step %zu\n", l + 1);
			sha256_of(im->layers[l], strlen(im->layers[l]), im->layer_digest[l]);
			json_array_append_new(diff, json_string(im->layer_digest[l]));
		}
		json_t *cfg = json_pack("{s:s,s:s,s:{s:s,s:o}}", "architecture", "amd64", "os",
					"linux", "rootfs", "type", "layers", "diff_ids", diff);
		im->config = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(cfg);
		sha256_of(im->config, strlen(im->config), im->id);
	}
}

static int fake_image_save(struct imgf_build *b, const char *id, const char *out_tar,
			   struct imgf_error **err)
{
	(void)b;
	struct fake_image *im = NULL;
	for (size_t n = 0; n < 2; n++)
		if (!strcmp(images[n].id, id))
			im = &images[n];
	if (!im)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "no image '%s'", id);
	json_t *layers = json_array();
	struct imgf_tar *t = imgf_tar_open(out_tar, err);
	int r = t ? imgf_tar_add_data(t, im->config, strlen(im->config), "config.json", 0644, 0, 0,
				      err)
		  : -1;
	for (size_t l = 0; r == 0 && l < im->nlayers; l++) {
		_cleanup_free_ char *name = xasprintf("%zu/layer.tar", l);
		r = imgf_tar_add_data(t, im->layers[l], strlen(im->layers[l]), name, 0644, 0, 0,
				      err);
		json_array_append_new(layers, json_string(name));
	}
	json_t *m =
		json_pack("[{s:s,s:n,s:o}]", "Config", "config.json", "RepoTags", "Layers", layers);
	_cleanup_free_ char *mj = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	if (r == 0)
		r = imgf_tar_add_data(t, mj, strlen(mj), "manifest.json", 0644, 0, 0, err);
	if (r == 0)
		r = imgf_tar_close(t, err);
	imgf_tar_free(t);
	return r;
}

/* What an engine would check of a docker-archive: its config is the image `id`. */
static int fake_load(struct imgf_build *b, const char *archive, const char *id,
		     struct imgf_error **err)
{
	(void)b;
	_cleanup_free_ char *dir = xasprintf("%s/load-%d", tmp_root(), loads);
	if (mkdir_p(dir, 0700, err) < 0 || imgf_archive_extract(archive, dir, err) < 0)
		return -1;
	_cleanup_free_ char *mpath = path_join(dir, "manifest.json");
	json_t *m = json_load_file(mpath, 0, NULL);
	const char *cfg = json_string_value(json_object_get(json_array_get(m, 0), "Config"));
	_cleanup_free_ char *cpath = cfg ? path_join(dir, cfg) : NULL;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r = cpath ? read_file(cpath, 0, &data, &len, err) : -1;
	json_decref(m);
	rm_rf(dir, NULL);
	if (r < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "no config in the archive");
	char got[72];
	sha256_of(data, len, got);
	if (strcmp(got, id) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "loaded %s, not %s", got, id);
	loads++;
	snprintf(loaded, sizeof(loaded), "%s", id);
	return 0;
}

static int fake_check(struct imgf_build *b, const char *key, const char *id, bool final,
		      struct imgf_error **err)
{
	(void)b, (void)key, (void) final, (void)err;
	return !strcmp(id, loaded);
}

static const struct imgf_builder_cache_ops fake_cache = {
	.check = fake_check,
	.load = fake_load,
};

static const struct imgf_builder_ops fake_builder = {
	.name = "fake",
	.image_save = fake_image_save,
	.cache = &fake_cache,
};

struct fixture {
	struct test_httpd srv;
	char *repo;
	struct imgf_build b;
	struct imgf_image_def def;
	struct imgf_build_opts opts;
	struct imgf_contract k;
	struct imgf_step steps[2];
	struct imgf_stepcache cache;
	char *keys[3];
};

/* The fake registry (with `tamper`, a blob it serves tampered with) and a build of two steps
 * keyed k1, k2 that exports to it and looks there. */
static int fixture_start(struct fixture *f, const char *tamper, const char *k1, const char *k2)
{
	memset(f, 0, sizeof(*f));
	images_make();
	const char *args[] = {"--tamper", tamper, NULL};
	if (test_pyserver_start(&f->srv, "fakeregistry.py", tamper ? args : NULL) < 0)
		return -1;
	static int n;
	f->repo = xasprintf("127.0.0.1:%d/imgforge/cache", f->srv.port);
	f->def.name = (char *)"img";
	f->opts.cache_to = f->repo;
	f->opts.cache_from = f->repo;
	f->k.platform = (char *)"linux/amd64";
	f->steps[0].label = (char *)"one";
	f->steps[1].label = (char *)"two";
	f->keys[0] = (char *)k1;
	f->keys[1] = (char *)k2;
	f->cache.keys = f->keys;
	f->b.def = &f->def;
	f->b.opts = &f->opts;
	f->b.contract = &f->k;
	f->b.builder = &fake_builder;
	f->b.steps = f->steps;
	f->b.nsteps = 2;
	f->b.cache = &f->cache;
	f->b.stage_dir = xasprintf("%s/stage-%d", tmp_root(), ++n);
	_cleanup_free_ char *cache_dir = xasprintf("%s/cache-%d", tmp_root(), n);
	imgf_fetch_opts_default(&f->b.fetch, cache_dir);
	f->b.fetch.cache_dir = xstrdup(cache_dir);
	f->b.fetch.max_attempts = 1;
	CHECK(mkdir_p(f->b.stage_dir, 0700, NULL) == 0);
	return 0;
}

static void fixture_stop(struct fixture *f)
{
	test_httpd_stop(&f->srv);
	free(f->repo);
	free(f->b.stage_dir);
	free((char *)f->b.fetch.cache_dir);
}

static void put_both(struct fixture *f)
{
	json_t *in1 = json_pack("[{s:s,s:s}]", "name", "a", "sha256", "aa");
	json_t *in2 = json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "a", "sha256", "aa", "name", "b",
				"sha256", "bb");
	struct imgf_error *e = NULL;
	CHECK(imgf_regcache_put(&f->b, (const char *const *)f->b.cache->keys, 0, images[0].id, -1,
				NULL, in1, &e) == 0);
	if (e)
		fprintf(stderr, "  %s\n", e->msg);
	imgf_error_free(e);
	e = NULL;
	CHECK(imgf_regcache_put(&f->b, (const char *const *)f->b.cache->keys, 1, images[1].id, 0,
				NULL, in2, &e) == 0);
	if (e)
		fprintf(stderr, "  %s\n", e->msg);
	imgf_error_free(e);
	json_decref(in1);
	json_decref(in2);
}

TEST(put_get)
{
	struct fixture f;
	if (fixture_start(&f, NULL, K1, K2) < 0)
		SKIP("tests/lib/fakeregistry.py does not start (python3?)");
	put_both(&f);
	char *id = NULL;
	json_t *inputs = NULL;
	bool away = true;
	int64_t size = 0;
	struct imgf_error *e = NULL;
	int before = loads;
	CHECK(imgf_regcache_get(&f.b, (const char *const *)f.b.cache->keys, 1, 0, NULL, &id, &size,
				&inputs, &away, &e) == 1);
	if (e)
		fprintf(stderr, "  %s\n", e->msg);
	CHECK(!away);
	CHECK_STR(id, images[1].id);
	CHECK(loads == before + 1);
	CHECK(json_array_size(inputs) == 2);
	CHECK_STR(json_string_value(json_object_get(json_array_get(inputs, 1), "name")), "b");
	free(id);
	json_decref(inputs);
	imgf_error_free(e);
	e = NULL;

	CHECK(imgf_regcache_has(&f.b, (const char *const *)f.b.cache->keys, 0) &&
	      imgf_regcache_has(&f.b, (const char *const *)f.b.cache->keys, 1));

	/* a key the registry has no entry for */
	f.keys[1] = (char *)K3;
	CHECK(!imgf_regcache_has(&f.b, (const char *const *)f.b.cache->keys, 1));
	id = NULL;
	CHECK(imgf_regcache_get(&f.b, (const char *const *)f.b.cache->keys, 1, 0, NULL, &id, &size,
				&inputs, &away, &e) == 0);
	CHECK(!e && !id && !away);

	/* the entry of k2, reached from another first step: refused by the link */
	f.keys[0] = (char *)K3;
	f.keys[1] = (char *)K2;
	CHECK(imgf_regcache_get(&f.b, (const char *const *)f.b.cache->keys, 1, 0, NULL, &id, &size,
				&inputs, &away, &e) < 0);
	CHECK_ERR(e, "the record's key chain differs at step 1: 111111111111, this build's is "
		     "333333333333");
	CHECK(!away);
	CHECK(loads == before + 1);
	CHECK(!imgf_regcache_has(&f.b, (const char *const *)f.b.cache->keys, 1));
	imgf_error_free(e);
	e = NULL;

	/* the registry away: said so, nothing further to look for */
	test_httpd_stop(&f.srv);
	f.keys[0] = (char *)K1;
	CHECK(imgf_regcache_get(&f.b, (const char *const *)f.b.cache->keys, 0, -1, NULL, &id, &size,
				&inputs, &away, &e) < 0);
	CHECK(away);
	imgf_error_free(e);
	fixture_stop(&f);
}

TEST(tampered_blob)
{
	images_make();
	struct fixture f;
	/* the layer only step 2 has */
	if (fixture_start(&f, images[1].layer_digest[1], K1, K2) < 0)
		SKIP("tests/lib/fakeregistry.py does not start (python3?)");
	put_both(&f);
	char *id = NULL;
	json_t *inputs = NULL;
	bool away = true;
	int64_t size = 0;
	struct imgf_error *e = NULL;
	int before = loads;
	CHECK(imgf_regcache_get(&f.b, (const char *const *)f.b.cache->keys, 1, 0, NULL, &id, &size,
				&inputs, &away, &e) < 0);
	_cleanup_free_ char *want =
		xasprintf("blob '%s': sha256 mismatch", images[1].layer_digest[1]);
	CHECK_ERR(e, want);
	CHECK(!away);
	CHECK(loads == before);
	imgf_error_free(e);
	e = NULL;
	/* the step before, whose blobs are intact, is there */
	CHECK(imgf_regcache_get(&f.b, (const char *const *)f.b.cache->keys, 0, -1, NULL, &id, &size,
				&inputs, &away, &e) == 1);
	CHECK_STR(id, images[0].id);
	free(id);
	json_decref(inputs);
	imgf_error_free(e);
	fixture_stop(&f);
}

/* ---- a stand-in builder whose states are files, each on the one before ------------------ */

static char *state_files[2]; /* step 1's file, step 2's (standing on step 1's) */
static char state_digest[2][72];
static char *imported_below;

static void state_files_make(void)
{
	if (state_files[0])
		return;
	for (size_t n = 0; n < 2; n++) {
		state_files[n] = xasprintf("%s/state-%zu.disk", tmp_root(), n + 1);
		_cleanup_free_ char *data = xasprintf("the disk of step %zu\n", n + 1);
		CHECK(write_file_atomic(state_files[n], data, strlen(data), 0600, NULL) == 0);
		sha256_of(data, strlen(data), state_digest[n]);
	}
}

static int fake_export_file(struct imgf_build *b, const char *id, char **file, char digest[72],
			    const char **type, char **below, struct imgf_error **err)
{
	(void)b;
	size_t n = !strcmp(id, state_files[1]);
	if (!n && strcmp(id, state_files[0]) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "no state '%s'", id);
	*file = xstrdup(id);
	snprintf(digest, 72, "%s", state_digest[n]);
	*type = "application/vnd.imgforge.test.disk";
	*below = n ? xstrdup(state_files[0]) : NULL;
	return 0;
}

static int fake_import_file(struct imgf_build *b, const char *key, const char *file,
			    const char *below, char **id, int64_t *size, struct imgf_error **err)
{
	(void)b;
	*id = xasprintf("%s/imported-%.12s-%d", tmp_root(), key, loads++);
	if (move_file(file, *id, err) < 0) {
		free(*id);
		*id = NULL;
		return -1;
	}
	free(imported_below);
	imported_below = below ? xstrdup(below) : NULL;
	*size = 21;
	return 0;
}

static int fake_file_check(struct imgf_build *b, const char *key, const char *id, bool final,
			   struct imgf_error **err)
{
	(void)b, (void)key, (void) final, (void)err;
	return access(id, R_OK) == 0;
}

static const struct imgf_builder_cache_ops fake_file_cache = {
	.check = fake_file_check,
	.export_file = fake_export_file,
	.import_file = fake_import_file,
};

static const struct imgf_builder_ops fake_file_builder = {
	.name = "fakefile",
	.cache = &fake_file_cache,
};

TEST(a_file_builders_states_are_artifacts_stacked_step_on_step)
{
	state_files_make();
	struct fixture f;
	if (fixture_start(&f, NULL, K1, K2) < 0)
		SKIP("tests/lib/fakeregistry.py does not start (python3?)");
	f.b.builder = &fake_file_builder;
	CHECK(imgf_regcache_supported(&f.b));
	json_t *in = json_pack("[{s:s,s:s}]", "name", "a", "sha256", "aa");
	const char *const *keys = (const char *const *)f.b.cache->keys;
	struct imgf_error *e = NULL;
	CHECK(imgf_regcache_put(&f.b, keys, 0, state_files[0], -1, NULL, in, &e) == 0);
	CHECK(!e);
	/* step 2's file stands on step 1's: pushed only when that is the state below */
	CHECK(imgf_regcache_put(&f.b, keys, 1, state_files[1], 0, "/elsewhere", in, &e) < 0);
	CHECK_ERR(e, "not on the state of the step below, '/elsewhere'");
	imgf_error_free(e);
	e = NULL;
	CHECK(imgf_regcache_put(&f.b, keys, 1, state_files[1], 0, state_files[0], in, &e) == 0);
	CHECK(!e);
	CHECK(imgf_regcache_probe(&f.b, f.repo, keys, 1, &e) == 1);

	char *id = NULL;
	json_t *inputs = NULL;
	bool away = true;
	int64_t size = 0;
	/* step 2 alone: it needs step 1's state here */
	CHECK(imgf_regcache_get(&f.b, keys, 1, 0, NULL, &id, &size, &inputs, &away, &e) < 0);
	CHECK_ERR(e, "step 1's state is not at hand");
	imgf_error_free(e);
	e = NULL;
	CHECK(imgf_regcache_get(&f.b, keys, 1, 0, "/cache/step-1.disk", &id, &size, &inputs, &away,
				&e) == 1);
	CHECK(!e && !away && id && size == 21);
	CHECK_STR(imported_below, "/cache/step-1.disk");
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	CHECK(id && read_file(id, 0, &data, &len, NULL) == 0);
	CHECK_STR(data, "the disk of step 2\n");
	CHECK(json_array_size(inputs) == 1);
	free(id);
	json_decref(inputs);
	json_decref(in);
	fixture_stop(&f);
}

TEST(a_file_builders_tampered_file_is_named_and_not_used)
{
	state_files_make();
	struct fixture f;
	if (fixture_start(&f, state_digest[0], K1, K2) < 0)
		SKIP("tests/lib/fakeregistry.py does not start (python3?)");
	f.b.builder = &fake_file_builder;
	json_t *in = json_array();
	const char *const *keys = (const char *const *)f.b.cache->keys;
	struct imgf_error *e = NULL;
	CHECK(imgf_regcache_put(&f.b, keys, 0, state_files[0], -1, NULL, in, &e) == 0);
	char *id = NULL;
	json_t *inputs = NULL;
	bool away = true;
	int64_t size = 0;
	CHECK(imgf_regcache_get(&f.b, keys, 0, -1, NULL, &id, &size, &inputs, &away, &e) < 0);
	_cleanup_free_ char *want = xasprintf("blob '%s': sha256 mismatch", state_digest[0]);
	CHECK_ERR(e, want);
	CHECK(!away && !id);
	imgf_error_free(e);
	json_decref(in);
	fixture_stop(&f);
}
