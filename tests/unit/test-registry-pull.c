/*
 * End-to-end registry pulls against the fixture registry (tests/lib/fixtures.sh), which
 * tests/integration/t0400-registry-pull.sh starts: IMGF_TEST_REGISTRY=host:port enables the
 * pulls, IMGF_TEST_AUTH_REGISTRY=host:port adds the bearer-token front, IMGF_TEST_KEEP=DIR
 * keeps the image tars there (for `ctr images import`). Without IMGF_TEST_REGISTRY only the
 * offline checks run and the pulls are reported as skipped.
 */
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "registry.h"
#include "util.h"
#include "test.h"

struct member {
	char *name;
	char *data;
	size_t len;
};

struct layout {
	struct member *m;
	size_t n, alloc;
};

static void layout_release(struct layout *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->m[i].name);
		free(l->m[i].data);
	}
	free(l->m);
	memset(l, 0, sizeof(*l));
}

static void add_member(struct layout *l, const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_join(dir, name);
	ALLOC_GROW(l->m, l->n + 1, l->alloc);
	struct member *m = &l->m[l->n++];
	m->name = xstrdup(name);
	m->data = NULL;
	m->len = 0;
	struct imgf_error *err = NULL;
	if (read_file(p, 0, &m->data, &m->len, &err) < 0) {
		fprintf(stderr, "  %s\n", err->msg);
		imgf_error_free(err);
		m->data = xstrdup("");
	}
}

/*
 * Unpack a (small) image tar and read it into memory: every file under the top level and
 * blobs/sha256 (anything else makes it fail).
 */
static int layout_read(const char *tar, struct layout *l)
{
	memset(l, 0, sizeof(*l));
	struct imgf_error *err = NULL;
	_cleanup_free_ char *dir = NULL;
	int ret = -1;
	if (make_temp_dir("imgf-test-layout", &dir, &err) < 0 ||
	    imgf_archive_extract(tar, dir, &err) < 0) {
		fprintf(stderr, "  extract '%s': %s\n", tar, err->msg);
		imgf_error_free(err);
		goto out;
	}
	const char *subdirs[] = {"", "blobs", "blobs/sha256"};
	for (size_t s = 0; s < ARRAY_SIZE(subdirs); s++) {
		_cleanup_free_ char *d = path_join(dir, subdirs[s]);
		DIR *dh = opendir(d);
		if (!dh) {
			fprintf(stderr, "  '%s' has no '%s'\n", tar, subdirs[s]);
			goto out;
		}
		struct dirent *de;
		while ((de = readdir(dh))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			_cleanup_free_ char *name =
				*subdirs[s] ? xasprintf("%s/%s", subdirs[s], de->d_name)
					    : xstrdup(de->d_name);
			bool is_dir = (s == 0 && !strcmp(name, "blobs")) ||
				      (s == 1 && !strcmp(name, "blobs/sha256"));
			if (!is_dir)
				add_member(l, dir, name);
		}
		closedir(dh);
	}
	ret = 0;
out:
	if (dir)
		rm_rf(dir, NULL);
	return ret;
}

static const struct member *layout_get(const struct layout *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->m[i].name, name))
			return &l->m[i];
	return NULL;
}

static const struct member *layout_blob(const struct layout *l, const char *digest)
{
	if (!digest || strncmp(digest, "sha256:", 7) != 0)
		return NULL;
	char name[96];
	snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
	return layout_get(l, name);
}

/* Shared state: a temp dir with the download cache, removed at exit. */
static struct {
	char *dir;
	char *cache;
	char *out; /* where tars go: IMGF_TEST_KEEP or dir */
	struct imgf_fetch_opts opts;
} env;

static void env_cleanup(void)
{
	if (env.dir)
		rm_rf(env.dir, NULL);
	free(env.dir);
	free(env.cache);
	free(env.out);
}

static const struct imgf_fetch_opts *env_opts(void)
{
	if (!env.dir) {
		struct imgf_error *err = NULL;
		if (make_temp_dir("imgf-test-registry", &env.dir, &err) < 0) {
			fprintf(stderr, "  %s\n", err->msg);
			abort();
		}
		env.cache = path_join(env.dir, "cache");
		const char *keep = getenv("IMGF_TEST_KEEP");
		env.out = xstrdup(keep && *keep ? keep : env.dir);
		if (mkdir_p(env.out, 0755, &err) < 0) {
			fprintf(stderr, "  %s\n", err->msg);
			abort();
		}
		env.opts.cache_dir = env.cache;
		env.opts.max_attempts = 3;
		env.opts.retry_base_ms = 20;
		env.opts.parallel = 1;
		atexit(env_cleanup);
	}
	return &env.opts;
}

/* The fixture registry's host:port, or NULL with the test marked skipped (the caller returns). */
static const char *registry(const char *var)
{
	static char why[160];
	const char *r = getenv(var);
	if (r && *r)
		return r;
	snprintf(why, sizeof(why),
		 "needs %s (host:port of the fixture registry; "
		 "tests/integration/t0400-registry-pull.sh sets it)",
		 var);
	test_skip_reason = why;
	return NULL;
}

static char *out_path(const char *name)
{
	env_opts();
	return xasprintf("%s/%s", env.out, name);
}

/* The digest of a member must be its name; returns the manifest's parsed JSON. */
static void check_blob(const struct layout *l, const char *digest, json_int_t size)
{
	const struct member *b = layout_blob(l, digest);
	CHECK(b != NULL);
	if (!b) {
		fprintf(stderr, "  blob %s missing\n", digest ? digest : "(null)");
		return;
	}
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, b->data, b->len, hex);
	CHECK_STR(hex, digest + 7);
	if (size >= 0)
		CHECK((json_int_t)b->len == size);
}

/*
 * Check an OCI layout tar: oci-layout, index.json naming `name` (and `tag`), one manifest
 * of `media_type` whose config (for linux/`arch`) and layers are all present and verified.
 */
static void check_layout(const char *tar, const char *name, const char *tag, const char *media_type,
			 const char *arch, const char *manifest_digest)
{
	struct layout l;
	CHECK(layout_read(tar, &l) == 0);
	const struct member *ol = layout_get(&l, "oci-layout");
	CHECK(ol != NULL);
	if (ol) {
		json_t *j = json_loads(ol->data, 0, NULL);
		CHECK_STR(json_string_value(json_object_get(j, "imageLayoutVersion")), "1.0.0");
		json_decref(j);
	}
	const struct member *ix = layout_get(&l, "index.json");
	CHECK(ix != NULL);
	json_t *index = ix ? json_loads(ix->data, 0, NULL) : NULL;
	CHECK(json_integer_value(json_object_get(index, "schemaVersion")) == 2);
	json_t *list = json_object_get(index, "manifests");
	CHECK(json_array_size(list) == 1);
	json_t *d = json_array_get(list, 0);
	json_t *ann = json_object_get(d, "annotations");
	CHECK_STR(json_string_value(json_object_get(ann, "io.containerd.image.name")), name);
	if (tag)
		CHECK_STR(json_string_value(
				  json_object_get(ann, "org.opencontainers.image.ref.name")),
			  tag);
	else
		CHECK(json_object_get(ann, "org.opencontainers.image.ref.name") == NULL);
	CHECK_STR(json_string_value(json_object_get(d, "mediaType")), media_type);
	const char *mdigest = json_string_value(json_object_get(d, "digest"));
	CHECK_STR(mdigest, manifest_digest);
	check_blob(&l, mdigest, json_integer_value(json_object_get(d, "size")));

	const struct member *mb = layout_blob(&l, mdigest);
	json_t *manifest = mb ? json_loadb(mb->data, mb->len, 0, NULL) : NULL;
	CHECK(json_is_object(manifest));
	json_t *cfg = json_object_get(manifest, "config");
	const char *cdigest = json_string_value(json_object_get(cfg, "digest"));
	check_blob(&l, cdigest, json_integer_value(json_object_get(cfg, "size")));
	size_t i, nblobs = 2;
	json_t *layer;
	json_array_foreach(json_object_get(manifest, "layers"), i, layer)
	{
		check_blob(&l, json_string_value(json_object_get(layer, "digest")),
			   json_integer_value(json_object_get(layer, "size")));
		nblobs++;
	}
	CHECK(i >= 1);
	/* nothing else: oci-layout, index.json and the blobs */
	CHECK(l.n == nblobs + 2);
	const struct member *cb = layout_blob(&l, cdigest);
	json_t *config = cb ? json_loadb(cb->data, cb->len, 0, NULL) : NULL;
	CHECK_STR(json_string_value(json_object_get(config, "architecture")), arch);
	CHECK_STR(json_string_value(json_object_get(config, "os")), "linux");
	json_decref(config);
	json_decref(manifest);
	json_decref(index);
	layout_release(&l);
}

static int pull(const char *ref, const char *arch, const char *out, char digest[72],
		struct imgf_error **err)
{
	int r = imgf_registry_pull_oci(ref, NULL, arch, env_opts(), out, digest, err);
	if (r < 0 && !err)
		fprintf(stderr, "  pull '%s' failed\n", ref);
	return r;
}

#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

static void expect_ok(int r, struct imgf_error *err)
{
	CHECK(r == 0);
	if (err)
		fprintf(stderr, "  unexpected error: %s\n", err->msg);
}

TEST(pull_index_picks_amd64)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *ref = xasprintf("%s/pause:3.10", reg);
	_cleanup_free_ char *out = out_path("pause.tar");
	char digest[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(pull(ref, "amd64", out, digest, &err), err);
	imgf_error_free(err);
	CHECK(strncmp(digest, "sha256:", 7) == 0 && strlen(digest) == 71);
	check_layout(out, ref, "3.10", OCI_MANIFEST, "amd64", digest);
}

TEST(pull_index_picks_arm64_ignoring_variant)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *ref = xasprintf("%s/pause:3.10", reg);
	_cleanup_free_ char *out = out_path("pause-arm64.tar");
	char digest[72] = "", amd[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(pull(ref, "arm64", out, digest, &err), err);
	imgf_error_free(err);
	check_layout(out, ref, "3.10", OCI_MANIFEST, "arm64", digest);
	/* a different manifest from the amd64 one */
	_cleanup_free_ char *out2 = out_path("pause-amd64-again.tar");
	CHECK(pull(ref, "amd64", out2, amd, NULL) == 0);
	CHECK(strcmp(digest, amd) != 0);
}

TEST(pull_docker_schema2_manifest)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *ref = xasprintf("%s/etcd:3.5.15-0", reg);
	_cleanup_free_ char *out = out_path("etcd.tar");
	char digest[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(pull(ref, "amd64", out, digest, &err), err);
	imgf_error_free(err);
	check_layout(out, ref, "3.5.15-0", DOCKER_MANIFEST, "amd64", digest);
}

TEST(pull_nested_repository)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *ref = xasprintf("%s/coredns/coredns:v1.11.3", reg);
	_cleanup_free_ char *out = out_path("coredns.tar");
	char digest[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(pull(ref, "amd64", out, digest, &err), err);
	imgf_error_free(err);
	check_layout(out, ref, "v1.11.3", OCI_MANIFEST, "amd64", digest);
}

/* A mirror serves the image; the layout still names it by its canonical reference. */
TEST(pull_through_a_mirror_keeps_the_canonical_name)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	const char *ref = "registry.k8s.io/coredns/coredns:v1.11.3";
	_cleanup_free_ char *out = out_path("mirrored.tar");
	char digest[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(imgf_registry_pull_oci(ref, reg, "amd64", env_opts(), out, digest, &err), err);
	imgf_error_clear(&err);
	check_layout(out, ref, "v1.11.3", OCI_MANIFEST, "amd64", digest);

	/* A path under the mirror is a prefix of the repository: nothing is there. */
	_cleanup_free_ char *prefixed = xasprintf("%s/nothing-here", reg);
	CHECK(imgf_registry_pull_oci(ref, prefixed, "amd64", env_opts(), out, digest, &err) < 0);
	CHECK(err && strstr(err->msg, "nothing-here/coredns/coredns"));
	imgf_error_clear(&err);
}

TEST(mirror_syntax_is_checked)
{
	char *why = NULL;
	CHECK(imgf_registry_mirror_valid("127.0.0.1:5000", &why));
	CHECK(imgf_registry_mirror_valid("mirror.example/registry.k8s.io", &why));
	CHECK(imgf_registry_mirror_valid("[::1]:5000/a/b", &why));
	CHECK(!imgf_registry_mirror_valid("mirror.example:0", &why));
	CHECK_STR(why, "invalid registry port '0'");
	free(why);
	why = NULL;
	CHECK(!imgf_registry_mirror_valid("mirror.example/Upper", &why));
	CHECK_STR(why, "invalid path 'Upper' in registry mirror 'mirror.example/Upper'");
	free(why);
	why = NULL;
	CHECK(!imgf_registry_mirror_valid("mirror.example/a//b", &why));
	free(why);
	why = NULL;
	CHECK(!imgf_registry_mirror_valid("bad host", &why));
	free(why);
	why = NULL;

	char d[72];
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = out_path("never.tar");
	CHECK(imgf_registry_pull_oci("registry.k8s.io/pause:3.10", "mirror:99999", "amd64",
				     env_opts(), out, d, &err) < 0);
	CHECK_ERR(err, "pull 'registry.k8s.io/pause:3.10': invalid registry port '99999'");
	imgf_error_clear(&err);
	CHECK(access(out, F_OK) != 0);
}

/* The cache paths of a layout's config and layers. */
static char **cached_blobs(const char *tar)
{
	struct layout l;
	char **paths = NULL;
	if (layout_read(tar, &l) < 0)
		return NULL;
	for (size_t i = 0; i < l.n; i++) {
		const char *n = l.m[i].name;
		if (strncmp(n, "blobs/sha256/", 13) != 0)
			continue;
		_cleanup_free_ char *p = xasprintf("%s/downloads/sha256/%s", env.cache, n + 13);
		if (access(p, F_OK) == 0)
			paths = strv_push(paths, STEAL_POINTER(&p));
	}
	layout_release(&l);
	return paths;
}

TEST(second_pull_uses_the_cache)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *ref = xasprintf("%s/kindest/kindnetd:v20241108-5c6d2daf", reg);
	_cleanup_free_ char *out1 = out_path("kindnetd-1.tar");
	_cleanup_free_ char *out2 = out_path("kindnetd-2.tar");
	char d1[72] = "", d2[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(pull(ref, "amd64", out1, d1, &err), err);
	imgf_error_clear(&err);
	_cleanup_strv_ char **blobs = cached_blobs(out1);
	CHECK(strv_len(blobs) == 2); /* config and the one layer */
	struct stat before[2], after;
	for (size_t i = 0; i < 2 && i < strv_len(blobs); i++)
		CHECK(stat(blobs[i], &before[i]) == 0);
	expect_ok(pull(ref, "amd64", out2, d2, &err), err);
	imgf_error_clear(&err);
	CHECK_STR(d1, d2);
	/* the same files: a download would have renamed a new one into place */
	for (size_t i = 0; i < 2 && i < strv_len(blobs); i++) {
		CHECK(stat(blobs[i], &after) == 0);
		CHECK(after.st_ino == before[i].st_ino);
		CHECK(after.st_mtime == before[i].st_mtime);
	}
}

TEST(corrupt_cached_blob_is_fetched_again)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *ref =
		xasprintf("%s/kindest/local-path-helper:v20241108-5c6d2daf", reg);
	_cleanup_free_ char *out = out_path("local-path-helper.tar");
	char d[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(pull(ref, "amd64", out, d, &err), err);
	imgf_error_clear(&err);
	_cleanup_strv_ char **blobs = cached_blobs(out);
	CHECK(strv_len(blobs) == 2);
	for (size_t i = 0; blobs && blobs[i]; i++) {
		/* same size, different bytes (cached files are read-only) */
		CHECK(chmod(blobs[i], 0644) == 0);
		FILE *f = fopen(blobs[i], "r+");
		CHECK(f != NULL);
		if (f) {
			fputc('X', f);
			fclose(f);
		}
	}
	expect_ok(pull(ref, "amd64", out, d, &err), err);
	imgf_error_clear(&err);
	for (size_t i = 0; blobs && blobs[i]; i++) {
		char hex[IMGF_DIGEST_HEX_MAX];
		CHECK(imgf_digest_file(blobs[i], IMGF_SHA256, hex, NULL) == 0);
		CHECK_STR(hex, path_basename(blobs[i]));
	}
}

TEST(pull_by_digest)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *tagged =
		xasprintf("%s/kindest/local-path-provisioner:v20241108-5c6d2daf", reg);
	_cleanup_free_ char *out = out_path("lpp.tar");
	char d[72] = "", d2[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(pull(tagged, "amd64", out, d, &err), err);
	imgf_error_clear(&err);

	/* name@digest: no tag, named by the digest */
	_cleanup_free_ char *bydigest = xasprintf("%s/kindest/local-path-provisioner@%s", reg, d);
	expect_ok(pull(bydigest, "amd64", out, d2, &err), err);
	imgf_error_clear(&err);
	CHECK_STR(d2, d);
	check_layout(out, bydigest, NULL, OCI_MANIFEST, "amd64", d);

	/* name:tag@digest: the pin wins (and names the image NAME:TAG), a wrong pin fails */
	_cleanup_free_ char *pinned = xasprintf("%s@%s", tagged, d);
	expect_ok(pull(pinned, "amd64", out, d2, &err), err);
	imgf_error_clear(&err);
	/* stored as NAME:TAG: the pin is verified, not kept in the name */
	check_layout(out, tagged, "v20241108-5c6d2daf", OCI_MANIFEST, "amd64", d);
	_cleanup_free_ char *wrong =
		xasprintf("%s@sha256:%064d", tagged, 0); /* a digest nothing has */
	_cleanup_free_ char *out3 = out_path("never.tar");
	CHECK(pull(wrong, "amd64", out3, d2, &err) < 0);
	CHECK_ERR(err, "pull '");
	CHECK_ERR(err, "HTTP 404");
	imgf_error_clear(&err);
	CHECK(access(out3, F_OK) < 0);
}

TEST(pull_errors_are_precise)
{
	const char *reg = registry("IMGF_TEST_REGISTRY");
	if (!reg)
		return;
	_cleanup_free_ char *out = out_path("error.tar");
	char d[72];
	struct imgf_error *err = NULL;

	_cleanup_free_ char *pause = xasprintf("%s/pause:3.10", reg);
	CHECK(pull(pause, "s390x", out, d, &err) < 0);
	CHECK_ERR(err, "no manifest for linux/s390x in");
	CHECK_ERR(err, "available: linux/amd64, linux/arm64/v8");
	imgf_error_clear(&err);

	_cleanup_free_ char *etcd = xasprintf("%s/etcd:3.5.15-0", reg);
	CHECK(pull(etcd, "arm64", out, d, &err) < 0);
	CHECK_ERR(err, "is for linux/amd64, not linux/arm64");
	imgf_error_clear(&err);

	_cleanup_free_ char *missing = xasprintf("%s/pause:no-such-tag", reg);
	CHECK(pull(missing, "amd64", out, d, &err) < 0);
	CHECK_ERR(err, "HTTP 404 (MANIFEST_UNKNOWN");
	imgf_error_clear(&err);

	_cleanup_free_ char *norepo = xasprintf("%s/no/such/repo:1", reg);
	CHECK(pull(norepo, "amd64", out, d, &err) < 0);
	CHECK_ERR(err, "HTTP 404");
	imgf_error_clear(&err);
	CHECK(access(out, F_OK) < 0);
}

TEST(pull_with_bearer_token_and_redirects)
{
	const char *reg = registry("IMGF_TEST_AUTH_REGISTRY");
	if (!reg)
		return;
	/* a fresh cache, so every blob goes through the 503, the token and the redirect */
	struct imgf_fetch_opts o = *env_opts();
	_cleanup_free_ char *cache = path_join(env.dir, "cache-auth");
	o.cache_dir = cache;
	_cleanup_free_ char *ref = xasprintf("%s/pause:3.10", reg);
	_cleanup_free_ char *out = out_path("pause-auth.tar");
	char d[72] = "";
	struct imgf_error *err = NULL;
	expect_ok(imgf_registry_pull_oci(ref, NULL, "amd64", &o, out, d, &err), err);
	imgf_error_clear(&err);
	check_layout(out, ref, "3.10", OCI_MANIFEST, "amd64", d);
}

TEST(bad_reference_is_reported)
{
	char d[72];
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = out_path("bad.tar");
	CHECK(pull("Registry.k8s.io:x/pause", "amd64", out, d, &err) < 0);
	CHECK_ERR(err,
		  "invalid image reference 'Registry.k8s.io:x/pause': invalid registry port 'x'");
	imgf_error_clear(&err);
}

TEST(unreachable_registry_fails_after_retries)
{
	char d[72];
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = out_path("unreachable.tar");
	/* port 1 on loopback: nothing listens, so the connection is refused at once */
	CHECK(pull("127.0.0.1:1/pause:3.10", "amd64", out, d, &err) < 0);
	CHECK_ERR(
		err,
		"pull '127.0.0.1:1/pause:3.10': GET 'http://127.0.0.1:1/v2/pause/manifests/3.10'");
	CHECK_ERR(err, "(after retries)");
	imgf_error_clear(&err);
	CHECK(access(out, F_OK) < 0);
}

TEST(interrupt_stops_a_pull)
{
	char d[72];
	struct imgf_error *err = NULL;
	_cleanup_free_ char *out = out_path("interrupted.tar");
	imgf_interrupted = 1;
	CHECK(pull("127.0.0.1:1/pause:3.10", "amd64", out, d, &err) < 0);
	imgf_interrupted = 0;
	CHECK_ERR(err, "interrupted");
	CHECK(err && err->status == IMGF_EXIT_INTERRUPTED);
	imgf_error_clear(&err);
}
