/*
 * The registry push client: challenge parsing, docker config credentials, the upload and
 * mount URLs, the index JSON; and the request sequences against tests/lib/fakeregistry.py on
 * loopback: a bearer token asked for once with every scope, blobs uploaded only when the
 * registry lacks them, mounted when a mount_from repository has them, the manifest last, the
 * index over two platforms; basic credentials refused or missing; an archive whose layer does
 * not match its config's diff_ids sends nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "archive.h"
#include "base64.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "http.h"
#include "regauth.h"
#include "registry.h"
#include "regpush.h"
#include "strbuf.h"
#include "util.h"

#include "httpd.h"
#include "test.h"

static char *root;

static void tmp_remove(void)
{
	rm_rf(root, NULL);
	free(root);
}

static const char *tmp_root(void)
{
	if (!root) {
		CHECK(make_temp_dir("test-regpush", &root, NULL) == 0);
		atexit(tmp_remove);
	}
	return root;
}

TEST(challenge_parse)
{
	struct imgf_reg_challenge ch;
	CHECK(imgf_reg_challenge_parse(
		      "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
		      "scope=\"repository:library/x:pull,push\"",
		      &ch) == 0);
	CHECK_STR(ch.scheme, "Bearer");
	CHECK_STR(ch.realm, "https://auth.docker.io/token");
	CHECK_STR(ch.service, "registry.docker.io");
	CHECK_STR(ch.scope, "repository:library/x:pull,push");
	imgf_reg_challenge_release(&ch);

	CHECK(imgf_reg_challenge_parse("Basic realm=\"Registry \\\"Realm\\\"\"", &ch) == 0);
	CHECK_STR(ch.scheme, "Basic");
	CHECK_STR(ch.realm, "Registry \"Realm\"");
	CHECK(ch.service == NULL && ch.scope == NULL);
	imgf_reg_challenge_release(&ch);

	CHECK(imgf_reg_challenge_parse("Bearer realm=https://a/t, service=s", &ch) == 0);
	CHECK_STR(ch.realm, "https://a/t");
	CHECK_STR(ch.service, "s");
	imgf_reg_challenge_release(&ch);

	CHECK(imgf_reg_challenge_parse("Bearer realm=\"https://a/t", &ch) < 0);
	CHECK(ch.scheme == NULL);
	CHECK(imgf_reg_challenge_parse("", &ch) < 0);
	CHECK(imgf_reg_challenge_parse("Bearer realm", &ch) < 0);
}

static char *write_tmp(const char *name, const char *text)
{
	char *p = path_join(tmp_root(), name);
	CHECK(write_file_atomic(p, text, strlen(text), 0600, NULL) == 0);
	return p;
}

TEST(auth_lookup)
{
	_cleanup_free_ char *up = imgf_base64_encode("u:p:w", 5);
	_cleanup_free_ char *text = xasprintf(
		"{\"auths\": {\"127.0.0.1:5000\": {\"auth\": \"%s\"},"
		" \"https://index.docker.io/v1/\": {\"username\": \"hub\", \"password\": \"pw\"},"
		" \"bad.example\": {\"auth\": \"bm9jb2xvbg==\"},"
		" \"tok.example\": {\"identitytoken\": \"x\"}},"
		" \"credHelpers\": {\"gcr.io\": \"gcloud\"}}",
		up);
	_cleanup_free_ char *path = write_tmp("config.json", text);
	char *u = NULL, *p = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_reg_auth_lookup(path, "127.0.0.1:5000", &u, &p, &err) == 1);
	CHECK_STR(u, "u");
	CHECK_STR(p, "p:w");
	free(u);
	free(p);
	CHECK(imgf_reg_auth_lookup(path, "docker.io", &u, &p, &err) == 1);
	CHECK_STR(u, "hub");
	CHECK_STR(p, "pw");
	free(u);
	free(p);
	CHECK(imgf_reg_auth_lookup(path, "127.0.0.1:5001", &u, &p, &err) == 0);
	CHECK(u == NULL && p == NULL && err == NULL);
	CHECK(imgf_reg_auth_lookup(path, "bad.example", &u, &p, &err) < 0);
	CHECK_ERR(err, "auths.'bad.example'.auth is not base64 of 'USER:PASSWORD'");
	imgf_error_clear(&err);
	CHECK(imgf_reg_auth_lookup(path, "tok.example", &u, &p, &err) < 0);
	CHECK_ERR(err, "identitytoken");
	imgf_error_clear(&err);
	CHECK(imgf_reg_auth_lookup(path, "gcr.io", &u, &p, &err) < 0);
	CHECK_ERR(err, "credential helper 'gcloud'");
	imgf_error_clear(&err);
	_cleanup_free_ char *store = write_tmp("store.json", "{\"credsStore\": \"desktop\"}");
	CHECK(imgf_reg_auth_lookup(store, "r.example", &u, &p, &err) < 0);
	CHECK_ERR(err, "credentials store 'desktop' is not supported");
	imgf_error_clear(&err);
	_cleanup_free_ char *broken = write_tmp("broken.json", "{\"auths\": ");
	CHECK(imgf_reg_auth_lookup(broken, "x", &u, &p, &err) < 0);
	CHECK_ERR(err, "not a JSON object");
	imgf_error_clear(&err);
}

TEST(upload_and_mount_urls)
{
	const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	_cleanup_free_ char *rel = imgf_reg_upload_url("http://127.0.0.1:5000",
						       "/v2/a/b/blobs/uploads/u1?_state=xy", d);
	CHECK_STR(rel, "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1?_state=xy&digest=sha256%3a"
		       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	_cleanup_free_ char *abs =
		imgf_reg_upload_url("https://r.example", "https://blob.example/up/1", d);
	CHECK_STR(abs, "https://blob.example/up/1?digest=sha256%3a0123456789abcdef0123456789abcdef"
		       "0123456789abcdef0123456789abcdef");
	_cleanup_free_ char *plain = imgf_reg_upload_url("https://r.example", "/x?y=1", NULL);
	CHECK_STR(plain, "https://r.example/x?y=1");
	_cleanup_free_ char *mount =
		imgf_reg_mount_url("https://r.example", "kind/node", d, "base");
	CHECK_STR(mount,
		  "https://r.example/v2/kind/node/blobs/uploads/?mount=sha256:0123456789abcdef"
		  "0123456789abcdef0123456789abcdef0123456789abcdef&from=base");
	_cleanup_free_ char *post = imgf_reg_mount_url("https://r.example", "kind/node", d, NULL);
	CHECK_STR(post, "https://r.example/v2/kind/node/blobs/uploads/");
}

TEST(index_json)
{
	struct imgf_index_entry e[] = {
		{"application/vnd.oci.image.manifest.v1+json", "sha256:aa", 10, "linux", "amd64",
		 NULL},
		{"application/vnd.oci.image.manifest.v1+json", "sha256:bb", 20, "linux", "arm64",
		 "v8"},
	};
	struct imgf_error *err = NULL;
	_cleanup_free_ char *j = imgf_reg_index_json(e, 2, &err);
	CHECK_STR(
		j,
		"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
		"\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		"\"digest\":\"sha256:aa\",\"size\":10,\"platform\":{\"architecture\":\"amd64\","
		"\"os\":\"linux\"}},{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		"\"digest\":\"sha256:bb\",\"size\":20,\"platform\":{\"architecture\":\"arm64\","
		"\"os\":\"linux\",\"variant\":\"v8\"}}]}");
	e[1].architecture = "amd64";
	e[1].variant = NULL;
	CHECK(imgf_reg_index_json(e, 2, &err) == NULL);
	CHECK_ERR(err, "images 1 (sha256:aa) and 2 (sha256:bb) are both for linux/amd64");
	imgf_error_clear(&err);
}

TEST(repository_names)
{
	CHECK(imgf_reg_repository_valid("kind/node"));
	CHECK(imgf_reg_repository_valid("a"));
	CHECK(!imgf_reg_repository_valid("Kind/node"));
	CHECK(!imgf_reg_repository_valid("a//b"));
	CHECK(!imgf_reg_repository_valid("a:b"));
	CHECK(!imgf_reg_repository_valid(""));
}

/* ---- against the fake registry ---- */

/* A docker-save archive of one image: one layer holding `content`, for `arch`. With `lie`,
 * the config's diff_id is not the layer's. *id gets the image ID. */
static char *make_archive(const char *name, const char *content, const char *arch, bool lie,
			  char id[72])
{
	_cleanup_free_ char *layer = xasprintf("%s/%s.layer.tar", tmp_root(), name);
	struct imgf_tar *t = imgf_tar_open(layer, NULL);
	CHECK(t &&
	      imgf_tar_add_data(t, content, strlen(content), "etc/content", 0644, 0, 0, NULL) == 0);
	CHECK(imgf_tar_close(t, NULL) == 0);
	imgf_tar_free(t);
	char hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(layer, IMGF_SHA256, hex, NULL) == 0);
	_cleanup_free_ char *config = xasprintf(
		"{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{},"
		"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:%s\"]}}",
		arch,
		lie ? "0000000000000000000000000000000000000000000000000000000000000000" : hex);
	char chex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, config, strlen(config), chex);
	snprintf(id, 72, "sha256:%.64s", chex);
	_cleanup_free_ char *cname = xasprintf("%.64s.json", chex);
	_cleanup_free_ char *lname = xasprintf("%.64s/layer.tar", hex);
	_cleanup_free_ char *manifest = xasprintf(
		"[{\"Config\":\"%s\",\"RepoTags\":null,\"Layers\":[\"%s\"]}]", cname, lname);
	char *out = xasprintf("%s/%s.tar", tmp_root(), name);
	t = imgf_tar_open(out, NULL);
	CHECK(t != NULL);
	CHECK(imgf_tar_add_data(t, config, strlen(config), cname, 0644, 0, 0, NULL) == 0);
	CHECK(imgf_tar_add_file(t, layer, lname, 0644, 0, 0, NULL) == 0);
	CHECK(imgf_tar_add_data(t, manifest, strlen(manifest), "manifest.json", 0644, 0, 0, NULL) ==
	      0);
	CHECK(imgf_tar_close(t, NULL) == 0);
	imgf_tar_free(t);
	return out;
}

struct fake {
	struct test_httpd srv;
	char *log;
	char *host; /* "127.0.0.1:PORT" */
};

static int fake_start_args(struct fake *f, const char *auth, const char *user, const char *pw,
			   const char *more)
{
	static int n;
	f->log = xasprintf("%s/registry-%d.log", tmp_root(), ++n);
	const char *args[12] = {"--log", f->log, "--auth", auth};
	size_t i = 4;
	if (more) {
		args[i++] = "--fail-puts";
		args[i++] = more;
	}
	if (user) {
		args[i++] = "--user";
		args[i++] = user;
		args[i++] = "--password";
		args[i++] = pw;
	}
	if (test_pyserver_start(&f->srv, "fakeregistry.py", args) < 0)
		return -1;
	f->host = xasprintf("127.0.0.1:%d", f->srv.port);
	return 0;
}

static int fake_start(struct fake *f, const char *auth, const char *user, const char *pw)
{
	return fake_start_args(f, auth, user, pw, NULL);
}

static void fake_stop(struct fake *f)
{
	test_httpd_stop(&f->srv);
	free(f->log);
	free(f->host);
}

/* The log's lines since the last call, as "METHOD PATH-WITHOUT-QUERY STATUS", one string. */
static char *log_take(struct fake *f)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (read_file(f->log, 0, &data, &len, NULL) < 0)
		return xstrdup("");
	if (truncate(f->log, 0) < 0)
		CHECK(0);
	struct strbuf sb = STRBUF_INIT;
	for (char *line = data; *line;) {
		char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		_cleanup_free_ char *l = xstrndup(line, n);
		char *sp1 = strchr(l, ' ');
		char *sp2 = sp1 ? strrchr(l, ' ') : NULL;
		if (sp1 && sp2 > sp1) {
			*sp2 = '\0';
			char *q = strchr(sp1 + 1, '?');
			/* Keep what says which upload or mount it was, not the session names. */
			bool keep = q && (strstr(q, "mount=") || !strncmp(l, "GET /token", 10));
			if (q && !keep)
				*q = '\0';
			char *u = strstr(l, "/uploads/");
			if (u && strlen(u + 9) >= 4 && u[9] != '?')
				memcpy(u + 9, "UUID", 5); /* session names are longer */
			strbuf_addf(&sb, "%s %s\n", l, sp2 + 1);
		}
		line += n + (nl ? 1 : 0);
	}
	return strbuf_detach(&sb, NULL);
}

static size_t count(const char *log, const char *needle)
{
	size_t n = 0;
	for (const char *p = log; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

TEST(push_bearer_sequence)
{
	struct fake f;
	if (fake_start(&f, "bearer", "u", "secret") < 0) {
		CHECK(0);
		return;
	}
	_cleanup_free_ char *auth = imgf_base64_encode("u:secret", 8);
	_cleanup_free_ char *cj = xasprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", f.host, auth);
	_cleanup_free_ char *cfg = write_tmp("bearer.json", cj);
	struct imgf_push_opts o = {.auth_file = cfg, .max_attempts = 1};
	char id[72], digest[72];
	_cleanup_free_ char *tar = make_archive("amd", "hello amd64\n", "amd64", false, id);
	_cleanup_free_ char *ref = xasprintf("%s/kind/node:v1", f.host);
	_cleanup_free_ char *work = path_join(tmp_root(), "work1");
	CHECK(mkdir_p(work, 0700, NULL) == 0);
	struct imgf_push_stats st;
	struct imgf_error *err = NULL;
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, &st, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK(st.blobs == 2 && st.uploaded == 2 && st.existed == 0 && st.mounted == 0);
	_cleanup_free_ char *log = log_take(&f);
	/* The first request is challenged, the token asked once for pull and push. */
	CHECK(!strncmp(log, "HEAD /v2/kind/node/blobs/sha256:", 32));
	CHECK(strstr(log, " 401\nGET /token?service=fake&scope=repository%3Akind%2Fnode%3Apull%"
			  "2Cpush 200\nHEAD /v2/kind/node/blobs/") != NULL);
	CHECK(count(log, "GET /token") == 1);
	CHECK(count(log, "POST /v2/kind/node/blobs/uploads/ 202") == 2);
	CHECK(count(log, "PUT /v2/kind/node/blobs/uploads/UUID 201") == 2);
	/* The manifest goes last. */
	const char *m = strstr(log, "PUT /v2/kind/node/manifests/v1 201\n");
	CHECK(m && m[strlen("PUT /v2/kind/node/manifests/v1 201\n")] == '\0');

	/* Again: every blob is there, only HEADs and the manifest. */
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, &st, &err) == 0);
	CHECK(st.blobs == 2 && st.existed == 2 && st.uploaded == 0);
	free(log);
	log = log_take(&f);
	CHECK(count(log, "POST") == 0 && count(log, "uploads") == 0);
	CHECK(count(log, "HEAD /v2/kind/node/blobs/sha256:") == 3); /* one challenged */
	CHECK(count(log, "PUT /v2/kind/node/manifests/v1 201") == 1);

	/* Into another repository: mounted from the first, nothing uploaded. */
	o.mount_from = "kind/node";
	_cleanup_free_ char *ref2 = xasprintf("%s/team/node:v1", f.host);
	CHECK(imgf_registry_push_archive(tar, id, ref2, work, &o, digest, &st, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK(st.mounted == 2 && st.uploaded == 0);
	free(log);
	log = log_take(&f);
	CHECK(strstr(log, "scope=repository%3Ateam%2Fnode%3Apull%2Cpush&scope=repository%3Akind%"
			  "2Fnode%3Apull 200") != NULL);
	CHECK(count(log, "POST /v2/team/node/blobs/uploads/?mount=sha256:") == 2);
	CHECK(count(log, "&from=kind/node 201") == 2);
	CHECK(count(log, "PUT /v2/team/node/blobs/uploads") == 0);

	/* An arm64 image, then the index of both; the arm64 one in another repository. */
	o.mount_from = NULL;
	char id2[72], digest2[72], idx[72];
	_cleanup_free_ char *tar2 = make_archive("arm", "hello arm64\n", "arm64", false, id2);
	_cleanup_free_ char *ref3 = xasprintf("%s/kind/node-arm64:v1", f.host);
	CHECK(imgf_registry_push_archive(tar2, id2, ref3, work, &o, digest2, &st, &err) == 0);
	free(log);
	log = log_take(&f);
	_cleanup_free_ char *iref = xasprintf("%s/kind/node:multi", f.host);
	const char *imgs[] = {ref, ref3, NULL};
	CHECK(imgf_registry_push_index(iref, imgs, &o, idx, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	free(log);
	log = log_take(&f);
	/* The arm64 manifest is brought into kind/node (its blobs mounted), then the index. */
	CHECK(count(log, "POST /v2/kind/node/blobs/uploads/?mount=") == 2);
	_cleanup_free_ char *put_arm = xasprintf("PUT /v2/kind/node/manifests/%s 201", digest2);
	CHECK(strstr(log, put_arm) != NULL);
	m = strstr(log, "PUT /v2/kind/node/manifests/multi 201\n");
	CHECK(m && m[strlen("PUT /v2/kind/node/manifests/multi 201\n")] == '\0');

	/* Two images of one platform make no index. */
	const char *same[] = {ref, ref2, NULL};
	CHECK(imgf_registry_push_index(iref, same, &o, idx, &err) < 0);
	CHECK_ERR(err, "are both for linux/amd64");
	imgf_error_clear(&err);
	fake_stop(&f);
}

TEST(push_basic_auth)
{
	struct fake f;
	if (fake_start(&f, "basic", "u", "right") < 0) {
		CHECK(0);
		return;
	}
	char id[72], digest[72];
	_cleanup_free_ char *tar = make_archive("basic", "basic\n", "amd64", false, id);
	_cleanup_free_ char *ref = xasprintf("%s/b/node:v1", f.host);
	_cleanup_free_ char *work = path_join(tmp_root(), "work2");
	CHECK(mkdir_p(work, 0700, NULL) == 0);
	struct imgf_error *err = NULL;

	/* No credentials at all. */
	_cleanup_free_ char *none = write_tmp("none.json", "{\"auths\":{}}");
	struct imgf_push_opts o = {.auth_file = none, .max_attempts = 1};
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, NULL, &err) < 0);
	CHECK_ERR(err, "asks for a user and password");
	CHECK_ERR(err, "none.json");
	imgf_error_clear(&err);

	/* Wrong ones. */
	_cleanup_free_ char *bad = imgf_base64_encode("u:wrong", 7);
	_cleanup_free_ char *bj =
		xasprintf("{\"auths\":{\"http://%s\":{\"auth\":\"%s\"}}}", f.host, bad);
	_cleanup_free_ char *badf = write_tmp("wrong.json", bj);
	o.auth_file = badf;
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, NULL, &err) < 0);
	CHECK_ERR(err, "HTTP 401: the registry refused the credentials of user 'u'");
	imgf_error_clear(&err);

	/* Right ones. */
	_cleanup_free_ char *good = imgf_base64_encode("u:right", 7);
	_cleanup_free_ char *gj = xasprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", f.host, good);
	_cleanup_free_ char *goodf = write_tmp("right.json", gj);
	o.auth_file = goodf;
	free(log_take(&f));
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, NULL, &err) == 0);
	_cleanup_free_ char *log = log_take(&f);
	CHECK(count(log, " 401\n") == 1); /* only the first request is challenged */
	CHECK(count(log, "PUT /v2/b/node/manifests/v1 201") == 1);
	fake_stop(&f);
}

TEST(push_starts_an_upload_over_when_its_put_fails)
{
	struct fake f;
	if (fake_start_args(&f, "none", NULL, NULL, "1") < 0) {
		CHECK(0);
		return;
	}
	char id[72], digest[72];
	_cleanup_free_ char *tar = make_archive("retry", "retry\n", "amd64", false, id);
	_cleanup_free_ char *ref = xasprintf("%s/r/node:v1", f.host);
	_cleanup_free_ char *work = path_join(tmp_root(), "work5");
	CHECK(mkdir_p(work, 0700, NULL) == 0);
	struct imgf_push_opts o = {.max_attempts = 2, .retry_base_ms = 1};
	struct imgf_push_stats st;
	struct imgf_error *err = NULL;
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, &st, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK(st.uploaded == 2);
	_cleanup_free_ char *log = log_take(&f);
	/* The first PUT fails: a new session (POST) and PUT; three of each in all. */
	CHECK(count(log, "PUT /v2/r/node/blobs/uploads/UUID 500") == 1);
	CHECK(count(log, "POST /v2/r/node/blobs/uploads/ 202") == 3);
	CHECK(count(log, "PUT /v2/r/node/blobs/uploads/UUID 201") == 2);
	fake_stop(&f);

	/* With one attempt, the failure is the error, naming the blob and the status. */
	if (fake_start_args(&f, "none", NULL, NULL, "1") < 0) {
		CHECK(0);
		return;
	}
	free(ref);
	ref = xasprintf("%s/r/node:v1", f.host);
	_cleanup_free_ char *work2 = path_join(tmp_root(), "work6");
	CHECK(mkdir_p(work2, 0700, NULL) == 0);
	o.max_attempts = 1;
	CHECK(imgf_registry_push_archive(tar, id, ref, work2, &o, digest, &st, &err) < 0);
	CHECK_ERR(err, "layer 0 sha256:");
	CHECK_ERR(err, "HTTP 500 (UNKNOWN: injected failure), expected 201");
	imgf_error_clear(&err);
	fake_stop(&f);
}

/* The push's backoff is the shared policy's: without retry_base_ms in its options, the base is
 * IMGFORGE_RETRY_BASE_MS, as for downloads and uploads. 3200 ms waits 1.6 to 4.8 s before the
 * second try; the default 1000 would wait at most 1.5 s. */
TEST(push_backoff_reads_IMGFORGE_RETRY_BASE_MS)
{
	struct fake f;
	if (fake_start_args(&f, "none", NULL, NULL, "1") < 0) {
		CHECK(0);
		return;
	}
	char id[72], digest[72];
	_cleanup_free_ char *tar = make_archive("backoff", "backoff\n", "amd64", false, id);
	_cleanup_free_ char *ref = xasprintf("%s/b/node:v1", f.host);
	_cleanup_free_ char *work = path_join(tmp_root(), "work-backoff");
	CHECK(mkdir_p(work, 0700, NULL) == 0);
	struct imgf_push_opts o = {.max_attempts = 2};
	struct imgf_error *err = NULL;
	setenv("IMGFORGE_RETRY_BASE_MS", "3200", 1);
	int64_t t0 = imgf_http_mono_ms();
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, NULL, &err) == 0);
	int64_t took = imgf_http_mono_ms() - t0;
	unsetenv("IMGFORGE_RETRY_BASE_MS");
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	_cleanup_free_ char *log = log_take(&f);
	CHECK(count(log, "PUT /v2/b/node/blobs/uploads/UUID 500") == 1); /* one retry, */
	CHECK(took >= 1600);						 /* after the wait */
	fake_stop(&f);
}

TEST(push_gzip_layers_keep_the_image_id)
{
	struct fake f;
	if (fake_start(&f, "none", NULL, NULL) < 0) {
		CHECK(0);
		return;
	}
	char id[72], digest[72], digest2[72];
	_cleanup_free_ char *tar = make_archive("gz", "compress me\n", "amd64", false, id);
	_cleanup_free_ char *ref = xasprintf("%s/gz/node:v1", f.host);
	_cleanup_free_ char *work = path_join(tmp_root(), "work7");
	_cleanup_free_ char *work2 = path_join(tmp_root(), "work8");
	CHECK(mkdir_p(work, 0700, NULL) == 0 && mkdir_p(work2, 0700, NULL) == 0);
	struct imgf_push_opts o = {.max_attempts = 1, .gzip_level = 9};
	struct imgf_push_stats st;
	struct imgf_error *err = NULL;
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, &st, &err) == 0);
	/* The compressed copy is the same bytes each time: the second push sends nothing. */
	CHECK(imgf_registry_push_archive(tar, id, ref, work2, &o, digest2, &st, &err) == 0);
	CHECK(st.existed == 2 && st.uploaded == 0);
	CHECK_STR(digest2, digest);
	struct imgf_fetch_opts fo;
	imgf_fetch_opts_default(&fo, tmp_root());
	struct strbuf m = STRBUF_INIT;
	_cleanup_free_ char *url = xasprintf("%s/v2/gz/node/manifests/v1", f.srv.base);
	CHECK(imgf_fetch_to_buffer(url, 1 << 20, &fo, &m, &err) == 0);
	json_t *man = json_loadb(m.buf, m.len, 0, NULL);
	json_t *l0 = json_array_get(json_object_get(man, "layers"), 0);
	CHECK_STR(json_string_value(json_object_get(l0, "mediaType")),
		  "application/vnd.oci.image.layer.v1.tar+gzip");
	CHECK_STR(json_string_value(json_object_get(json_object_get(man, "config"), "digest")), id);
	_cleanup_free_ char *gz = path_join(work, "layer-0.tar.gz");
	char hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(gz, IMGF_SHA256, hex, NULL) == 0);
	_cleanup_free_ char *want = xasprintf("sha256:%s", hex);
	CHECK_STR(json_string_value(json_object_get(l0, "digest")), want);
	/* It unpacks to the layer's file. */
	_cleanup_free_ char *x = path_join(tmp_root(), "gz-x");
	CHECK(mkdir_p(x, 0700, NULL) == 0 && imgf_archive_extract(gz, x, NULL) == 0);
	_cleanup_free_ char *content = NULL;
	size_t len = 0;
	_cleanup_free_ char *cpath = path_join(x, "etc/content");
	CHECK(read_file(cpath, 0, &content, &len, NULL) == 0);
	CHECK_STR(content, "compress me\n");
	json_decref(man);
	strbuf_release(&m);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_clear(&err);
	fake_stop(&f);
}

TEST(push_refuses_a_lying_archive)
{
	struct fake f;
	if (fake_start(&f, "none", NULL, NULL) < 0) {
		CHECK(0);
		return;
	}
	char id[72], digest[72];
	_cleanup_free_ char *tar = make_archive("lie", "lie\n", "amd64", true, id);
	_cleanup_free_ char *ref = xasprintf("%s/l/node:v1", f.host);
	_cleanup_free_ char *work = path_join(tmp_root(), "work3");
	CHECK(mkdir_p(work, 0700, NULL) == 0);
	struct imgf_push_opts o = {.max_attempts = 1};
	struct imgf_error *err = NULL;
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, NULL, &err) < 0);
	CHECK_ERR(err, "layer 0 hashes to sha256:");
	CHECK_ERR(err, "but the config's diff_ids[0] is sha256:0000");
	imgf_error_clear(&err);
	/* The wrong image ID. */
	_cleanup_free_ char *tar2 = make_archive("ok", "ok\n", "amd64", false, id);
	_cleanup_free_ char *work2 = path_join(tmp_root(), "work4");
	CHECK(mkdir_p(work2, 0700, NULL) == 0);
	const char *other =
		"sha256:1111111111111111111111111111111111111111111111111111111111111111";
	CHECK(imgf_registry_push_archive(tar2, other, ref, work2, &o, digest, NULL, &err) < 0);
	CHECK_ERR(err, "not the image ID sha256:1111");
	imgf_error_clear(&err);
	_cleanup_free_ char *log = log_take(&f);
	CHECK_STR(log, "");
	fake_stop(&f);
}

/* The pull client with a push's access options (build --cache-from): Basic and Bearer asked
 * with the docker config's credentials; a refusal names whose access it was, never the
 * password. */
static void pull_with_credentials(const char *auth)
{
	struct fake f;
	if (fake_start(&f, auth, "u", "s3cr3t") < 0) {
		CHECK(0);
		return;
	}
	char id[72], digest[72], got[72];
	_cleanup_free_ char *name = xasprintf("pull-%s", auth);
	_cleanup_free_ char *tar = make_archive(name, "pulled\n", "amd64", false, id);
	_cleanup_free_ char *ref = xasprintf("%s/p/node:v1", f.host);
	_cleanup_free_ char *work = xasprintf("%s/work-%s", tmp_root(), name);
	CHECK(mkdir_p(work, 0700, NULL) == 0);
	_cleanup_free_ char *good = imgf_base64_encode("u:s3cr3t", 8);
	_cleanup_free_ char *gj = xasprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", f.host, good);
	_cleanup_free_ char *goodf = write_tmp("pull-right.json", gj);
	struct imgf_push_opts o = {.auth_file = goodf, .max_attempts = 1};
	struct imgf_error *err = NULL;
	CHECK(imgf_registry_push_archive(tar, id, ref, work, &o, digest, NULL, &err) == 0);
	imgf_error_clear(&err);

	struct imgf_fetch_opts fo;
	_cleanup_free_ char *cache = xasprintf("%s/cache-%s", tmp_root(), name);
	imgf_fetch_opts_default(&fo, cache);
	fo.cache_dir = cache;
	fo.max_attempts = 1;
	_cleanup_free_ char *out = xasprintf("%s/%s.tar", tmp_root(), name);
	free(log_take(&f));
	CHECK(imgf_registry_pull_oci_as(ref, "amd64", &fo, &o, out, got, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	CHECK_STR(got, digest);
	_cleanup_free_ char *log = log_take(&f);
	CHECK(count(log, " 401\n") == 1); /* one challenge, answered once */
	imgf_error_clear(&err);

	/* Anonymous: without access options, and with a config that has nothing for it. */
	CHECK(imgf_registry_pull_oci(ref, NULL, "amd64", &fo, out, got, &err) < 0);
	CHECK_ERR(err, !strcmp(auth, "basic") ? "only anonymous bearer tokens are supported"
					      : "the token endpoint refused anonymous access");
	imgf_error_clear(&err);
	_cleanup_free_ char *none = write_tmp("pull-none.json", "{\"auths\":{}}");
	struct imgf_push_opts anon = {.auth_file = none, .max_attempts = 1};
	CHECK(imgf_registry_pull_oci_as(ref, "amd64", &fo, &anon, out, got, &err) < 0);
	CHECK_ERR(err, !strcmp(auth, "basic") ? "HTTP 401: registry" : "refused anonymous access");
	imgf_error_clear(&err);

	/* A wrong password: the user is named, the password is not. */
	_cleanup_free_ char *bad = imgf_base64_encode("u:wrong", 7);
	_cleanup_free_ char *bj = xasprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", f.host, bad);
	_cleanup_free_ char *badf = write_tmp("pull-wrong.json", bj);
	struct imgf_push_opts wrong = {.auth_file = badf, .max_attempts = 1};
	CHECK(imgf_registry_pull_oci_as(ref, "amd64", &fo, &wrong, out, got, &err) < 0);
	CHECK_ERR(err, "refused the credentials of user 'u'");
	CHECK(err && !strstr(err->msg, "wrong") && !strstr(err->msg, bad));
	imgf_error_clear(&err);
	fake_stop(&f);
}

TEST(pull_with_basic_credentials)
{
	pull_with_credentials("basic");
}

TEST(pull_with_bearer_credentials)
{
	pull_with_credentials("bearer");
}
