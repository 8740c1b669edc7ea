/* Image reference parsing and normalisation, as Docker does it. */
#include "error.h"
#include "registry.h"
#include "test.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct good_ref {
	const char *in;
	const char *registry, *repository, *tag, *digest, *full;
};

static const struct good_ref good[] = {
	{"pause:3.10", "docker.io", "library/pause", "3.10", NULL, "docker.io/library/pause:3.10"},
	{"busybox", "docker.io", "library/busybox", "latest", NULL,
	 "docker.io/library/busybox:latest"},
	{"kindest/node:v1.31.2", "docker.io", "kindest/node", "v1.31.2", NULL,
	 "docker.io/kindest/node:v1.31.2"},
	{"docker.io/ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", NULL,
	 "docker.io/library/ubuntu:22.04"},
	{"index.docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", NULL,
	 "docker.io/library/ubuntu:latest"},
	{"registry.k8s.io/pause:3.10", "registry.k8s.io", "pause", "3.10", NULL,
	 "registry.k8s.io/pause:3.10"},
	{"registry.k8s.io/coredns/coredns:v1.11.3", "registry.k8s.io", "coredns/coredns", "v1.11.3",
	 NULL, "registry.k8s.io/coredns/coredns:v1.11.3"},
	{"127.0.0.1:5000/x/y:tag", "127.0.0.1:5000", "x/y", "tag", NULL, "127.0.0.1:5000/x/y:tag"},
	{"localhost/foo", "localhost", "foo", "latest", NULL, "localhost/foo:latest"},
	{"localhost:5000/foo:1", "localhost:5000", "foo", "1", NULL, "localhost:5000/foo:1"},
	{"[::1]:5000/foo:1", "[::1]:5000", "foo", "1", NULL, "[::1]:5000/foo:1"},
	{"quay.io/a.b/c_d/e__f/g-h--i:T_1.x-y", "quay.io", "a.b/c_d/e__f/g-h--i", "T_1.x-y", NULL,
	 "quay.io/a.b/c_d/e__f/g-h--i:T_1.x-y"},
	{"pause@sha256:" D64, "docker.io", "library/pause", NULL, "sha256:" D64,
	 "docker.io/library/pause@sha256:" D64},
	{"registry.k8s.io/pause:3.10@sha256:" D64, "registry.k8s.io", "pause", "3.10",
	 "sha256:" D64, "registry.k8s.io/pause:3.10@sha256:" D64},
	/* "foo" is a repository, not a registry: no '.', no ':', not localhost */
	{"foo/bar", "docker.io", "foo/bar", "latest", NULL, "docker.io/foo/bar:latest"},
	/* without a '/', a ':' is a tag (Docker reads "localhost:5000" this way too) */
	{"localhost:5000", "docker.io", "library/localhost", "5000", NULL,
	 "docker.io/library/localhost:5000"},
};

TEST(good_refs)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const struct good_ref *g = &good[i];
		struct imgf_image_ref r;
		struct imgf_error *err = NULL;
		int rc = imgf_image_ref_parse(g->in, &r, &err);
		if (rc < 0) {
			fprintf(stderr, "  '%s': unexpected error: %s\n", g->in, err->msg);
			test_failed_flag = 1;
			imgf_error_free(err);
			continue;
		}
		CHECK_STR(r.registry, g->registry);
		CHECK_STR(r.repository, g->repository);
		if (g->tag)
			CHECK_STR(r.tag, g->tag);
		else
			CHECK(r.tag == NULL);
		if (g->digest)
			CHECK_STR(r.digest, g->digest);
		else
			CHECK(r.digest == NULL);
		CHECK_STR(r.full, g->full);
		imgf_image_ref_release(&r);
	}
}

struct bad_ref {
	const char *in;
	const char *msg; /* the error must contain this */
};

static const struct bad_ref bad[] = {
	{"", "invalid image reference '': empty reference"},
	{"Pause:3.10",
	 "invalid image reference 'Pause:3.10': repository name 'Pause' must be lowercase"},
	{"registry.k8s.io/Pause", "repository name 'Pause' must be lowercase"},
	{"pause:", "invalid image reference 'pause:': empty tag after ':'"},
	{"pause:-x", "invalid tag '-x'"},
	{"pause:a+b", "invalid tag 'a+b'"},
	{"pause@", "empty digest after '@'"},
	{"pause@sha256:abc", "digest 'sha256:abc' is not 'sha256:' and 64 lowercase hex digits"},
	{"pause@sha256:" D64 "00", "is not 'sha256:' and 64 lowercase hex digits"},
	{"pause@sha512:" D64 D64, "unsupported digest algorithm 'sha512' (only sha256)"},
	{"pause@" D64, "digest '" D64 "' has no algorithm"},
	{"@sha256:" D64, "empty name"},
	{":tag", "empty name"},
	{"registry.k8s.io/", "empty repository name after 'registry.k8s.io/'"},
	{"registry.k8s.io//pause", "empty path component in repository '/pause'"},
	{"foo//bar", "empty path component in repository 'foo//bar'"},
	{"foo/bar/", "empty path component in repository 'foo/bar/'"},
	{"-foo", "invalid repository path component '-foo'"},
	{"foo-/bar", "invalid repository path component 'foo-'"},
	{"a...b", "invalid repository path component 'a...b'"},
	{"a___b", "invalid repository path component 'a___b'"},
	{"registry.k8s.io:99999/pause", "invalid registry port '99999'"},
	{"registry.k8s.io:/pause", "invalid registry port ''"},
	{"registry.k8s.io:0/pause", "invalid registry port '0'"},
	{"-bad.example/pause", "invalid registry host '-bad.example'"},
	{"bad..example/pause", "invalid registry host 'bad..example'"},
	{"[::g]:5000/pause", "invalid IPv6 registry host '[::g]:5000'"},
	{"https://registry.k8s.io/pause", "a reference has no URL scheme"},
	{"pause 3.10", "contains whitespace or control characters"},
	{"registry.example/"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	 "name longer than 255 characters"},
	{"pause:"
	 "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
	 "tttttttttttttttttttttttttttttttttttttttttttt",
	 "at most 128 characters"},
};

TEST(bad_refs)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct imgf_image_ref r;
		struct imgf_error *err = NULL;
		int rc = imgf_image_ref_parse(bad[i].in, &r, &err);
		if (rc == 0) {
			fprintf(stderr, "  '%s': parsed as '%s', want an error\n", bad[i].in,
				r.full);
			test_failed_flag = 1;
			imgf_image_ref_release(&r);
			continue;
		}
		CHECK(rc < 0);
		CHECK_ERR(err, bad[i].msg);
		CHECK(err && err->status == IMGF_EXIT_FAIL);
		CHECK(r.registry == NULL && r.full == NULL);
		imgf_error_free(err);
	}
}

TEST(release_is_idempotent)
{
	struct imgf_image_ref r;
	struct imgf_error *err = NULL;
	CHECK(imgf_image_ref_parse("registry.k8s.io/etcd:3.5.15-0", &r, &err) == 0);
	imgf_image_ref_release(&r);
	imgf_image_ref_release(&r);
	CHECK(r.full == NULL);
	imgf_image_ref_release(NULL);
}
