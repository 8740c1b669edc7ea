/*
 * src/aptlock.c and the packages step's lock: a lock is read only when every entry is well
 * formed (errors name the file and the key path); a config package the lock does not know is
 * refused naming it; the local repository's index comes from each .deb's own control file,
 * and a tampered, missing or mislabelled .deb is refused naming the package and the file; the
 * index is the same bytes for the same packages. The resolution's output parses into a
 * sorted step entry. The packages step's cache key follows the lock's entry for its image
 * and step when there is a lock, else the archive's Release file.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>

#include "aptlock.h"
#include "build.h"
#include "config.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "provisioner.h"
#include "provisioners/common.h"
#include "stepcache-internal.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static char *scratch(void)
{
	char *dir = NULL;
	CHECK(make_temp_dir("test-aptlock", &dir, NULL) == 0);
	return dir;
}

static char *write_text(const char *dir, const char *name, const char *text)
{
	char *path = path_join(dir, name);
	CHECK(write_file_atomic(path, text, strlen(text), 0644, NULL) == 0);
	return path;
}

/* A lock with one image "node", one step 0, one package (fields overridable). */
static char *lock_text(const char *pkg, const char *version, const char *sha, const char *filename,
		       const char *url)
{
	return xasprintf("{\"imgforge_lock\": 1, \"images\": {\"node\": {\"archives\": "
			 "[{\"release\": \"x_InRelease\", \"sha256\": \"%s\"}], \"steps\": "
			 "[{\"step\": 0, \"requested\": [\"jq\", \"curl\"], \"packages\": "
			 "[{\"package\": \"%s\", \"version\": \"%s\", \"architecture\": "
			 "\"amd64\", \"sha256\": \"%s\", \"size\": 10, \"filename\": \"%s\", "
			 "\"url\": \"%s\", \"archive\": \"http://deb.example/debian "
			 "bookworm/main\"}]}]}}}",
			 SHA_A, pkg, version, sha, filename, url);
}

static void expect_lock_error(const char *text, const char *needle)
{
	_cleanup_free_ char *dir = scratch();
	_cleanup_free_ char *path = write_text(dir, "imgforge.lock", text);
	json_t *doc = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_aptlock_load(path, &doc, &err) < 0);
	CHECK(doc == NULL);
	CHECK_ERR(err, path);
	CHECK_ERR(err, needle);
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(a_good_lock_loads_and_finds_each_images_step)
{
	_cleanup_free_ char *dir = scratch();
	_cleanup_free_ char *text =
		lock_text("jq", "1:1.6-2.1", SHA_A, "pool/main/j/jq/jq_1.6-2.1_amd64.deb",
			  "http://deb.example/debian/pool/main/j/jq/jq_1.6-2.1_amd64.deb");
	_cleanup_free_ char *path = write_text(dir, "imgforge.lock", text);
	json_t *doc = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_aptlock_load(path, &doc, &err) == 0);
	CHECK(imgf_aptlock_step(doc, "node", 0) != NULL);
	CHECK(imgf_aptlock_step(doc, "node", 1) == NULL);
	CHECK(imgf_aptlock_step(doc, "other", 0) == NULL);
	CHECK(json_array_size(imgf_aptlock_archives(doc, "node")) == 1);
	CHECK(json_array_size(imgf_aptlock_archives(doc, "other")) == 0);
	/* the dump is sorted and stable: load(dump(x)) dumps the same */
	_cleanup_free_ char *d1 = imgf_aptlock_dump(doc);
	json_t *again = json_loads(d1, 0, NULL);
	_cleanup_free_ char *d2 = imgf_aptlock_dump(again);
	CHECK_STR(d1, d2);
	CHECK(d1[strlen(d1) - 1] == '\n');
	json_decref(again);
	json_decref(doc);
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(a_malformed_lock_is_refused_naming_the_file_and_key)
{
	const char *url = "http://d/pool/jq_1_amd64.deb";
	_cleanup_free_ char *bad_sha = lock_text("jq", "1", "abc", "pool/jq_1_amd64.deb", url);
	expect_lock_error(bad_sha, "images.node.steps[0].packages[0].sha256: 'abc' is not a "
				   "sha256");
	_cleanup_free_ char *dotdot =
		lock_text("jq", "1", SHA_A, "pool/../../etc/jq_1_amd64.deb", url);
	expect_lock_error(dotdot, "packages[0].filename: 'pool/../../etc/jq_1_amd64.deb' is not "
				  "a relative path to a .deb");
	_cleanup_free_ char *badurl =
		lock_text("jq", "1", SHA_A, "pool/jq_1_amd64.deb", "http://d/other.deb");
	expect_lock_error(badurl, "packages[0].url: 'http://d/other.deb' is not a URL ending in "
				  "'/pool/jq_1_amd64.deb'");
	_cleanup_free_ char *badname = lock_text("jq;rm", "1", SHA_A, "pool/jq_1_amd64.deb",
						 "http://d/pool/jq_1_amd64.deb");
	expect_lock_error(badname, "packages[0].package: 'jq;rm' is not a package name");
	_cleanup_free_ char *badver = lock_text("jq", "1 $(x)", SHA_A, "pool/jq_1_amd64.deb",
						"http://d/pool/jq_1_amd64.deb");
	expect_lock_error(badver, "packages[0].version: '1 $(x)' is not a version");
	expect_lock_error("{\"imgforge_lock\": 2, \"images\": {}}", "imgforge_lock: expected 1");
	expect_lock_error("{\"imgforge_lock\": 1, \"images\": {\"n\": {\"steps\": []}}}",
			  "images.n: expected 'archives' and 'steps' lists");
	expect_lock_error("{\"imgforge_lock\": 1,", "line 1");
}

TEST(a_config_package_the_lock_does_not_know_is_named)
{
	_cleanup_free_ char *text =
		lock_text("jq", "1", SHA_A, "pool/jq_1_amd64.deb", "http://d/pool/jq_1_amd64.deb");
	json_t *doc = json_loads(text, 0, NULL);
	json_t *step = imgf_aptlock_step(doc, "node", 0);
	struct imgf_error *err = NULL;
	char *ok[] = {"jq", "curl=7.88", NULL};
	CHECK(imgf_aptlock_covers(step, ok, "my.lock", "node", &err) == 0);
	char *bad[] = {"jq", "jqx", NULL};
	CHECK(imgf_aptlock_covers(step, bad, "my.lock", "node", &err) < 0);
	CHECK_ERR(err, "package 'jqx' is not in the lock 'my.lock' (image 'node')");
	imgf_error_free(err);
	json_decref(doc);
}

/* ---- .debs and the repository ---------------------------------------------------------- */

static void ar_member(struct archive *a, const char *name, const void *data, size_t len)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)len);
	CHECK(archive_write_header(a, e) == ARCHIVE_OK);
	CHECK(archive_write_data(a, data, len) == (la_ssize_t)len);
	archive_entry_free(e);
}

/* A gzip'd tar in memory holding ./control (or nothing). */
static size_t control_tar(const char *control, void *buf, size_t cap)
{
	struct archive *a = archive_write_new();
	size_t used = 0;
	CHECK(archive_write_set_format_ustar(a) == ARCHIVE_OK);
	CHECK(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
	CHECK(archive_write_open_memory(a, buf, cap, &used) == ARCHIVE_OK);
	if (control)
		ar_member(a, "./control", control, strlen(control));
	CHECK(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
	return used;
}

/* A minimal .deb whose control names pkg, version and arch. */
static char *make_deb(const char *dir, const char *file, const char *pkg, const char *ver,
		      const char *arch)
{
	_cleanup_free_ char *control =
		xasprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: t <t@t>\n"
			  "Depends: libc6\nDescription: test\n a test package\n",
			  pkg, ver, arch);
	static char ctl[8192], data[8192];
	size_t cl = control_tar(control, ctl, sizeof(ctl));
	size_t dl = control_tar(NULL, data, sizeof(data));
	char *path = path_join(dir, file);
	_cleanup_free_ char *parent = path_dirname(path);
	CHECK(mkdir_p(parent, 0755, NULL) == 0);
	struct archive *a = archive_write_new();
	CHECK(archive_write_set_format_ar_svr4(a) == ARCHIVE_OK);
	CHECK(archive_write_open_filename(a, path) == ARCHIVE_OK);
	ar_member(a, "debian-binary", "2.0\n", 4);
	ar_member(a, "control.tar.gz", ctl, cl);
	ar_member(a, "data.tar.gz", data, dl);
	CHECK(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
	return path;
}

static json_t *deb_entry(const char *path_rel, const char *full, const char *pkg, const char *ver,
			 const char *arch)
{
	char hex[IMGF_DIGEST_HEX_MAX] = "";
	CHECK(imgf_digest_file(full, IMGF_SHA256, hex, NULL) == 0);
	return json_pack("{s:s,s:s,s:s,s:s,s:s}", "package", pkg, "version", ver, "architecture",
			 arch, "sha256", hex, "path", path_rel);
}

static char *read_text(const char *path)
{
	char *text = NULL;
	size_t len;
	if (read_file(path, 1 << 20, &text, &len, NULL) < 0)
		return xstrdup("");
	return text;
}

TEST(deb_control_is_read_from_the_control_tar)
{
	_cleanup_free_ char *dir = scratch();
	_cleanup_free_ char *deb = make_deb(dir, "jq_1.6_amd64.deb", "jq", "1.6", "amd64");
	_cleanup_free_ char *control = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_deb_control(deb, &control, &err) == 0);
	_cleanup_free_ char *v = control ? imgf_control_field(control, "Version") : NULL;
	CHECK_STR(v, "1.6");
	_cleanup_free_ char *notdeb = write_text(dir, "x.deb", "not an ar archive\n");
	CHECK(imgf_deb_control(notdeb, &control, &err) < 0);
	CHECK_ERR(err, "x.deb");
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(the_repository_index_comes_from_the_debs_and_is_deterministic)
{
	_cleanup_free_ char *dir = scratch();
	_cleanup_free_ char *jq = make_deb(dir, "pool/j/jq_1.6_amd64.deb", "jq", "1.6", "amd64");
	_cleanup_free_ char *tz =
		make_deb(dir, "pool/t/tzdata_2024a_all.deb", "tzdata", "2024a", "all");
	json_t *debs = json_pack(
		"[o,o]", deb_entry("pool/t/tzdata_2024a_all.deb", tz, "tzdata", "2024a", "all"),
		deb_entry("pool/j/jq_1.6_amd64.deb", jq, "jq", "1.6", "amd64"));
	struct imgf_error *err = NULL;
	CHECK(imgf_aptrepo_write(dir, debs, true, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	_cleanup_free_ char *ppath = path_join(dir, "Packages");
	_cleanup_free_ char *rpath = path_join(dir, "Release");
	_cleanup_free_ char *gzpath = path_join(dir, "Packages.gz");
	_cleanup_free_ char *packages = read_text(ppath);
	/* sorted by package; the control's fields, then where the file is */
	CHECK(str_has_prefix(packages, "Package: jq\nVersion: 1.6\nArchitecture: amd64\n"));
	CHECK(strstr(packages, "Depends: libc6\n") != NULL);
	CHECK(strstr(packages, "\nFilename: pool/j/jq_1.6_amd64.deb\nSize: ") != NULL);
	CHECK(strstr(packages, json_string_value(json_object_get(json_array_get(debs, 1),
								 "sha256"))) != NULL);
	CHECK(strstr(packages, "\n\nPackage: tzdata\n") != NULL);
	char hex[IMGF_DIGEST_HEX_MAX] = "", gzhex[IMGF_DIGEST_HEX_MAX] = "";
	CHECK(imgf_digest_file(ppath, IMGF_SHA256, hex, NULL) == 0);
	CHECK(imgf_digest_file(gzpath, IMGF_SHA256, gzhex, NULL) == 0);
	_cleanup_free_ char *release = read_text(rpath);
	CHECK(strstr(release, hex) != NULL && strstr(release, " Packages\n") != NULL);
	CHECK(strstr(release, gzhex) != NULL && strstr(release, " Packages.gz\n") != NULL);
	CHECK(strstr(release, "Architectures: amd64\n") != NULL);
	/* the same packages give the same bytes, Packages.gz included */
	_cleanup_free_ char *rel1 = xstrdup(release);
	char gz1[IMGF_DIGEST_HEX_MAX];
	memcpy(gz1, gzhex, sizeof(gz1));
	sleep(1); /* a timestamp in the gzip header would differ now */
	CHECK(imgf_aptrepo_write(dir, debs, true, &err) == 0);
	_cleanup_free_ char *rel2 = read_text(rpath);
	CHECK_STR(rel1, rel2);
	CHECK(imgf_digest_file(gzpath, IMGF_SHA256, gzhex, NULL) == 0);
	CHECK_STR(gz1, gzhex);
	json_decref(debs);
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(a_tampered_missing_or_mislabelled_deb_is_refused_naming_package_and_file)
{
	_cleanup_free_ char *dir = scratch();
	_cleanup_free_ char *jq = make_deb(dir, "jq_1.6_amd64.deb", "jq", "1.6", "amd64");
	json_t *e = deb_entry("jq_1.6_amd64.deb", jq, "jq", "1.6", "amd64");
	json_t *debs = json_pack("[O]", e);
	struct imgf_error *err = NULL;
	/* tampered: one byte more */
	int fd = open(jq, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	close(fd);
	CHECK(imgf_aptrepo_write(dir, debs, false, &err) < 0);
	CHECK_ERR(err, "package 'jq'");
	CHECK_ERR(err, jq);
	CHECK_ERR(err, "sha256 mismatch");
	imgf_error_free(err);
	err = NULL;
	/* missing */
	unlink(jq);
	CHECK(imgf_aptrepo_write(dir, debs, false, &err) < 0);
	CHECK_ERR(err, "package 'jq'");
	CHECK_ERR(err, jq);
	imgf_error_free(err);
	err = NULL;
	/* its control says another version than the entry */
	free(make_deb(dir, "jq_1.6_amd64.deb", "jq", "1.7", "amd64"));
	json_decref(debs);
	json_t *e2 = deb_entry("jq_1.6_amd64.deb", jq, "jq", "1.6", "amd64");
	debs = json_pack("[o]", e2);
	CHECK(imgf_aptrepo_write(dir, debs, false, &err) < 0);
	CHECK_ERR(err, "package 'jq'");
	CHECK_ERR(err, "its control says Version '1.7', not '1.6'");
	imgf_error_free(err);
	json_decref(debs);
	json_decref(e);
	rm_rf(dir, NULL);
}

/* ---- the resolution's output ----------------------------------------------------------- */

TEST(the_resolution_parses_into_a_sorted_step_entry)
{
	_cleanup_free_ char *text = xasprintf(
		"P\tzlib1g\t1:1.2.13\tamd64\t90\thttp://d/debian/pool/z/zlib1g_1.2.13_amd64.deb\t"
		"http://d/debian bookworm/main\tpool/z/zlib1g_1.2.13_amd64.deb\t%s\n"
		"P\tjq\t1.6-2.1\tamd64\t60\thttp://d/debian/pool/j/jq_1.6-2.1_amd64.deb\t"
		"http://d/debian bookworm/main\tpool/j/jq_1.6-2.1_amd64.deb\t%s\n"
		"R\td_debian_dists_bookworm_InRelease\t%s\n",
		SHA_A, SHA_A, SHA_A);
	char *pkgs[] = {"jq", "zlib1g=1:1.2.13", "jq", NULL};
	json_t *e = NULL;
	struct imgf_error *err = NULL;
	CHECK(prov_packages_resolve_parse(text, pkgs, &e, &err) == 0);
	json_t *list = json_object_get(e, "packages");
	CHECK(json_array_size(list) == 2);
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "package")), "jq");
	CHECK(json_integer_value(json_object_get(json_array_get(list, 1), "size")) == 90);
	json_t *req = json_object_get(e, "requested");
	CHECK(json_array_size(req) == 2);
	CHECK_STR(json_string_value(json_array_get(req, 1)), "zlib1g");
	CHECK(json_array_size(json_object_get(e, "archives")) == 1);
	json_decref(e);
	/* apt's index gave no SHA256 */
	CHECK(prov_packages_resolve_parse("P\tjq\t1\tamd64\t6\thttp://d/p/jq.deb\tx\t\t\n", pkgs,
					  &e, &err) < 0);
	CHECK_ERR(err, "package 'jq' 1 (amd64): the archive's index gives no Filename and "
		       "SHA256");
	imgf_error_free(err);
	err = NULL;
	CHECK(prov_packages_resolve_parse("garbage\n", pkgs, &e, &err) < 0);
	CHECK_ERR(err, "resolution line 1");
	imgf_error_free(err);
}

/* ---- the packages step's cache key ----------------------------------------------------- */

/* The contract of a build with none of its variables set. */
static const struct imgf_contract no_contract;

struct pstep {
	struct imgf_config cfg;
	struct imgf_image_def def;
	struct imgf_build build;
	struct imgf_step s;
	char *cache;
};

static void pstep_init(struct pstep *p, const char *image, const char *json)
{
	memset(p, 0, sizeof(*p));
	p->cfg.vars = json_object();
	p->def.name = (char *)image;
	p->cache = scratch();
	p->build = (struct imgf_build){.config = &p->cfg, .def = &p->def, .contract = &no_contract};
	imgf_fetch_opts_default(&p->build.fetch, p->cache);
	p->s = (struct imgf_step){.ops = imgf_provisioner_find("packages"), .build = &p->build};
	p->s.cfg = json_loads(json, 0, NULL);
	CHECK(p->s.cfg != NULL);
}

static void pstep_release(struct pstep *p)
{
	for (size_t i = 0; i < p->s.ninputs; i++)
		imgf_input_release(&p->s.inputs[i]);
	free(p->s.inputs);
	json_decref(p->s.cfg);
	json_decref(p->s.staged);
	json_decref(p->cfg.vars);
	rm_rf(p->cache, NULL);
	free(p->cache);
}

/* The step's key, its inputs declared first (as planning does). */
static char *pkey(const char *image, const char *json, size_t *ninputs)
{
	struct pstep p;
	pstep_init(&p, image, json);
	struct imgf_error *err = NULL;
	char *key = NULL;
	CHECK(p.s.ops->inputs(&p.s, &err) == 0);
	CHECK(imgf_stepcache_step_key(&p.s, "prev", &key, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	if (ninputs)
		*ninputs = p.s.ninputs;
	imgf_error_free(err);
	pstep_release(&p);
	return key ? key : xstrdup("");
}

TEST(without_a_lock_the_key_follows_the_archives_release_file)
{
	_cleanup_free_ char *dir = scratch();
	_cleanup_free_ char *rel = write_text(dir, "InRelease", "Suite: bookworm\nDate: 1\n");
	_cleanup_free_ char *json =
		xasprintf("{\"packages\": [\"jq\"], \"release_urls\": \"file://%s\"}", rel);
	_cleanup_free_ char *k1 = pkey("node", json, NULL);
	_cleanup_free_ char *k2 = pkey("node", json, NULL);
	CHECK_STR(k1, k2);
	free(write_text(dir, "InRelease", "Suite: bookworm\nDate: 2\n"));
	_cleanup_free_ char *k3 = pkey("node", json, NULL);
	CHECK(strcmp(k1, k3) != 0);
	/* an archive that cannot be read: a key no later build has (the step runs) */
	unlink(rel);
	_cleanup_free_ char *k4 = pkey("node", json, NULL);
	_cleanup_free_ char *k5 = pkey("node", json, NULL);
	CHECK(strcmp(k4, k3) != 0 && strcmp(k4, k5) != 0);
	rm_rf(dir, NULL);
}

TEST(with_a_lock_the_key_follows_its_entry_and_each_deb_is_an_input)
{
	_cleanup_free_ char *dir = scratch();
	_cleanup_free_ char *t1 = lock_text("jq", "1.6", SHA_A, "pool/jq_1.6_amd64.deb",
					    "http://d/debian/pool/jq_1.6_amd64.deb");
	_cleanup_free_ char *lock = write_text(dir, "imgforge.lock", t1);
	_cleanup_free_ char *json =
		xasprintf("{\"packages\": [\"jq curl\"], \"lock\": \"%s\", \"release_urls\": "
			  "\"file:///nonexistent/InRelease\"}",
			  lock);
	size_t n = 0;
	_cleanup_free_ char *k1 = pkey("node", json, &n);
	CHECK(n == 1);
	_cleanup_free_ char *k2 = pkey("node", json, NULL);
	CHECK_STR(k1, k2); /* no Release fetched: the lock decides */
	_cleanup_free_ char *t2 = lock_text("jq", "1.7", SHA_A, "pool/jq_1.7_amd64.deb",
					    "http://d/debian/pool/jq_1.7_amd64.deb");
	free(write_text(dir, "imgforge.lock", t2));
	_cleanup_free_ char *k3 = pkey("node", json, NULL);
	CHECK(strcmp(k1, k3) != 0);
	/* the mirror replaces the archive's URL, keeping the file's path */
	struct pstep p;
	_cleanup_free_ char *mjson = xasprintf(
		"{\"packages\": [\"jq\"], \"lock\": \"%s\", \"mirror\": \"file:///m/debs\"}", lock);
	pstep_init(&p, "node", mjson);
	struct imgf_error *err = NULL;
	CHECK(p.s.ops->inputs(&p.s, &err) == 0);
	CHECK(p.s.ninputs == 1);
	if (p.s.ninputs) {
		CHECK_STR(p.s.inputs[0].url, "file:///m/debs/pool/jq_1.7_amd64.deb");
		CHECK_STR(p.s.inputs[0].checksum, "sha256:" SHA_A);
		CHECK_STR(p.s.inputs[0].name, "deb:jq:amd64");
		CHECK(p.s.inputs[0].own_record);
	}
	pstep_release(&p);
	/* a package the lock does not know, an image it does not know: refused */
	_cleanup_free_ char *extra =
		xasprintf("{\"packages\": [\"jq nfs-common\"], \"lock\": \"%s\"}", lock);
	pstep_init(&p, "node", extra);
	CHECK(p.s.ops->inputs(&p.s, &err) < 0);
	CHECK_ERR(err, "package 'nfs-common' is not in the lock");
	CHECK_ERR(err, lock);
	imgf_error_free(err);
	err = NULL;
	pstep_release(&p);
	pstep_init(&p, "other", extra);
	CHECK(p.s.ops->inputs(&p.s, &err) < 0);
	CHECK_ERR(err, "has no entry for image 'other' step 0");
	imgf_error_free(err);
	pstep_release(&p);
	rm_rf(dir, NULL);
}
