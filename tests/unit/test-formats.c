/*
 * The disk formats beyond qcow2 and ova (post-processors/raw.c, ...), driven as the engine
 * drives them, through imgf_post_processors_run, on a small qcow2 made with qemu-img and
 * written to with qemu-io: what each writes is read back with its consumers' tools where
 * Debian has them (qemu-img info and compare) and independently of imgforge's own code; the
 * .sha256 and the manifest entry follow; bad keys and an artifact without a disk are refused
 * with nothing written.
 *
 * Without qemu-img or qemu-io the tests that need them are reported as skipped, saying which.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "builder.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "manifest.h"
#include "postprocessor.h"
#include "run.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"
#include "vhd.h"

extern const struct imgf_builder_ops imgf_docker_builder, imgf_qemu_builder;

#define NAME "ubuntu-2204+kube-v1.31.2"
#define MiB (1024 * 1024)
/* 5 MiB and 7 sectors: not a whole MiB, so the vhd's rounding shows */
#define DISK_SIZE (5 * MiB + 7 * 512)

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

/* Run a command that must succeed; its stdout (NUL-terminated). */
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

/* `qemu-img info` of a file read as `format`: the format it reports and the virtual size. */
static int64_t qemu_info(const char *path, const char *format, char **reported)
{
	char *argv[] = {"qemu-img",   "info", "--output=json", "-f", (char *)format,
			(char *)path, NULL};
	_cleanup_free_ char *out = run_ok(argv);
	json_t *j = json_loads(out, 0, NULL);
	CHECK(j != NULL);
	*reported = xstrdup(j ? json_string_value(json_object_get(j, "format")) : "");
	int64_t size = j ? json_integer_value(json_object_get(j, "virtual-size")) : -1;
	json_decref(j);
	return size;
}

/* A build of NAME in a temporary output directory under `builder`, with `pps` listed. */
struct fixture {
	struct imgf_config cfg;
	struct imgf_image_def def;
	struct imgf_build build;
	struct imgf_contract contract;
	struct imgf_artifact art;
	char *dir;
	char *disk; /* dir/NAME.qcow2 */
};

static void fixture_init(struct fixture *f, const struct imgf_builder_ops *builder, const char *pps)
{
	*f = (struct fixture){0};
	f->cfg.path = xstrdup("test.json");
	f->cfg.vars =
		json_pack("{s:s,s:s}", "build_name", "ubuntu-2204", "kubernetes_semver", "v1.31.2");
	f->def.name = xstrdup("capi-formats");
	f->def.file = xstrdup("images/test.json");
	f->def.post_processors = json_loads(pps, 0, NULL);
	CHECK(json_is_array(f->def.post_processors));
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-formats", &f->dir, &err) == 0);
	f->cfg.var_from = json_object();
	CHECK(imgf_contract_resolve(&f->cfg, &f->contract, &err) == 0);
	imgf_error_free(err);
	f->build = (struct imgf_build){
		.config = &f->cfg,
		.def = &f->def,
		.contract = &f->contract,
		.builder = builder,
		.out_dir = xstrdup(f->dir),
		.inputs = json_array(),
		.labels = json_object(),
	};
	f->art.files = xcalloc(1, sizeof(char *));
	if (builder != &imgf_qemu_builder) {
		f->art.id = xstrdup("sha256:0123");
		return;
	}
	/* 1 MiB of 0xab, 64 KiB of 0xcd at 3 MiB, the last sector 0xef; the rest reads as 0 */
	f->disk = path_join(f->dir, NAME ".qcow2");
	_cleanup_free_ char *size = xasprintf("%d", DISK_SIZE);
	_cleanup_free_ char *last = xasprintf("write -P 0xef %d 512", DISK_SIZE - 512);
	char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", f->disk, size, NULL};
	char *w1[] = {"qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", f->disk, NULL};
	char *w2[] = {"qemu-io", "-f", "qcow2", "-c", "write -P 0xcd 3M 64k", f->disk, NULL};
	char *w3[] = {"qemu-io", "-f", "qcow2", "-c", last, f->disk, NULL};
	free(run_ok(create));
	free(run_ok(w1));
	free(run_ok(w2));
	free(run_ok(w3));
	f->art.id = xstrdup(f->disk);
	f->art.disk = xstrdup(f->disk);
	f->art.files = strv_push(f->art.files, xstrdup(NAME ".qcow2"));
}

static void fixture_release(struct fixture *f)
{
	struct imgf_error *err = NULL;
	CHECK(rm_rf(f->dir, &err) == 0);
	imgf_error_free(err);
	free(f->dir);
	free(f->disk);
	imgf_artifact_release(&f->art);
	free(f->build.out_dir);
	json_decref(f->build.inputs);
	json_decref(f->build.labels);
	json_decref(f->def.post_processors);
	free(f->def.name);
	free(f->def.file);
	imgf_contract_release(&f->contract);
	json_decref(f->cfg.vars);
	json_decref(f->cfg.var_from);
	free(f->cfg.path);
}

/* Validate then run every post-processor of the fixture's image; the run's manifest in *m. */
static int run(struct fixture *f, json_t **m, struct imgf_error **err)
{
	*m = imgf_manifest_new();
	if (imgf_post_processors_validate(&f->build, err) < 0)
		return -1;
	struct imgf_pp_ctx c = {
		.build = &f->build,
		.art = &f->art,
		.artifact_id = f->art.id,
		.start = 1700000000,
		.manifest = *m,
	};
	return imgf_post_processors_run(&c, err);
}

/* What the sbom and provenance post-processors write for every image (attest.h). */
#define ATTESTATIONS "capi-formats.provenance.json\ncapi-formats.spdx.json\n"

/* The names in the fixture's directory, sorted, one per line. */
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
	return strbuf_detach(&sb, NULL);
}

/* The file's sha256 computed here, and its .sha256 sidecar says the same. */
static void check_sidecar(const char *path)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	struct imgf_error *err = NULL;
	CHECK(imgf_digest_file(path, IMGF_SHA256, hex, &err) == 0);
	imgf_error_free(err);
	_cleanup_free_ char *side = xasprintf("%s.sha256", path);
	_cleanup_free_ char *text = NULL, *want = xasprintf("%s\n", hex);
	CHECK(read_file(side, 4096, &text, NULL, NULL) == 0);
	CHECK_STR(text, want);
}

/* The manifest's entry lists `file` and its .sha256, right after each other, with sizes. */
static void check_manifest_lists(json_t *m, const char *dir, const char *file)
{
	json_t *builds = json_object_get(m, "builds");
	CHECK(json_array_size(builds) == 1);
	json_t *files = json_object_get(json_array_get(builds, 0), "files");
	_cleanup_free_ char *side = xasprintf("%s.sha256", file);
	_cleanup_free_ char *path = path_join(dir, file);
	struct stat st;
	CHECK(stat(path, &st) == 0);
	bool found = false;
	for (size_t i = 0; i + 1 < json_array_size(files); i++) {
		json_t *e = json_array_get(files, i);
		if (strcmp(json_string_value(json_object_get(e, "name")), file) != 0)
			continue;
		found = true;
		CHECK(json_integer_value(json_object_get(e, "size")) == (json_int_t)st.st_size);
		CHECK_STR(json_string_value(json_object_get(json_array_get(files, i + 1), "name")),
			  side);
	}
	CHECK(found);
}

/* ---- raw ---- */

TEST(raw_is_a_sparse_raw_disk_with_the_qcow2s_bytes)
{
	if (!need("qemu-img", "qemu-utils") || !need("qemu-io", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f, &imgf_qemu_builder, "[{\"type\": \"raw\"}]");
	json_t *m = NULL;
	struct imgf_error *err = NULL;
	CHECK(run(&f, &m, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	_cleanup_free_ char *raw = path_join(f.dir, NAME ".raw");
	_cleanup_free_ char *fmt = NULL;
	CHECK(qemu_info(raw, "raw", &fmt) == DISK_SIZE);
	CHECK_STR(fmt, "raw");
	/* byte for byte what the guest sees in the qcow2 */
	char *compare[] = {"qemu-img", "compare", "-q",	  "-f", "qcow2",
			   "-F",       "raw",	  f.disk, raw,	NULL};
	free(run_ok(compare));
	/* sparse: 1 MiB + 64 KiB + 512 of data, the rest holes (blocks are 512 bytes) */
	struct stat st;
	CHECK(stat(raw, &st) == 0);
	CHECK(st.st_size == DISK_SIZE);
	CHECK((int64_t)st.st_blocks * 512 < 2 * MiB);
	check_sidecar(raw);
	check_manifest_lists(m, f.dir, NAME ".raw");
	_cleanup_free_ char *ls = dir_listing(f.dir);
	CHECK_STR(ls, ATTESTATIONS NAME ".qcow2\n" NAME ".qcow2.sha256\n" NAME ".raw\n" NAME
					".raw.sha256\n");
	json_decref(m);
	fixture_release(&f);
}

/* ---- vhd ---- */

static uint64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The last 512 bytes of path. */
static void read_footer(const char *path, unsigned char f[512])
{
	memset(f, 0, 512);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	struct stat st;
	CHECK(fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= 512);
	if (fd >= 0)
		CHECK(pread(fd, f, 512, st.st_size - 512) == 512);
	if (fd >= 0)
		close(fd);
}

#define VHD_SIZE (6 * MiB) /* DISK_SIZE rounded up to a whole MiB */

TEST(vhd_is_a_fixed_vhd_of_a_whole_mib_whose_footer_checks_out)
{
	if (!need("qemu-img", "qemu-utils") || !need("qemu-io", "qemu-utils"))
		return;
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	struct fixture f;
	fixture_init(&f, &imgf_qemu_builder, "[{\"type\": \"vhd\"}]");
	json_t *m = NULL;
	struct imgf_error *err = NULL;
	CHECK(run(&f, &m, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	_cleanup_free_ char *vhd = path_join(f.dir, NAME ".vhd");
	struct stat st;
	CHECK(stat(vhd, &st) == 0);
	CHECK(st.st_size == VHD_SIZE + 512);
	/* qemu reads it as a vpc of the footer's current size, a whole MiB */
	_cleanup_free_ char *fmt = NULL;
	CHECK(qemu_info(vhd, "vpc", &fmt) == VHD_SIZE);
	CHECK_STR(fmt, "vpc");
	/* the qcow2's bytes, then zeros to the end */
	char *compare[] = {"qemu-img", "compare", "-q",	  "-f", "qcow2",
			   "-F",       "vpc",	  f.disk, vhd,	NULL};
	free(run_ok(compare));

	/* the footer, field by field, as the specification lays it out */
	unsigned char ft[512];
	read_footer(vhd, ft);
	CHECK(memcmp(ft, "conectix", 8) == 0);
	CHECK(be(ft + 8, 4) == 2);
	CHECK(be(ft + 12, 4) == 0x00010000);
	CHECK(be(ft + 16, 8) == UINT64_MAX);
	CHECK(be(ft + 24, 4) == 1700000000 - 946684800);
	CHECK(be(ft + 40, 8) == VHD_SIZE); /* original size */
	CHECK(be(ft + 48, 8) == VHD_SIZE); /* current size */
	/* CHS for 12288 sectors by the specification's algorithm: 17 sectors, 4 heads */
	CHECK(be(ft + 56, 2) == 180 && ft[58] == 4 && ft[59] == 17);
	CHECK(be(ft + 60, 4) == 2); /* fixed */
	uint32_t sum = 0;
	for (int i = 0; i < 512; i++)
		sum += i >= 64 && i < 68 ? 0 : ft[i];
	CHECK(be(ft + 64, 4) == (uint32_t)~sum);
	CHECK((ft[68 + 6] & 0xf0) == 0x80); /* unique id: RFC 9562 version 8 */
	CHECK(ft[84] == 0);		    /* saved state */
	for (int i = 85; i < 512; i++)
		CHECK(ft[i] == 0);

	check_sidecar(vhd);
	check_manifest_lists(m, f.dir, NAME ".vhd");
	_cleanup_free_ char *ls = dir_listing(f.dir);
	CHECK_STR(ls, ATTESTATIONS NAME ".qcow2\n" NAME ".qcow2.sha256\n" NAME ".vhd\n" NAME
					".vhd.sha256\n");
	json_decref(m);
	fixture_release(&f);
	unsetenv("SOURCE_DATE_EPOCH");
}

TEST(vhd_of_a_gpt_disk_has_its_backup_gpt_in_the_last_sector_of_the_whole_mib)
{
	if (!need("qemu-img", "qemu-utils") || !need("qemu-io", "qemu-utils") ||
	    !need("sgdisk", "gdisk"))
		return;
	struct fixture f;
	fixture_init(&f, &imgf_qemu_builder, "[{\"type\": \"vhd\"}]");
	/* the fixture's disk replaced by a GPT one of the same size, laid out by sgdisk */
	_cleanup_free_ char *gpt = path_join(f.dir, "gpt.raw");
	CHECK(truncate(f.disk, 0) == 0 && unlink(f.disk) == 0);
	int fd = open(gpt, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, DISK_SIZE) == 0);
	if (fd >= 0)
		close(fd);
	char *part[] = {"sgdisk", "-o", "-n", "1:2048:0", gpt, NULL};
	free(run_ok(part));
	char *to_qcow2[] = {"qemu-img", "convert", "-f", "raw", "-O", "qcow2", gpt, f.disk, NULL};
	free(run_ok(to_qcow2));
	CHECK(unlink(gpt) == 0);
	json_t *m = NULL;
	struct imgf_error *err = NULL;
	CHECK(run(&f, &m, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	/* the VHD's disk, as a consumer reads it: gdisk finds the backup at its end */
	_cleanup_free_ char *vhd = path_join(f.dir, NAME ".vhd");
	_cleanup_free_ char *back = path_join(f.dir, "back.raw");
	char *from_vhd[] = {"qemu-img", "convert", "-f", "vpc", "-O", "raw", vhd, back, NULL};
	free(run_ok(from_vhd));
	struct stat st;
	CHECK(stat(back, &st) == 0 && st.st_size == VHD_SIZE);
	char *verify[] = {"sgdisk", "-v", back, NULL};
	_cleanup_free_ char *out = run_ok(verify);
	if (!strstr(out, "No problems found"))
		fprintf(stderr, "  sgdisk -v: %s\n", out);
	CHECK(strstr(out, "No problems found") != NULL);
	unsigned char h[512];
	fd = open(back, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && pread(fd, h, 512, VHD_SIZE - 512) == 512);
	if (fd >= 0)
		close(fd);
	CHECK(memcmp(h, "EFI PART", 8) == 0);
	uint64_t my = 0;
	for (int i = 7; i >= 0; i--)
		my = my << 8 | h[24 + i];
	CHECK(my == VHD_SIZE / 512 - 1);
	CHECK(unlink(back) == 0);
	json_decref(m);
	fixture_release(&f);
}

TEST(vhd_geometry_follows_the_specification)
{
	struct imgf_vhd_geometry g = imgf_vhd_geometry(6 * MiB);
	CHECK(g.cylinders == 180 && g.heads == 4 && g.sectors == 17);
	g = imgf_vhd_geometry(30ULL << 30); /* 62914560 sectors: past 17 and 31 per track */
	CHECK(g.cylinders == 62415 && g.heads == 16 && g.sectors == 63);
	g = imgf_vhd_geometry(4ULL << 40); /* past what CHS holds: the largest geometry */
	CHECK(g.cylinders == 65535 && g.heads == 16 && g.sectors == 255);
}

/* A VHD whose footer is damaged anywhere it matters is refused, naming what is wrong. */
TEST(vhd_check_refuses_a_damaged_footer)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-vhd", &dir, NULL) == 0);
	_cleanup_free_ char *path = path_join(dir, "d.vhd");
	static const struct {
		int at;
		unsigned char value;
		const char *why;
	} cases[] = {
		{-1, 0, NULL},
		{0, 'C', "cookie is not 'conectix'"},
		{63, 3, "disk type is not 2 (fixed)"},
		{55, 1, "sizes are not the bytes before the footer"},
		{100, 1, "checksum does not match"},
		{67, 0, "checksum does not match"},
	};
	unsigned char id[16] = {1, 2, 3};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		unsigned char ft[512];
		imgf_vhd_footer(ft, MiB, 1700000000, id);
		if (cases[i].at >= 0)
			ft[cases[i].at] = cases[i].value;
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		CHECK(fd >= 0);
		CHECK(ftruncate(fd, MiB) == 0);
		CHECK(pwrite(fd, ft, 512, MiB) == 512);
		struct imgf_error *err = NULL;
		int r = imgf_vhd_check(fd, path, &err);
		if (cases[i].why) {
			CHECK(r < 0);
			_cleanup_free_ char *want =
				xasprintf("not a fixed vhd azure takes: %s", cases[i].why);
			CHECK_ERR(err, want);
		} else {
			CHECK(r == 0 && err == NULL);
		}
		imgf_error_free(err);
		close(fd);
	}
	/* a size that is no whole MiB, everything else consistent */
	unsigned char ft[512];
	imgf_vhd_footer(ft, MiB + 512, 1700000000, id);
	int fd = open(path, O_RDWR | O_TRUNC | O_CLOEXEC);
	CHECK(fd >= 0 && ftruncate(fd, MiB + 512) == 0 && pwrite(fd, ft, 512, MiB + 512) == 512);
	struct imgf_error *err = NULL;
	CHECK(imgf_vhd_check(fd, path, &err) < 0);
	CHECK_ERR(err, "size is not a whole MiB");
	imgf_error_free(err);
	close(fd);
	CHECK(rm_rf(dir, NULL) == 0);
}

/* ---- gce ---- */

#define GiB (1024LL * 1024 * 1024)

/*
 * The .tar.gz read with libarchive: gzip, GNU format, exactly one member, disk.raw, a regular
 * file of a whole GiB whose bytes are those of `want` (the disk as raw, extended with zeros).
 */
static void check_gce_tar(const char *tgz, const char *want)
{
	int fd = open(want, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	CHECK(archive_read_open_filename(a, tgz, 65536) == ARCHIVE_OK);
	struct archive_entry *e;
	int members = 0, r;
	char *got = xmalloc(1 << 20), *exp = xmalloc(1 << 20);
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		members++;
		CHECK_STR(archive_entry_pathname(e), "disk.raw");
		CHECK(archive_format(a) == ARCHIVE_FORMAT_TAR_GNUTAR);
		CHECK(archive_filter_code(a, 0) == ARCHIVE_FILTER_GZIP);
		CHECK(archive_entry_filetype(e) == AE_IFREG);
		CHECK(archive_entry_size(e) == GiB);
		CHECK(archive_entry_mtime(e) == 1700000000);
		CHECK(archive_entry_uid(e) == 0 && archive_entry_gid(e) == 0);
		int64_t at = 0;
		la_ssize_t n;
		bool same = true;
		while ((n = archive_read_data(a, got, 1 << 20)) > 0) {
			same = same && pread(fd, exp, (size_t)n, at) == n &&
			       memcmp(got, exp, (size_t)n) == 0;
			at += n;
		}
		CHECK(n == 0);
		CHECK(same);
		CHECK(at == GiB);
	}
	CHECK(r == ARCHIVE_EOF);
	CHECK(members == 1);
	free(got);
	free(exp);
	archive_read_free(a);
	if (fd >= 0)
		close(fd);
}

TEST(gce_is_a_gnu_tar_gz_holding_only_disk_raw_with_the_disks_bytes)
{
	if (!need("qemu-img", "qemu-utils") || !need("qemu-io", "qemu-utils"))
		return;
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	struct fixture f;
	/* level 1 keeps the GiB of zeros quick to squeeze */
	fixture_init(&f, &imgf_qemu_builder, "[{\"type\": \"gce\", \"compression_level\": \"1\"}]");
	json_t *m = NULL;
	struct imgf_error *err = NULL;
	CHECK(run(&f, &m, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	/* the raw image, made here by qemu-img and extended to the GiB */
	_cleanup_free_ char *want = xasprintf("%s/want.raw", f.dir);
	char *convert[] = {"qemu-img", "convert", "-f", "qcow2", "-O", "raw", f.disk, want, NULL};
	free(run_ok(convert));
	CHECK(truncate(want, GiB) == 0);
	_cleanup_free_ char *tgz = path_join(f.dir, NAME ".tar.gz");
	check_gce_tar(tgz, want);
	struct stat st;
	CHECK(stat(tgz, &st) == 0 && st.st_size < 16 * MiB);
	/* gzip with no time in its header (bytes 4-7), so the same disk gives the same bytes */
	unsigned char gz[10] = {0};
	int fd = open(tgz, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && pread(fd, gz, sizeof(gz), 0) == (ssize_t)sizeof(gz));
	if (fd >= 0)
		close(fd);
	CHECK(gz[0] == 0x1f && gz[1] == 0x8b && gz[2] == 8 && be(gz + 4, 4) == 0);
	/* GNU tar, what GCE's own instructions make the file with, lists the one member */
	if (have_cmd("tar")) {
		char *list[] = {"tar", "-tzf", tgz, NULL};
		_cleanup_free_ char *names = run_ok(list);
		CHECK_STR(names, "disk.raw\n");
	}
	check_sidecar(tgz);
	check_manifest_lists(m, f.dir, NAME ".tar.gz");
	CHECK(unlink(want) == 0);
	_cleanup_free_ char *ls = dir_listing(f.dir);
	CHECK_STR(ls, ATTESTATIONS NAME ".qcow2\n" NAME ".qcow2.sha256\n" NAME ".tar.gz\n" NAME
					".tar.gz.sha256\n");
	json_decref(m);
	fixture_release(&f);
	unsetenv("SOURCE_DATE_EPOCH");
}

TEST(gce_refuses_a_compression_level_outside_1_to_9)
{
	static const char *const bad[] = {"0", "10", "-1", "\"fast\"", "\"\""};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct fixture f;
		_cleanup_free_ char *pps =
			xasprintf("[{\"type\": \"gce\", \"compression_level\": %s}]", bad[i]);
		fixture_init(&f, &imgf_docker_builder, pps);
		f.build.builder = &imgf_qemu_builder; /* a disk would be made */
		struct imgf_error *err = NULL;
		CHECK(imgf_post_processors_validate(&f.build, &err) < 0);
		CHECK_ERR(err, "images/test.json: post_processors[0] (gce): ");
		if (i < 3) {
			_cleanup_free_ char *want = xasprintf(
				"compression_level: '%s' is not a gzip level from 1 to 9", bad[i]);
			CHECK_ERR(err, want);
		} else {
			CHECK_ERR(err, "compression_level: expected");
		}
		imgf_error_free(err);
		fixture_release(&f);
	}
}

/* ---- containerdisk ---- */

/* One member of a tar in memory: its bytes (newly allocated) and *len, or NULL. */
struct member {
	char *name;
	char *data;
	size_t len;
	mode_t type, perm;
	int64_t uid, gid;
};

/* Every member of the tar at `path` (or in memory: data, len), in order; *n of them. */
static struct member *read_tar(const char *path, const void *data, size_t len, size_t *n)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	int r = path ? archive_read_open_filename(a, path, 65536)
		     : archive_read_open_memory(a, data, len);
	CHECK(r == ARCHIVE_OK);
	struct member *ms = NULL;
	*n = 0;
	struct archive_entry *e;
	while (r == ARCHIVE_OK && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		ms = xrealloc(ms, (*n + 1) * sizeof(*ms));
		struct member *m = &ms[(*n)++];
		*m = (struct member){
			.name = xstrdup(archive_entry_pathname(e)),
			.type = archive_entry_filetype(e),
			.perm = archive_entry_perm(e),
			.uid = archive_entry_uid(e),
			.gid = archive_entry_gid(e),
		};
		struct strbuf sb = STRBUF_INIT;
		char buf[65536];
		la_ssize_t got;
		while ((got = archive_read_data(a, buf, sizeof(buf))) > 0)
			strbuf_add(&sb, buf, (size_t)got);
		CHECK(got == 0);
		m->len = sb.len;
		m->data = strbuf_detach(&sb, NULL);
	}
	CHECK(r == ARCHIVE_EOF);
	archive_read_free(a);
	return ms;
}

static void free_members(struct member *ms, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ms[i].name);
		free(ms[i].data);
	}
	free(ms);
}

/* The member called `name`, whose bytes must hash to the name's digest when it is a blob. */
static const struct member *blob(const struct member *ms, size_t n, const char *digest)
{
	CHECK(digest && str_has_prefix(digest, "sha256:"));
	if (!digest)
		return NULL;
	_cleanup_free_ char *name = xasprintf("blobs/sha256/%s", digest + 7);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(ms[i].name, name) != 0)
			continue;
		char hex[IMGF_DIGEST_HEX_MAX];
		imgf_digest_buffer(IMGF_SHA256, ms[i].data, ms[i].len, hex);
		CHECK_STR(hex, digest + 7);
		return &ms[i];
	}
	fprintf(stderr, "  no member '%s'\n", name);
	CHECK(false);
	return NULL;
}

/* The manifest's entry for `d` (a blob or index descriptor) gives the member's size. */
static json_t *blob_json(const struct member *ms, size_t n, json_t *desc)
{
	const struct member *m = blob(ms, n, json_string_value(json_object_get(desc, "digest")));
	if (!m)
		return NULL;
	CHECK(json_integer_value(json_object_get(desc, "size")) == (json_int_t)m->len);
	json_t *j = json_loadb(m->data, m->len, 0, NULL);
	CHECK(j != NULL);
	return j;
}

#define CD_PPS \
	"[{\"type\": \"containerdisk\", \"image\": \"localhost/capi-disk:v1\", \"load\": false}]"

TEST(containerdisk_is_an_oci_image_whose_one_layer_is_disk_name_qcow2_for_qemu)
{
	if (!need("qemu-img", "qemu-utils") || !need("qemu-io", "qemu-utils"))
		return;
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	struct fixture f;
	fixture_init(&f, &imgf_qemu_builder, CD_PPS);
	json_t *m = NULL;
	struct imgf_error *err = NULL;
	CHECK(run(&f, &m, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	/* the OCI layout, every blob named by its own sha256 */
	_cleanup_free_ char *tar = path_join(f.dir, NAME ".containerdisk.tar");
	size_t n = 0;
	struct member *ms = read_tar(tar, NULL, 0, &n);
	const struct member *index = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(ms[i].name, "index.json"))
			index = &ms[i];
		else if (str_has_prefix(ms[i].name, "blobs/sha256/") && ms[i].type == AE_IFREG) {
			char hex[IMGF_DIGEST_HEX_MAX];
			imgf_digest_buffer(IMGF_SHA256, ms[i].data, ms[i].len, hex);
			CHECK_STR(hex, ms[i].name + strlen("blobs/sha256/"));
		}
	}
	CHECK(index != NULL);
	json_t *idx = index ? json_loadb(index->data, index->len, 0, NULL) : NULL;
	json_t *desc = json_array_get(json_object_get(idx, "manifests"), 0);
	CHECK(json_array_size(json_object_get(idx, "manifests")) == 1);
	CHECK_STR(json_string_value(json_object_get(json_object_get(desc, "annotations"),
						    "io.containerd.image.name")),
		  "localhost/capi-disk:v1");
	json_t *man = blob_json(ms, n, desc);
	json_t *layers = json_object_get(man, "layers");
	CHECK(json_array_size(layers) == 1);
	json_t *cfg = blob_json(ms, n, json_object_get(man, "config"));
	json_t *diff_ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
	CHECK(json_array_size(diff_ids) == 1);
	const char *layer_digest =
		json_string_value(json_object_get(json_array_get(layers, 0), "digest"));
	CHECK_STR(json_string_value(json_array_get(diff_ids, 0)), layer_digest);
	CHECK_STR(json_string_value(json_object_get(cfg, "architecture")), "amd64");
	CHECK_STR(json_string_value(json_object_get(cfg, "os")), "linux");

	/* the layer: disk/ and disk/NAME.qcow2, the qemu user's, read-only, the qcow2's bytes */
	const struct member *layer = blob(ms, n, layer_digest);
	CHECK(json_integer_value(json_object_get(json_array_get(layers, 0), "size")) ==
	      (json_int_t)(layer ? layer->len : 0));
	size_t ln = 0;
	struct member *ls = layer ? read_tar(NULL, layer->data, layer->len, &ln) : NULL;
	CHECK(ln == 2);
	if (ln == 2) {
		CHECK_STR(ls[0].name, "disk/");
		CHECK(ls[0].type == AE_IFDIR && ls[0].perm == 0555);
		CHECK(ls[0].uid == 107 && ls[0].gid == 107);
		CHECK_STR(ls[1].name, "disk/" NAME ".qcow2");
		CHECK(ls[1].type == AE_IFREG && ls[1].perm == 0440);
		CHECK(ls[1].uid == 107 && ls[1].gid == 107);
		_cleanup_free_ char *want = NULL;
		size_t want_len = 0;
		CHECK(read_file(f.disk, 64 * MiB, &want, &want_len, NULL) == 0);
		CHECK(ls[1].len == want_len && memcmp(ls[1].data, want, want_len) == 0);
	}
	free_members(ls, ln);
	json_decref(cfg);
	json_decref(man);
	json_decref(idx);
	free_members(ms, n);

	check_sidecar(tar);
	check_manifest_lists(m, f.dir, NAME ".containerdisk.tar");
	_cleanup_free_ char *listing = dir_listing(f.dir);
	CHECK_STR(listing,
		  ATTESTATIONS NAME ".containerdisk.tar\n" NAME ".containerdisk.tar.sha256\n" NAME
				    ".qcow2\n" NAME ".qcow2.sha256\n");
	json_decref(m);
	fixture_release(&f);
	unsetenv("SOURCE_DATE_EPOCH");
}

TEST(containerdisk_of_a_raw_disk_holds_it_converted_to_qcow2)
{
	if (!need("qemu-img", "qemu-utils") || !need("qemu-io", "qemu-utils"))
		return;
	struct fixture f;
	fixture_init(&f, &imgf_qemu_builder, CD_PPS);
	/* the artifact's disk is NAME.raw, the fixture's qcow2 converted */
	_cleanup_free_ char *raw = path_join(f.dir, NAME ".raw");
	char *to_raw[] = {"qemu-img", "convert", "-f", "qcow2", "-O", "raw", f.disk, raw, NULL};
	free(run_ok(to_raw));
	free(f.art.disk);
	f.art.disk = xstrdup(raw);
	json_t *m = NULL;
	struct imgf_error *err = NULL;
	CHECK(run(&f, &m, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);

	/* the layer, through index.json and the manifest */
	_cleanup_free_ char *tar = path_join(f.dir, NAME ".containerdisk.tar");
	size_t n = 0;
	struct member *ms = read_tar(tar, NULL, 0, &n);
	json_t *idx = NULL;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(ms[i].name, "index.json"))
			idx = json_loadb(ms[i].data, ms[i].len, 0, NULL);
	json_t *man = blob_json(ms, n, json_array_get(json_object_get(idx, "manifests"), 0));
	const struct member *layer =
		blob(ms, n,
		     json_string_value(json_object_get(
			     json_array_get(json_object_get(man, "layers"), 0), "digest")));
	size_t ln = 0;
	struct member *ls = layer ? read_tar(NULL, layer->data, layer->len, &ln) : NULL;
	bool found = ln == 2 && !strcmp(ls[1].name, "disk/" NAME ".qcow2");
	if (found) {
		_cleanup_free_ char *got = path_join(f.dir, "got.qcow2");
		CHECK(write_file_atomic(got, ls[1].data, ls[1].len, 0644, NULL) == 0);
		_cleanup_free_ char *fmt = NULL;
		CHECK(qemu_info(got, "qcow2", &fmt) == DISK_SIZE);
		CHECK_STR(fmt, "qcow2");
		char *compare[] = {"qemu-img", "compare", "-q", "-f", "raw",
				   "-F",       "qcow2",	  raw,	got,  NULL};
		free(run_ok(compare));
		CHECK(unlink(got) == 0);
	}
	free_members(ls, ln);
	json_decref(man);
	json_decref(idx);
	CHECK(found);
	free_members(ms, n);
	json_decref(m);
	fixture_release(&f);
}

TEST(containerdisk_refuses_an_image_that_is_no_tag_reference)
{
	static const struct {
		const char *image, *want;
	} bad[] = {
		{"\"\"", "image: "},
		{"\"Capi Disk\"", "image: "},
		{"\"localhost/capi-disk@sha256:"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
		 "has a digest; the image is named by a tag"},
		{"7", "image: expected"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct fixture f;
		_cleanup_free_ char *pps =
			xasprintf("[{\"type\": \"containerdisk\", \"image\": %s}]", bad[i].image);
		fixture_init(&f, &imgf_docker_builder, pps);
		f.build.builder = &imgf_qemu_builder; /* a disk would be made */
		struct imgf_error *err = NULL;
		CHECK(imgf_post_processors_validate(&f.build, &err) < 0);
		CHECK_ERR(err, "images/test.json: post_processors[0] (containerdisk): ");
		CHECK_ERR(err, bad[i].want);
		imgf_error_free(err);
		fixture_release(&f);
	}
	/* and one with no image at all */
	struct fixture f;
	fixture_init(&f, &imgf_docker_builder, "[{\"type\": \"containerdisk\"}]");
	f.build.builder = &imgf_qemu_builder;
	struct imgf_error *err = NULL;
	CHECK(imgf_post_processors_validate(&f.build, &err) < 0);
	CHECK_ERR(err, "image");
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- what every format refuses ---- */

/* Each format, with the keys it requires. */
static const struct {
	const char *name, *keys;
} formats[] = {
	{"raw", ""},
	{"vhd", ""},
	{"gce", ""},
	{"containerdisk", ", \"image\": \"localhost/capi-disk:v1\", \"load\": false"},
};

TEST(formats_refuse_unknown_keys_before_anything_is_written)
{
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
		struct fixture f;
		_cleanup_free_ char *pps =
			xasprintf("[{\"type\": \"%s\", \"compresion\": \"9\"%s}]", formats[i].name,
				  formats[i].keys);
		fixture_init(&f, &imgf_docker_builder, pps);
		json_t *m = NULL;
		struct imgf_error *err = NULL;
		CHECK(run(&f, &m, &err) < 0);
		_cleanup_free_ char *want = xasprintf(
			"images/test.json: post_processors[0] (%s): unknown key 'compresion'",
			formats[i].name);
		CHECK_ERR(err, want);
		imgf_error_free(err);
		_cleanup_free_ char *ls = dir_listing(f.dir);
		CHECK_STR(ls, "");
		json_decref(m);
		fixture_release(&f);
	}
}

TEST(formats_refuse_a_builder_or_an_artifact_without_a_disk)
{
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
		struct fixture f;
		_cleanup_free_ char *pps =
			xasprintf("[{\"type\": \"%s\"%s}]", formats[i].name, formats[i].keys);
		fixture_init(&f, &imgf_docker_builder, pps);
		/* validate: the docker builder's artifacts carry no disk */
		struct imgf_error *err = NULL;
		CHECK(imgf_post_processors_validate(&f.build, &err) < 0);
		_cleanup_free_ char *want = xasprintf(
			"images/test.json: post_processors[0] (%s): post-processor '%s' needs a "
			"disk image; the docker builder does not make one",
			formats[i].name, formats[i].name);
		CHECK_ERR(err, want);
		imgf_error_free(err);
		/* run: what the artifact is decides, whoever made it */
		f.build.builder = &imgf_qemu_builder;
		json_t *m = imgf_manifest_new();
		struct imgf_pp_ctx c = {
			.build = &f.build, .art = &f.art, .artifact_id = f.art.id, .manifest = m};
		err = NULL;
		CHECK(imgf_post_processors_run(&c, &err) < 0);
		_cleanup_free_ char *want2 =
			xasprintf("post-processor '%s' needs a disk image; the qemu builder made "
				  "'sha256:0123'",
				  formats[i].name);
		CHECK_ERR(err, want2);
		imgf_error_free(err);
		CHECK(json_array_size(json_object_get(m, "builds")) == 0);
		CHECK(strv_len(f.art.files) == 0);
		_cleanup_free_ char *ls = dir_listing(f.dir);
		CHECK_STR(ls, "");
		json_decref(m);
		fixture_release(&f);
	}
}

TEST(a_disk_qemu_img_cannot_read_leaves_nothing)
{
	if (!need("qemu-img", "qemu-utils") || !need("qemu-io", "qemu-utils"))
		return;
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
		struct fixture f;
		_cleanup_free_ char *pps =
			xasprintf("[{\"type\": \"%s\"%s}]", formats[i].name, formats[i].keys);
		fixture_init(&f, &imgf_qemu_builder, pps);
		CHECK(write_file_atomic(f.disk, "not a qcow2", 11, 0644, NULL) == 0);
		json_t *m = NULL;
		struct imgf_error *err = NULL;
		CHECK(run(&f, &m, &err) < 0);
		_cleanup_free_ char *want = xasprintf("post-processor '%s': disk '%s': 'qemu-img' "
						      "exited with status 1",
						      formats[i].name, f.disk);
		CHECK_ERR(err, want);
		imgf_error_free(err);
		_cleanup_free_ char *ls = dir_listing(f.dir);
		CHECK_STR(ls, NAME ".qcow2\n" NAME ".qcow2.sha256\n");
		json_decref(m);
		fixture_release(&f);
	}
}
