/*
 * src/oci/squash.c: a container export rewritten as a layer depends only on the files (member
 * order, owner names, later mtimes, whiteouts and SELinux labels of the input do not reach
 * it); hard links stay links whichever name sorts first; the image archive holds exactly
 * manifest.json, the config under its digest and the layer; SOURCE_DATE_EPOCH is checked.
 */
#include <archive.h>
#include <archive_entry.h>
#include <locale.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "squash.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

#define EPOCH 1700000000
#define OLD 1600000000
#define NEW 1800000000

struct spec {
	const char *name;
	mode_t type; /* 0 = regular */
	const char *data;
	const char *link; /* symlink target, or hard link target with hard */
	bool hard;
	int64_t mtime; /* 0 = OLD */
	const char *uname;
	const char *xattr; /* "name=value" */
};

static char *tmpdir;

static char *tpath(const char *name)
{
	return path_join(tmpdir, name);
}

/* The tests' own archives are written and read under a UTF-8 locale, the code under test
 * runs in the C locale. */
static locale_t utf8_begin(void)
{
	locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	CHECK(l != (locale_t)0);
	uselocale(l);
	return l;
}

static void utf8_end(locale_t l)
{
	uselocale(LC_GLOBAL_LOCALE);
	freelocale(l);
}

static void write_tar(const char *path, const struct spec *specs)
{
	locale_t l = utf8_begin();
	struct archive *a = archive_write_new();
	archive_write_set_format_pax(a);
	CHECK(archive_write_open_filename(a, path) == ARCHIVE_OK);
	for (const struct spec *s = specs; s->name; s++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, s->name);
		archive_entry_set_filetype(e, s->type		    ? s->type
					      : s->link && !s->hard ? AE_IFLNK
								    : AE_IFREG);
		archive_entry_set_perm(e, s->type == AE_IFDIR ? 0755 : 0644);
		archive_entry_set_uid(e, 1000);
		archive_entry_set_gid(e, 1001);
		if (s->uname) {
			archive_entry_set_uname(e, s->uname);
			archive_entry_set_gname(e, s->uname);
		}
		archive_entry_set_mtime(e, s->mtime ? s->mtime : OLD, 123);
		archive_entry_set_atime(e, NEW, 0);
		if (s->link && s->hard)
			archive_entry_set_hardlink(e, s->link);
		else if (s->link)
			archive_entry_set_symlink(e, s->link);
		if (s->xattr) {
			const char *eq = strchr(s->xattr, '=');
			_cleanup_free_ char *n = xstrndup(s->xattr, (size_t)(eq - s->xattr));
			archive_entry_xattr_add_entry(e, n, eq + 1, strlen(eq + 1));
		}
		size_t len = s->data && !s->hard ? strlen(s->data) : 0;
		archive_entry_set_size(e, (la_int64_t)len);
		CHECK(archive_write_header(a, e) == ARCHIVE_OK);
		if (len)
			CHECK(archive_write_data(a, s->data, len) == (la_ssize_t)len);
		archive_entry_free(e);
	}
	CHECK(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
	utf8_end(l);
}

/* "name type mtime uid:gid uname|link|data|xattrs" per member, one line each. */
static char *describe(const char *path)
{
	locale_t l = utf8_begin();
	struct strbuf sb = STRBUF_INIT;
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	CHECK(archive_read_open_filename(a, path, 10240) == ARCHIVE_OK);
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		char type = archive_entry_hardlink(e)		    ? 'h'
			    : archive_entry_filetype(e) == AE_IFDIR ? 'd'
			    : archive_entry_filetype(e) == AE_IFLNK ? 'l'
								    : 'f';
		strbuf_addf(&sb, "%s %c %lld.%ld %lld:%lld %s|%s|", archive_entry_pathname(e), type,
			    (long long)archive_entry_mtime(e), archive_entry_mtime_nsec(e),
			    (long long)archive_entry_uid(e), (long long)archive_entry_gid(e),
			    archive_entry_uname(e) ? archive_entry_uname(e) : "",
			    archive_entry_hardlink(e)  ? archive_entry_hardlink(e)
			    : archive_entry_symlink(e) ? archive_entry_symlink(e)
						       : "");
		char buf[256];
		la_ssize_t n = archive_read_data(a, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		strbuf_addstr(&sb, buf);
		const char *xn;
		const void *xv;
		size_t xs;
		archive_entry_xattr_reset(e);
		while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK)
			strbuf_addf(&sb, "|%s=%.*s", xn, (int)xs, (const char *)xv);
		strbuf_addch(&sb, '\n');
		if (archive_entry_atime_is_set(e))
			strbuf_addstr(&sb, "ATIME SET\n");
	}
	archive_read_free(a);
	utf8_end(l);
	return strbuf_detach(&sb, NULL);
}

static const char *const no_drop[] = {NULL};

/* The same tree as an engine might export it twice: other order, owner names, links. */
static const struct spec tree_a[] = {
	{.name = "./", .type = AE_IFDIR},
	{.name = "usr/", .type = AE_IFDIR},
	{.name = "usr/bin/", .type = AE_IFDIR, .mtime = NEW},
	{.name = "usr/bin/b", .data = "shared", .uname = "daemon"},
	{.name = "usr/bin/a", .link = "usr/bin/b", .hard = true},
	{.name = "usr/bin/ping", .data = "ping", .xattr = "security.capability=cap"},
	{.name = "usr-local", .link = "usr/bin", .mtime = NEW},
	{.name = "etc/", .type = AE_IFDIR},
	{.name = "etc/.wh.gone"},
	{.name = ".dockerenv"},
	{.name = "etc/x",
	 .data = "new",
	 .mtime = NEW,
	 .xattr = "security.selinux=system_u:object_r"},
	{.name = NULL},
};

static const struct spec tree_b[] = {
	{.name = "etc", .type = AE_IFDIR},
	{.name = "etc/x", .data = "new", .mtime = NEW + 5},
	{.name = "usr-local", .link = "usr/bin", .mtime = NEW},
	{.name = "usr", .type = AE_IFDIR},
	{.name = "usr/bin/a", .data = "shared", .uname = "root"},
	{.name = "usr/bin", .type = AE_IFDIR, .mtime = NEW + 99},
	{.name = "usr/bin/b", .link = "usr/bin/a", .hard = true},
	{.name = "usr/bin/ping", .data = "ping", .xattr = "security.capability=cap"},
	{.name = NULL},
};

static const char tree_want[] =
	"etc/ d 1600000000.0 1000:1001 ||\n"
	"etc/x f 1700000000.0 1000:1001 ||new\n"
	"usr/ d 1600000000.0 1000:1001 ||\n"
	"usr/bin/ d 1700000000.0 1000:1001 ||\n"
	"usr/bin/a f 1600000000.0 1000:1001 ||shared\n"
	"usr/bin/b h 1600000000.0 1000:1001 |usr/bin/a|\n"
	"usr/bin/ping f 1600000000.0 1000:1001 ||ping|security.capability=cap\n"
	"usr-local l 1700000000.0 1000:1001 |usr/bin|\n";

TEST(layer_depends_only_on_the_files)
{
	static const char *const drop[] = {".dockerenv", NULL};
	struct imgf_squash_opts o = {.epoch = EPOCH, .drop = drop};
	_cleanup_free_ char *in_a = tpath("a.tar"), *in_b = tpath("b.tar");
	_cleanup_free_ char *out_a = tpath("a-layer.tar"), *out_b = tpath("b-layer.tar");
	write_tar(in_a, tree_a);
	write_tar(in_b, tree_b);
	struct imgf_layer la, lb;
	struct imgf_error *err = NULL;
	CHECK(imgf_squash_layer(in_a, out_a, &o, &la, &err) == 0);
	CHECK(imgf_squash_layer(in_b, out_b, &o, &lb, &err) == 0);
	CHECK(err == NULL);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	_cleanup_free_ char *da = describe(out_a);
	_cleanup_free_ char *db = describe(out_b);
	CHECK_STR(da, tree_want);
	CHECK_STR(db, tree_want);
	CHECK(la.entries == 8 && la.dropped == 2);
	CHECK(lb.entries == 8 && lb.dropped == 0);

	/* Byte for byte the same, and diff_id is the file's sha256. */
	CHECK_STR(la.diff_id, lb.diff_id);
	char hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(out_b, IMGF_SHA256, hex, &err) == 0);
	_cleanup_free_ char *want = xasprintf("sha256:%s", hex);
	CHECK_STR(lb.diff_id, want);
	struct stat st;
	CHECK(stat(out_b, &st) == 0 && (uint64_t)st.st_size == lb.size);
}

TEST(layer_names_stay_bytes_in_any_locale)
{
	static const struct spec t[] = {
		{.name = "etc/ssl/NetLock_F\xc5\x91tan\xc3\xbas\xc3\xadtv\xc3\xa1ny.pem",
		 .data = "pem"},
		{.name = "etc/ssl/988a38cb.0",
		 .link = "NetLock_F\xc5\x91tan\xc3\xbas\xc3\xadtv\xc3\xa1ny.pem"},
		{.name = NULL},
	};
	struct imgf_squash_opts o = {.epoch = EPOCH};
	_cleanup_free_ char *in = tpath("utf8.tar"), *out = tpath("utf8-layer.tar");
	write_tar(in, t);
	struct imgf_layer l;
	struct imgf_error *err = NULL;
	CHECK(imgf_squash_layer(in, out, &o, &l, &err) == 0);
	CHECK(err == NULL);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	_cleanup_free_ char *d = describe(out);
	CHECK(d && strstr(d, "|NetLock_F\xc5\x91tan\xc3\xbas\xc3\xadtv\xc3\xa1ny.pem|"));
	CHECK(d && strstr(d, "etc/ssl/NetLock_F\xc5\x91tan\xc3\xbas\xc3\xadtv\xc3\xa1ny.pem f"));
}

TEST(layer_errors_name_the_member_and_leave_no_file)
{
	static const struct spec dup[] = {
		{.name = "a", .data = "1"}, {.name = "./a", .data = "2"}, {.name = NULL}};
	static const struct spec dangling[] = {{.name = "a", .link = "missing", .hard = true},
					       {.name = NULL}};
	static const struct spec gone[] = {
		{.name = ".wh.b"}, {.name = "a", .link = ".wh.b", .hard = true}, {.name = NULL}};
	struct imgf_squash_opts o = {.epoch = EPOCH, .drop = no_drop};
	_cleanup_free_ char *in = tpath("bad.tar"), *out = tpath("bad-layer.tar");
	struct imgf_layer l;
	struct imgf_error *err = NULL;

	write_tar(in, dup);
	CHECK(imgf_squash_layer(in, out, &o, &l, &err) < 0);
	CHECK_ERR(err, "member 'a' appears twice");
	CHECK(access(out, F_OK) < 0);
	imgf_error_clear(&err);

	write_tar(in, dangling);
	CHECK(imgf_squash_layer(in, out, &o, &l, &err) < 0);
	CHECK_ERR(err, "member 'a': hard link to 'missing', which is not in the archive");
	CHECK(access(out, F_OK) < 0);
	imgf_error_clear(&err);

	write_tar(in, gone);
	CHECK(imgf_squash_layer(in, out, &o, &l, &err) < 0);
	CHECK_ERR(err, "hard link to '.wh.b', which is not in the archive");
	imgf_error_clear(&err);

	_cleanup_free_ char *none = tpath("no-such.tar");
	CHECK(imgf_squash_layer(none, out, &o, &l, &err) < 0);
	CHECK_ERR(err, "no-such.tar");
	CHECK(access(out, F_OK) < 0);
	imgf_error_clear(&err);
}

TEST(image_config_is_canonical_and_its_digest_is_the_id)
{
	json_t *cc = json_pack("{s:[s],s:{s:s},s:s}", "Env", "container=docker", "Labels", "b", "1",
			       "StopSignal", "SIGRTMIN+3");
	char id1[IMGF_DIGEST_ID_MAX], id2[IMGF_DIGEST_ID_MAX];
	_cleanup_free_ char *c1 = imgf_image_config(cc, "amd64", NULL, "linux", EPOCH,
						    "imgforge test", "sha256:abc", id1);
	_cleanup_free_ char *c2 = imgf_image_config(cc, "amd64", NULL, "linux", EPOCH,
						    "imgforge test", "sha256:abc", id2);
	json_decref(cc);
	CHECK_STR(c1, c2);
	CHECK_STR(id1, id2);
	CHECK_STR(c1, "{\"architecture\":\"amd64\",\"author\":\"imgforge test\",\"config\":{"
		      "\"Env\":[\"container=docker\"],\"Labels\":{\"b\":\"1\"},\"StopSignal\":"
		      "\"SIGRTMIN+3\"},\"created\":\"2023-11-14T22:13:20Z\",\"history\":[{"
		      "\"created\":\"2023-11-14T22:13:20Z\",\"created_by\":\"imgforge test\"}],"
		      "\"os\":\"linux\",\"rootfs\":{\"diff_ids\":[\"sha256:abc\"],\"type\":"
		      "\"layers\"}}");
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, c1, strlen(c1), hex);
	_cleanup_free_ char *want = xasprintf("sha256:%s", hex);
	CHECK_STR(id1, want);
}

TEST(image_archive_holds_manifest_config_and_layer)
{
	_cleanup_free_ char *layer = tpath("archive-layer.tar"), *out = tpath("image.tar");
	/* A layer bigger than one read chunk, not a multiple of the block size. */
	size_t n = (200u << 10) + 7;
	_cleanup_free_ char *data = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7);
	FILE *f = fopen(layer, "wb");
	CHECK(f && fwrite(data, 1, n, f) == n);
	fclose(f);
	const char *config = "{\"os\":\"linux\"}";
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, config, strlen(config), hex);

	struct imgf_error *err = NULL;
	struct imgf_image_archive *ia = imgf_image_archive_open(config, layer, "r/x:1", &err);
	CHECK(ia != NULL);
	f = fopen(out, "wb");
	char buf[1000]; /* small reads: the pieces must join up */
	ssize_t got;
	while ((got = imgf_image_archive_read(ia, buf, sizeof(buf), &err)) > 0)
		fwrite(buf, 1, (size_t)got, f);
	CHECK(got == 0 && err == NULL);
	CHECK(imgf_image_archive_read(ia, buf, sizeof(buf), &err) == 0);
	fclose(f);
	imgf_image_archive_free(ia);

	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	CHECK(archive_read_open_filename(a, out, 10240) == ARCHIVE_OK);
	struct archive_entry *e;
	_cleanup_free_ char *cfg_name = xasprintf("%s.json", hex);
	_cleanup_free_ char *manifest_want = xasprintf(
		"[{\"Config\":\"%s\",\"Layers\":[\"layer.tar\"],\"RepoTags\":[\"r/x:1\"]}]",
		cfg_name);
	const char *names[] = {"manifest.json", cfg_name, "layer.tar"};
	const char *bodies[] = {manifest_want, config, data};
	size_t sizes[] = {strlen(manifest_want), strlen(config), n};
	for (int i = 0; i < 3; i++) {
		CHECK(archive_read_next_header(a, &e) == ARCHIVE_OK);
		CHECK_STR(archive_entry_pathname(e), names[i]);
		CHECK(archive_entry_size(e) == (la_int64_t)sizes[i]);
		char *body = xmalloc(sizes[i] + 1);
		CHECK(archive_read_data(a, body, sizes[i] + 1) == (la_ssize_t)sizes[i]);
		CHECK(memcmp(body, bodies[i], sizes[i]) == 0);
		free(body);
	}
	CHECK(archive_read_next_header(a, &e) == ARCHIVE_EOF);
	archive_read_free(a);

	_cleanup_free_ char *none = tpath("no-layer.tar");
	CHECK(imgf_image_archive_open(config, none, NULL, &err) == NULL);
	CHECK_ERR(err, "no-layer.tar");
	imgf_error_clear(&err);
}

__attribute__((constructor)) static void setup(void)
{
	CHECK(make_temp_dir("imgf-test-squash", &tmpdir, NULL) == 0);
}

__attribute__((destructor)) static void teardown(void)
{
	rm_rf(tmpdir, NULL);
	free(tmpdir);
}
