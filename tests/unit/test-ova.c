/*
 * src/disk/ova.c and src/base/run.c: the OVA is a USTAR tar of NAME.ovf, NAME.mf and NAME.vmdk in
 * that order; every .mf line matches its member; NAME.ova.sha256 matches the .ova; the OVF parses
 * and agrees with the disk (size, capacity, hardware, properties); the vmdk is streamOptimized
 * and holds the disk's contents; the same inputs give the same bytes; bad inputs give precise
 * errors and leave nothing behind. imgf_run reports what a failing tool said.
 *
 * The disk is a small qcow2 made with qemu-img (and some data written with qemu-io). The OVF
 * is read back with xmllint's XPath. Without qemu-img or xmllint the tests that need them are
 * reported as skipped, saying which: they need what the machine lacks.
 *
 * IMGF_TEST_KEEP_OVA=DIR: the reproducibility test writes its second OVA into DIR (for
 * tests/integration/t1300-ova.sh, which hands it to virt-v2v).
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "ova.h"
#include "run.h"
#include "sidecar.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

#define NAME "ubuntu-2204+kube-v1.31.2"
#define TIMESTAMP 1700000000
#define CUSTOM_VALUE "a<b & \"c\" 'd' >\ttab\nline"

static bool have_cmd(const char *cmd)
{
	const char *path = getenv("PATH");
	if (!path)
		return false;
	_cleanup_free_ char *copy = xstrdup(path);
	for (char *dir = copy, *next; dir; dir = next) {
		next = strchr(dir, ':');
		if (next)
			*next++ = '\0';
		_cleanup_free_ char *p = path_join(*dir ? dir : ".", cmd);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

/* False, with the test marked skipped, when the machine lacks cmd; the caller returns. */
static bool need(const char *cmd, const char *package)
{
	static char why[128];
	if (have_cmd(cmd))
		return true;
	snprintf(why, sizeof(why), "needs '%s' (Debian package %s)", cmd, package);
	test_skip_reason = why;
	return false;
}

/* Run a command that must succeed; its stdout (NUL-terminated) when wanted. */
static char *run_ok(char *const *argv)
{
	struct strbuf out = STRBUF_INIT;
	struct imgf_error *err = NULL;
	if (imgf_run(argv, &out, &err) < 0) {
		fprintf(stderr, "  %s\n", err->msg);
		test_failed_flag = 1;
	}
	imgf_error_free(err);
	return strbuf_detach(&out, NULL);
}

/* A work area: base/disk.qcow2 (8 MiB virtual, 1 MiB of 0xab then 64 KiB of 0xcd), base/out. */
struct fixture {
	char *base;
	char *disk;
	char *out;
	json_t *vars;
	json_t *custom;
	struct imgf_ova_opts opts;
};

static void fixture_init(struct fixture *f)
{
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-ova", &f->base, &err) == 0);
	imgf_error_free(err);
	f->disk = path_join(f->base, "disk.qcow2");
	f->out = path_join(f->base, "out");
	CHECK(mkdir(f->out, 0755) == 0);
	char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", f->disk, "8M", NULL};
	free(run_ok(create));
	if (have_cmd("qemu-io")) {
		char *write1[] = {"qemu-io", "-c", "write -P 0xab 0 1M", "-f", "qcow2",
				  f->disk,   NULL};
		char *write2[] = {"qemu-io", "-c", "write -P 0xcd 4M 64k", "-f", "qcow2",
				  f->disk,   NULL};
		free(run_ok(write1));
		free(run_ok(write2));
	}
	f->vars = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "distro_name", "ubuntu",
			    "distro_version", "22.04", "kubernetes_semver", "v1.31.2",
			    "containerd_version", "2.0.0", "kubernetes_cni_semver", "v1.5.1",
			    "ova_cpus", "4", "ova_memory_mb", "4096", "ova_nic_network",
			    "Lab & <Net>", "ova_os_type", "ubuntu64Guest");
	f->custom = json_pack("{s:s,s:s}", "ZZ_LAST", "z", "CUSTOM", CUSTOM_VALUE);
	f->opts = (struct imgf_ova_opts){
		.disk = f->disk,
		.out_dir = f->out,
		.name = NAME,
		.vars = f->vars,
		.custom_properties = f->custom,
		.build_timestamp = TIMESTAMP,
	};
}

static void fixture_release(struct fixture *f)
{
	struct imgf_error *err = NULL;
	CHECK(rm_rf(f->base, &err) == 0);
	imgf_error_free(err);
	free(f->base);
	free(f->disk);
	free(f->out);
	json_decref(f->vars);
	json_decref(f->custom);
}

/* The names in a directory, sorted, one per line. */
static char *dir_listing(const char *dir)
{
	struct dirent **ents = NULL;
	int n = scandir(dir, &ents, NULL, alphasort);
	struct strbuf sb = STRBUF_INIT;
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, ".."))
			strbuf_addf(&sb, "%s\n", ents[i]->d_name);
		free(ents[i]);
	}
	free(ents);
	if (n < 0)
		strbuf_addstr(&sb, "(unreadable)");
	return strbuf_detach(&sb, NULL);
}

static char *read_text(const char *path)
{
	char *s = NULL;
	struct imgf_error *err = NULL;
	if (read_file(path, 0, &s, NULL, &err) < 0) {
		fprintf(stderr, "  %s\n", err->msg);
		imgf_error_free(err);
		test_failed_flag = 1;
		return xstrdup("(unreadable)");
	}
	return s;
}

/* A member of the OVA as read back: header fields, sha256 of the data, the data on disk. */
struct member {
	char *name;
	int format;
	mode_t type, perm;
	int64_t uid, gid, mtime, size;
	char *uname;
	char sha256[IMGF_DIGEST_HEX_MAX];
	char *path; /* the data, extracted into the fixture's base */
};

static size_t read_ova(const char *ova, const char *dir, struct member *m, size_t max)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_all(a);
	CHECK(archive_read_open_filename(a, ova, 10240) == ARCHIVE_OK);
	struct archive_entry *e;
	size_t n = 0;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK && n < max) {
		struct member *g = &m[n++];
		g->name = xstrdup(archive_entry_pathname(e));
		g->format = archive_format(a);
		g->type = archive_entry_filetype(e);
		g->perm = archive_entry_perm(e);
		g->uid = archive_entry_uid(e);
		g->gid = archive_entry_gid(e);
		g->uname = xstrdup(archive_entry_uname(e) ? archive_entry_uname(e) : "");
		g->mtime = archive_entry_mtime(e);
		g->size = archive_entry_size(e);
		g->path = xasprintf("%s/extracted-%zu", dir, n);
		FILE *out = fopen(g->path, "w");
		CHECK(out != NULL);
		struct imgf_digest d;
		imgf_digest_init(&d, IMGF_SHA256);
		char buf[65536];
		la_ssize_t got;
		while ((got = archive_read_data(a, buf, sizeof(buf))) > 0) {
			imgf_digest_update(&d, buf, (size_t)got);
			if (out)
				CHECK(fwrite(buf, 1, (size_t)got, out) == (size_t)got);
		}
		CHECK(got == 0);
		imgf_digest_final_hex(&d, g->sha256);
		if (out)
			CHECK(fclose(out) == 0);
	}
	CHECK(r == ARCHIVE_EOF);
	archive_read_free(a);
	return n;
}

static void members_free(struct member *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].name);
		free(m[i].uname);
		free(m[i].path);
	}
}

/* An XPath string() over the OVF, namespaces ignored by the callers' local-name() tests. */
static char *ovf_xpath(const char *ovf, const char *expr)
{
	_cleanup_free_ char *full = xasprintf("string(%s)", expr);
	char *argv[] = {"xmllint", "--xpath", full, (char *)ovf, NULL};
	char *out = run_ok(argv);
	size_t len = strlen(out);
	if (len && out[len - 1] == '\n') /* xmllint ends its answer with one */
		out[len - 1] = '\0';
	return out;
}

#define EL(name) "*[local-name()='" name "']"
#define AT(name) "@*[local-name()='" name "']"
#define ITEM(type) "//" EL("Item") "[" EL("ResourceType") "='" type "']/"

static void check_xpath(const char *ovf, const char *expr, const char *want)
{
	_cleanup_free_ char *got = ovf_xpath(ovf, expr);
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "  xpath %s\n    got:  '%s'\n    want: '%s'\n", expr, got, want);
		test_failed_flag = 1;
	}
}

static int64_t json_int_at(json_t *j, const char *key)
{
	return json_integer_value(json_object_get(j, key));
}

TEST(ova_members_manifest_and_checksum)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	char **files = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_write(&f.opts, &files, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	CHECK(files && strv_len(files) == 2);
	if (files && strv_len(files) == 2) {
		CHECK_STR(files[0], NAME ".ova");
		CHECK_STR(files[1], NAME ".ova.sha256");
	}
	strv_free(files);

	/* Only the two outputs are left: no work directory, no vmdk, ovf or mf. */
	_cleanup_free_ char *listing = dir_listing(f.out);
	CHECK_STR(listing, NAME ".ova\n" NAME ".ova.sha256\n");

	_cleanup_free_ char *ova = path_join(f.out, NAME ".ova");
	_cleanup_free_ char *sum_path = path_join(f.out, NAME ".ova.sha256");
	char ova_hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(ova, IMGF_SHA256, ova_hex, NULL) == 0);
	_cleanup_free_ char *want_sum = xasprintf("%s\n", ova_hex);
	_cleanup_free_ char *sum = read_text(sum_path);
	CHECK_STR(sum, want_sum);

	struct member m[4] = {0};
	size_t n = read_ova(ova, f.base, m, ARRAY_SIZE(m));
	CHECK(n == 3);
	const char *want_names[] = {NAME ".ovf", NAME ".mf", NAME ".vmdk"};
	for (size_t i = 0; i < n && i < 3; i++) {
		CHECK_STR(m[i].name, want_names[i]);
		CHECK(m[i].format == ARCHIVE_FORMAT_TAR_USTAR);
		CHECK(m[i].type == AE_IFREG);
		CHECK(m[i].perm == 0644);
		CHECK(m[i].uid == 0 && m[i].gid == 0);
		CHECK_STR(m[i].uname, "root");
		CHECK(m[i].mtime == TIMESTAMP);
	}
	if (n == 3) {
		/* The manifest: one line per other member, each with that member's sha256. */
		_cleanup_free_ char *mf = read_text(m[1].path);
		_cleanup_free_ char *want_mf =
			xasprintf("SHA256(%s)= %s\nSHA256(%s)= %s\n", m[0].name, m[0].sha256,
				  m[2].name, m[2].sha256);
		CHECK_STR(mf, want_mf);
	}
	members_free(m, n);
	fixture_release(&f);
}

/* A vmdk of many copy buffers (incompressible data): the digest the hashing thread computes
 * from the copy's buffers is the vmdk's, and the .ova.sha256 the .ova's. */
TEST(ova_manifest_matches_a_vmdk_of_many_buffers)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	_cleanup_free_ char *raw = path_join(f.base, "noise.raw");
	size_t len = 12u << 20;
	_cleanup_free_ char *data = xmalloc(len);
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (char)x;
	}
	struct imgf_error *err = NULL;
	CHECK(write_file_atomic(raw, data, len, 0644, &err) == 0);
	f.opts.disk = raw;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	_cleanup_free_ char *ova = path_join(f.out, NAME ".ova");
	_cleanup_free_ char *sum_path = path_join(f.out, NAME ".ova.sha256");
	char ova_hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(ova, IMGF_SHA256, ova_hex, NULL) == 0);
	_cleanup_free_ char *want_sum = xasprintf("%s\n", ova_hex);
	_cleanup_free_ char *sum = read_text(sum_path);
	CHECK_STR(sum, want_sum);
	struct member m[4] = {0};
	size_t n = read_ova(ova, f.base, m, ARRAY_SIZE(m));
	CHECK(n == 3);
	if (n == 3) {
		struct stat st;
		CHECK(stat(m[2].path, &st) == 0 && st.st_size > 8 * 1024 * 1024);
		_cleanup_free_ char *mf = read_text(m[1].path);
		_cleanup_free_ char *want_mf =
			xasprintf("SHA256(%s)= %s\nSHA256(%s)= %s\n", m[0].name, m[0].sha256,
				  m[2].name, m[2].sha256);
		CHECK_STR(mf, want_mf);
	}
	members_free(m, n);
	fixture_release(&f);
}

/* image-upload takes the .ova's sha256 from the build instead of reading the .ova again. */
TEST(ova_sha256_is_stamped_for_image_upload)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	_cleanup_free_ char *ova = path_join(f.out, NAME ".ova");
	_cleanup_free_ char *sum_path = path_join(f.out, NAME ".ova.sha256");
	if (getxattr(sum_path, IMGF_SIDECAR_XATTR, NULL, 0) < 0 && errno == ENOTSUP) {
		printf("# skipped: no user xattrs in '%s'\n", f.out);
	} else {
		char ova_hex[IMGF_DIGEST_HEX_MAX], reused[65];
		const char *why = NULL;
		CHECK(imgf_digest_file(ova, IMGF_SHA256, ova_hex, NULL) == 0);
		CHECK(imgf_sidecar_reuse(ova, reused, &why));
		CHECK_STR(reused, ova_hex);
		CHECK(why == NULL);
	}
	fixture_release(&f);
}

TEST(ova_descriptor_agrees_with_the_disk)
{
	if (!need("qemu-img", "qemu-utils") || !need("xmllint", "libxml2-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	imgf_error_free(err);
	_cleanup_free_ char *ova = path_join(f.out, NAME ".ova");
	struct member m[4] = {0};
	size_t n = read_ova(ova, f.base, m, ARRAY_SIZE(m));
	CHECK(n == 3);
	if (n != 3) {
		members_free(m, n);
		fixture_release(&f);
		return;
	}
	const char *ovf = m[0].path, *vmdk = m[2].path;

	/* Well-formed XML. */
	char *lint[] = {"xmllint", "--noout", (char *)ovf, NULL};
	free(run_ok(lint));

	char *info_disk[] = {"qemu-img", "info", "--output=json", "-f", "qcow2", f.disk, NULL};
	char *info_vmdk[] = {"qemu-img", "info", "--output=json", "-f", "vmdk", (char *)vmdk, NULL};
	_cleanup_free_ char *disk_text = run_ok(info_disk);
	_cleanup_free_ char *vmdk_text = run_ok(info_vmdk);
	json_t *disk_info = json_loads(disk_text, 0, NULL);
	json_t *vmdk_info = json_loads(vmdk_text, 0, NULL);
	CHECK(disk_info && vmdk_info);

	/* References size is the vmdk member's size; capacity is the disk's virtual size. */
	_cleanup_free_ char *size = xasprintf("%lld", (long long)m[2].size);
	check_xpath(ovf, "//" EL("References") "/" EL("File") "/" AT("size"), size);
	check_xpath(ovf, "//" EL("References") "/" EL("File") "/" AT("href"), NAME ".vmdk");
	_cleanup_free_ char *capacity =
		xasprintf("%lld", (long long)json_int_at(disk_info, "virtual-size"));
	CHECK_STR(capacity, "8388608");
	check_xpath(ovf, "//" EL("Disk") "/" AT("capacity"), capacity);
	check_xpath(ovf, "//" EL("Disk") "/" AT("capacityAllocationUnits"), "byte");
	check_xpath(ovf, "//" EL("Disk") "/" AT("format"),
		    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized");
	/* populatedSize: the data written, 1 MiB + 64 KiB (qemu-io present), at most capacity. */
	_cleanup_free_ char *populated = ovf_xpath(ovf, "//" EL("Disk") "/" AT("populatedSize"));
	if (have_cmd("qemu-io"))
		CHECK_STR(populated, "1114112");
	CHECK(strtoull(populated, NULL, 10) <= 8388608);

	/* The vmdk is streamOptimized and holds exactly what the disk holds. */
	CHECK_STR(json_string_value(json_object_get(vmdk_info, "format")), "vmdk");
	json_t *spec = json_object_get(json_object_get(vmdk_info, "format-specific"), "data");
	CHECK_STR(json_string_value(json_object_get(spec, "create-type")), "streamOptimized");
	CHECK(json_int_at(vmdk_info, "virtual-size") == json_int_at(disk_info, "virtual-size"));
	char *compare[] = {"qemu-img", "compare", "-q",	  "-f",		"qcow2",
			   "-F",       "vmdk",	  f.disk, (char *)vmdk, NULL};
	free(run_ok(compare));

	/* The hardware the variables asked for, escaped where needed. */
	check_xpath(ovf, ITEM("3") EL("VirtualQuantity"), "4");
	check_xpath(ovf, ITEM("4") EL("VirtualQuantity"), "4096");
	check_xpath(ovf, ITEM("4") EL("AllocationUnits"), "byte * 2^20");
	check_xpath(ovf, ITEM("6") EL("ResourceSubType"), "VirtualSCSI");
	check_xpath(ovf, ITEM("17") EL("HostResource"), "ovf:/disk/vmdisk1");
	check_xpath(ovf, ITEM("17") EL("Parent"), "3");
	check_xpath(ovf, ITEM("10") EL("ResourceSubType"), "VmxNet3");
	check_xpath(ovf, ITEM("10") EL("Connection"), "Lab & <Net>");
	check_xpath(ovf, "//" EL("Network") "/" AT("name"), "Lab & <Net>");
	check_xpath(ovf, "//" EL("OperatingSystemSection") "/" AT("osType"), "ubuntu64Guest");
	check_xpath(ovf, "//" EL("OperatingSystemSection") "/" AT("id"), "94");
	check_xpath(ovf, "//" EL("VirtualSystemType"), "vmx-13");
	check_xpath(ovf, "//" EL("VirtualSystem") "/" EL("Name"), NAME);

	/* ProductSection: the six properties, then the custom ones sorted by key. */
	static const char *const props[][2] = {
		{"DISTRO_NAME", "ubuntu"},	  {"DISTRO_VERSION", "22.04"},
		{"KUBERNETES_SEMVER", "v1.31.2"}, {"CONTAINERD_VERSION", "2.0.0"},
		{"CNI_VERSION", "v1.5.1"},	  {"BUILD_TIMESTAMP", "1700000000"},
		{"CUSTOM", CUSTOM_VALUE},	  {"ZZ_LAST", "z"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(props); i++) {
		_cleanup_free_ char *at =
			xasprintf("(//" EL("Property") ")[%zu]/" AT("key"), i + 1);
		check_xpath(ovf, at, props[i][0]);
		_cleanup_free_ char *value = xasprintf(
			"//" EL("Property") "[" AT("key") "='%s']/" AT("value"), props[i][0]);
		check_xpath(ovf, value, props[i][1]);
		_cleanup_free_ char *type = xasprintf(
			"//" EL("Property") "[" AT("key") "='%s']/" AT("type"), props[i][0]);
		check_xpath(ovf, type, "string");
	}
	check_xpath(ovf, "count(//" EL("Property") ")", "8");
	/* BIOS, the default, is not declared. */
	check_xpath(ovf, "count(//" EL("VirtualHardwareSection") "/" EL("Config") ")", "0");

	json_decref(disk_info);
	json_decref(vmdk_info);
	members_free(m, n);
	fixture_release(&f);
}

TEST(ova_defaults_from_distro)
{
	if (!need("qemu-img", "qemu-utils") || !need("xmllint", "libxml2-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	json_t *vars = json_pack("{s:s,s:s,s:s,s:s,s:s}", "distro_name", "debian", "distro_version",
				 "12", "kubernetes_semver", "v1.31.2", "containerd_version",
				 "2.0.0", "kubernetes_cni_semver", "v1.5.1");
	f.opts.vars = vars;
	f.opts.custom_properties = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	imgf_error_free(err);
	_cleanup_free_ char *ova = path_join(f.out, NAME ".ova");
	struct member m[4] = {0};
	size_t n = read_ova(ova, f.base, m, ARRAY_SIZE(m));
	CHECK(n == 3);
	if (n >= 1) {
		check_xpath(m[0].path, ITEM("3") EL("VirtualQuantity"), "2");
		check_xpath(m[0].path, ITEM("4") EL("VirtualQuantity"), "2048");
		check_xpath(m[0].path, ITEM("10") EL("Connection"), "VM Network");
		check_xpath(m[0].path, "//" EL("OperatingSystemSection") "/" AT("osType"),
			    "debian11_64Guest");
		check_xpath(m[0].path, "//" EL("OperatingSystemSection") "/" AT("id"), "96");
		check_xpath(m[0].path, "count(//" EL("Property") ")", "6");
	}
	members_free(m, n);
	json_decref(vars);
	fixture_release(&f);
}

/* The same disk and variables give the same bytes, the vmdk's descriptor CID included. */
TEST(ova_is_reproducible)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	imgf_error_free(err);
	err = NULL;

	const char *keep = getenv("IMGF_TEST_KEEP_OVA");
	_cleanup_free_ char *second = keep && *keep ? xstrdup(keep) : path_join(f.base, "out2");
	CHECK(mkdir_p(second, 0755, &err) == 0);
	imgf_error_free(err);
	err = NULL;
	f.opts.out_dir = second;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	_cleanup_free_ char *sum1_path = path_join(f.out, NAME ".ova.sha256");
	_cleanup_free_ char *sum2_path = path_join(second, NAME ".ova.sha256");
	_cleanup_free_ char *sum1 = read_text(sum1_path);
	_cleanup_free_ char *sum2 = read_text(sum2_path);
	CHECK_STR(sum2, sum1);
	if (keep && *keep)
		fprintf(stderr, "  kept '%s/%s.ova'\n", keep, NAME);
	fixture_release(&f);
}

/*
 * firmware uefi: the VirtualHardwareSection says vmw:firmware efi, as vSphere exports a UEFI
 * VM. IMGF_TEST_KEEP_OVA_UEFI=DIR keeps the OVA in DIR (t1300 hands it to virt-v2v).
 */
TEST(ova_declares_uefi_firmware)
{
	if (!need("qemu-img", "qemu-utils") || !need("xmllint", "libxml2-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	const char *keep = getenv("IMGF_TEST_KEEP_OVA_UEFI");
	if (keep && *keep) {
		struct imgf_error *e = NULL;
		CHECK(mkdir_p(keep, 0755, &e) == 0);
		imgf_error_free(e);
		f.opts.out_dir = keep;
	}
	f.opts.firmware = "uefi";
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	imgf_error_free(err);
	_cleanup_free_ char *ova = path_join(f.opts.out_dir, NAME ".ova");
	struct member m[4] = {0};
	size_t n = read_ova(ova, f.base, m, ARRAY_SIZE(m));
	CHECK(n == 3);
	if (n == 3) {
		const char *ovf = m[0].path;
		check_xpath(ovf,
			    "count(/" EL("Envelope") "/" EL("VirtualSystem") "/" EL(
				    "VirtualHardwareSection") "/" EL("Config") ")",
			    "1");
		const char *cfg = "//" EL("VirtualHardwareSection") "/" EL("Config");
		_cleanup_free_ char *key = xasprintf("%s/" AT("key"), cfg);
		_cleanup_free_ char *value = xasprintf("%s/" AT("value"), cfg);
		_cleanup_free_ char *required = xasprintf("%s/" AT("required"), cfg);
		check_xpath(ovf, key, "firmware");
		check_xpath(ovf, value, "efi");
		check_xpath(ovf, required, "false");
		/* in VMware's namespace, as vSphere reads it */
		_cleanup_free_ char *ns = xasprintf("namespace-uri(%s/" AT("key") ")", cfg);
		check_xpath(ovf, ns, "http://www.vmware.com/schema/ovf");
	}
	members_free(m, n);
	if (keep && *keep)
		fprintf(stderr, "  kept '%s/%s.ova'\n", keep, NAME);
	fixture_release(&f);
}

TEST(ova_firmware_other_than_bios_or_uefi_is_refused)
{
	struct imgf_ova_opts o = {
		.name = NAME,
		.firmware = "efi",
		.build_timestamp = TIMESTAMP,
	};
	json_t *vars = json_pack("{s:s,s:s,s:s,s:s,s:s}", "distro_name", "ubuntu", "distro_version",
				 "22.04", "kubernetes_semver", "v1.31.2", "containerd_version",
				 "2.0.0", "kubernetes_cni_semver", "v1.5.1");
	o.vars = vars;
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_validate(&o, &err) < 0);
	CHECK_ERR(err, "firmware 'efi': expected bios or uefi");
	imgf_error_free(err);
	err = NULL;
	o.firmware = "uefi";
	CHECK(imgf_ova_validate(&o, &err) == 0);
	imgf_error_free(err);
	json_decref(vars);
}

static long long vmdk_cid(const char *vmdk)
{
	char *info[] = {"qemu-img", "info", "--output=json", "-f", "vmdk", (char *)vmdk, NULL};
	_cleanup_free_ char *text = run_ok(info);
	json_t *j = json_loads(text, 0, NULL);
	long long cid = json_integer_value(json_object_get(
		json_object_get(json_object_get(j, "format-specific"), "data"), "cid"));
	json_decref(j);
	return cid;
}

/* qemu-img writes the CID with "%x": one time in sixteen it has fewer than eight digits. */
TEST(vmdk_cid_of_any_width_becomes_eight_digits)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	_cleanup_free_ char *vmdk = path_join(f.base, "t.vmdk");
	char *convert[] = {"qemu-img", "convert", "-f", "qcow2",
			   "-O",       "vmdk",	  "-o", "subformat=streamOptimized",
			   f.disk,     vmdk,	  NULL};
	free(run_ok(convert));

	/* Make the CID three digits, as qemu-img does when its random value is small. */
	char *data = NULL;
	size_t len = 0;
	CHECK(read_file(vmdk, 0, &data, &len, NULL) == 0);
	char *cid = data ? memmem(data, len, "\nCID=", 5) : NULL;
	CHECK(cid != NULL);
	if (cid) {
		char *val = cid + 5, *nl = strchr(val, '\n');
		char *end = nl + strlen(nl); /* the descriptor's text ends at its NUL padding */
		memcpy(val, "abc", 3);
		memmove(val + 3, nl, (size_t)(end - nl));
		memset(end - (nl - val - 3), 0, (size_t)(nl - val - 3));
		CHECK(write_file_atomic(vmdk, data, len, 0644, NULL) == 0);
		CHECK(vmdk_cid(vmdk) == 0xabc);
	}
	free(data);

	struct imgf_error *err = NULL;
	CHECK(imgf_vmdk_set_cid(vmdk, 0x0badcafe, &err) == 0);
	imgf_error_free(err);
	CHECK(vmdk_cid(vmdk) == 0x0badcafe);
	data = NULL;
	CHECK(read_file(vmdk, 0, &data, &len, NULL) == 0);
	static const char want[] = "\nCID=0badcafe\nparentCID=ffffffff\n";
	CHECK(data && memmem(data, len, want, sizeof(want) - 1));
	free(data);
	char *compare[] = {"qemu-img", "compare", "-q",	  "-f", "qcow2",
			   "-F",       "vmdk",	  f.disk, vmdk, NULL};
	free(run_ok(compare));

	/* Anything else is left alone. */
	char before[IMGF_DIGEST_HEX_MAX], after[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(f.disk, IMGF_SHA256, before, NULL) == 0);
	err = NULL;
	CHECK(imgf_vmdk_set_cid(f.disk, 1, &err) == 1);
	CHECK(err == NULL);
	imgf_error_free(err);
	CHECK(imgf_digest_file(f.disk, IMGF_SHA256, after, NULL) == 0);
	CHECK_STR(after, before);
	fixture_release(&f);
}

/* Each call must fail with `needle` in the message and leave out_dir empty. */
static void check_refused(struct fixture *f, const char *needle)
{
	struct imgf_error *err = NULL;
	char **files = NULL;
	CHECK(imgf_ova_write(&f->opts, &files, &err) < 0);
	CHECK_ERR(err, needle);
	CHECK(files == NULL);
	_cleanup_free_ char *listing = dir_listing(f->out);
	CHECK_STR(listing, "");
	imgf_error_free(err);
}

TEST(ova_missing_disk_leaves_nothing)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	_cleanup_free_ char *missing = path_join(f.base, "missing.qcow2");
	f.opts.disk = missing;
	_cleanup_free_ char *want =
		xasprintf("ova '" NAME "': disk '%s': No such file or directory", missing);
	check_refused(&f, want);
	fixture_release(&f);
}

TEST(ova_qemu_img_failure_is_reported)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);
	_cleanup_free_ char *bogus = path_join(f.base, "bogus.qcow2");
	CHECK(write_file_atomic(bogus, "not a qcow2 image\n", 18, 0644, NULL) == 0);
	f.opts.disk = bogus;
	_cleanup_free_ char *want =
		xasprintf("disk '%s': 'qemu-img' exited with status 1: ", bogus);
	check_refused(&f, want);
	check_refused(&f, "qcow2");
	fixture_release(&f);
}

TEST(ova_bad_inputs_are_named)
{
	if (!need("qemu-img", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f);

	json_object_del(f.vars, "containerd_version");
	check_refused(&f, "variable 'containerd_version' is not set (the OVF's CONTAINERD_VERSION "
			  "property)");
	json_object_set_new(f.vars, "containerd_version", json_string("2.0.0"));

	json_object_set_new(f.vars, "ova_cpus", json_string("four"));
	check_refused(&f, "variable 'ova_cpus': 'four' is not a whole number");
	json_object_set_new(f.vars, "ova_cpus", json_string("0"));
	check_refused(&f, "variable 'ova_cpus': 0 is out of range");
	json_object_set_new(f.vars, "ova_cpus", json_string("2"));

	json_object_set_new(f.custom, "BAD", json_pack("[s]", "x"));
	check_refused(&f, "ovf_custom_properties: 'BAD' must be a string");
	json_object_set_new(f.custom, "BAD", json_string("bell\a"));
	check_refused(&f, "property 'BAD': control character 0x07 cannot be written to the OVF");
	json_object_del(f.custom, "BAD");
	json_object_set_new(f.custom, "DISTRO_NAME", json_string("x"));
	check_refused(&f, "ovf_custom_properties: 'DISTRO_NAME' is a built-in property");
	json_object_del(f.custom, "DISTRO_NAME");

	f.opts.name = "a/b";
	check_refused(&f, "name 'a/b' must be a file name");
	static char long_name[100];
	memset(long_name, 'x', sizeof(long_name) - 1);
	f.opts.name = long_name;
	check_refused(&f, "a USTAR member name holds 100 bytes");
	f.opts.name = NAME;

	f.opts.build_timestamp = -1;
	check_refused(&f, "build timestamp -1 does not fit a USTAR header");
	f.opts.build_timestamp = TIMESTAMP;

	/* And with everything put back, it works. */
	struct imgf_error *err = NULL;
	CHECK(imgf_ova_write(&f.opts, NULL, &err) == 0);
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(run_captures_stdout)
{
	char *argv[] = {"printf", "a\\nb", NULL};
	struct strbuf out = STRBUF_INIT;
	struct imgf_error *err = NULL;
	CHECK(imgf_run(argv, &out, &err) == 0);
	CHECK_STR(out.buf, "a\nb");
	strbuf_release(&out);
	imgf_error_free(err);
}

TEST(run_failure_ends_with_the_tools_last_lines)
{
	char *argv[] = {"sh", "-c",
			"echo noise; for i in 1 2 3 4 5 6; do echo line$i >&2; done; exit 3", NULL};
	struct imgf_error *err = NULL;
	CHECK(imgf_run(argv, NULL, &err) < 0);
	CHECK_ERR(err, "'sh' exited with status 3: line3; line4; line5; line6");
	CHECK(err && !strstr(err->msg, "line2"));
	imgf_error_free(err);
}

TEST(run_reports_a_missing_tool_and_signals)
{
	char *missing[] = {"imgf-no-such-tool", NULL};
	struct imgf_error *err = NULL;
	CHECK(imgf_run(missing, NULL, &err) < 0);
	/* glibc's posix_spawnp reports the failed exec; under valgrind, which cannot do vfork,
	 * the child exits 127 instead. */
	CHECK_ERR(err, "'imgf-no-such-tool'");
	CHECK(err && (strstr(err->msg, "run 'imgf-no-such-tool': No such file or directory") ||
		      strstr(err->msg, "exited with status 127")));
	imgf_error_free(err);

	char *killed[] = {"sh", "-c", "kill -KILL $$", NULL};
	err = NULL;
	CHECK(imgf_run(killed, NULL, &err) < 0);
	CHECK_ERR(err, "'sh' killed by signal 9");
	imgf_error_free(err);

	/* SIGPIPE is ignored here (as in imgforge); the tool must get the default back. */
	signal(SIGPIPE, SIG_IGN);
	char *status[] = {"grep", "^SigIgn", "/proc/self/status", NULL};
	struct strbuf out = STRBUF_INIT;
	err = NULL;
	CHECK(imgf_run(status, &out, &err) == 0);
	unsigned long long ignored = strtoull(out.buf + strlen("SigIgn:"), NULL, 16);
	CHECK(str_has_prefix(out.buf, "SigIgn:"));
	CHECK((ignored & (1ULL << (SIGPIPE - 1))) == 0);
	strbuf_release(&out);
	imgf_error_free(err);
}

TEST(run_caps_stdout)
{
	char *argv[] = {"head", "-c", "5000", "/dev/zero", NULL};
	struct strbuf out = STRBUF_INIT;
	out.max = 4096;
	struct imgf_error *err = NULL;
	CHECK(imgf_run(argv, &out, &err) < 0);
	CHECK_ERR(err, "'head': output larger than 4096 bytes");
	strbuf_release(&out);
	imgf_error_free(err);
}

TEST(run_stops_the_tool_when_interrupted)
{
	char *argv[] = {"sleep", "30", NULL};
	struct imgf_error *err = NULL;
	time_t start = time(NULL);
	imgf_interrupted = 1;
	CHECK(imgf_run(argv, NULL, &err) < 0);
	imgf_interrupted = 0;
	CHECK_ERR(err, "'sleep' interrupted");
	CHECK(err && err->status == IMGF_EXIT_INTERRUPTED);
	CHECK(time(NULL) - start < 10);
	imgf_error_free(err);
}
