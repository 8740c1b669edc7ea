/*
 * A Go binary's version read from its file, never by running it: the build information
 * (.go.buildinfo) on crafted bytes (truncated, oversize varints, no magic, quoted and unquoted
 * -X), the -X stamps of a crafted ELF, and, when a Go toolchain is at hand, real Go programs
 * built with and without -trimpath. kubesrc_check_binary, which vouches for tarball and local
 * Kubernetes binaries, is checked not to run what it reads.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "build.h"
#include "contract.h"
#include "error.h"
#include "fsutil.h"
#include "gobuildinfo.h"
#include "provisioner.h"
#include "provisioners/kubesrc.h"
#include "run.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

static const char sentinel[16] = "0123456789abcdef";

static void add_uvarint(struct strbuf *sb, uint64_t v)
{
	while (v >= 0x80) {
		strbuf_addch(sb, (int)(v & 0x7f) | 0x80);
		v >>= 7;
	}
	strbuf_addch(sb, (int)v);
}

/* A .go.buildinfo section in Go 1.18+'s inline form with this module info text. */
static void buildinfo(struct strbuf *sb, const char *go, const char *modtext)
{
	strbuf_add(sb, "\xff Go buildinf:", 14);
	strbuf_addch(sb, 8);
	strbuf_addch(sb, 2);
	for (int i = 0; i < 16; i++)
		strbuf_addch(sb, 0);
	add_uvarint(sb, strlen(go));
	strbuf_addstr(sb, go);
	add_uvarint(sb, strlen(modtext) + 32);
	strbuf_add(sb, sentinel, 16);
	strbuf_addstr(sb, modtext);
	strbuf_add(sb, sentinel, 16);
}

#define MODINFO                                                                             \
	"path\tk8s.io/kubernetes/cmd/kubeadm\n"                                             \
	"mod\tk8s.io/kubernetes\t(devel)\t\n"                                               \
	"build\t-buildmode=exe\n"                                                           \
	"build\t-ldflags=\"-s -w -X 'k8s.io/component-base/version.gitVersion=v1.37.2' -X " \
	"k8s.io/component-base/version.gitMajor=1\"\n"                                      \
	"build\tGOARCH=arm64\n"                                                             \
	"build\tGOOS=linux\n"

TEST(buildinfo_reads_go_version_path_platform_and_ldflags)
{
	struct strbuf sb = STRBUF_INIT;
	buildinfo(&sb, "go1.24.4", MODINFO);
	struct imgf_go_buildinfo bi;
	struct imgf_error *err = NULL;
	CHECK(imgf_go_buildinfo_parse(sb.buf, sb.len, &bi, &err) == 0);
	CHECK_STR(bi.go_version, "go1.24.4");
	CHECK_STR(bi.path, "k8s.io/kubernetes/cmd/kubeadm");
	CHECK_STR(bi.goos, "linux");
	CHECK_STR(bi.goarch, "arm64");
	CHECK_STR(bi.ldflags, "-s -w -X 'k8s.io/component-base/version.gitVersion=v1.37.2' -X "
			      "k8s.io/component-base/version.gitMajor=1");
	imgf_go_buildinfo_release(&bi);
	strbuf_release(&sb);
}

TEST(buildinfo_truncated_anywhere_is_refused_without_reading_past_it)
{
	struct strbuf sb = STRBUF_INIT;
	buildinfo(&sb, "go1.24.4", MODINFO);
	/* Every prefix short of the whole: the header, a length, or a string is cut. Run under
	 * ASan, an overread would abort. */
	for (size_t n = 0; n < sb.len; n++) {
		char *copy = xmalloc(n ? n : 1);
		memcpy(copy, sb.buf, n);
		struct imgf_go_buildinfo bi;
		struct imgf_error *err = NULL;
		CHECK(imgf_go_buildinfo_parse(copy, n, &bi, &err) < 0);
		CHECK(err != NULL);
		imgf_error_free(err);
		free(copy);
	}
	strbuf_release(&sb);
}

TEST(buildinfo_oversize_varints_are_refused)
{
	struct imgf_error *err = NULL;
	struct imgf_go_buildinfo bi;
	/* A length of 2^63: more than the section holds. */
	struct strbuf sb = STRBUF_INIT;
	strbuf_add(&sb, "\xff Go buildinf:\x08\x02", 16);
	for (int i = 0; i < 16; i++)
		strbuf_addch(&sb, 0);
	add_uvarint(&sb, UINT64_C(1) << 63);
	strbuf_addstr(&sb, "go1.24.4");
	CHECK(imgf_go_buildinfo_parse(sb.buf, sb.len, &bi, &err) < 0);
	CHECK_ERR(err, "truncated or its string lengths are out of range");
	imgf_error_clear(&err);
	/* Eleven continuation bytes: over 64 bits. */
	sb.len = 32;
	for (int i = 0; i < 11; i++)
		strbuf_addch(&sb, 0xff);
	strbuf_addstr(&sb, "\x01go1.24.4");
	CHECK(imgf_go_buildinfo_parse(sb.buf, sb.len, &bi, &err) < 0);
	CHECK_ERR(err, "out of range");
	imgf_error_clear(&err);
	/* A tenth byte above 1 overflows too. */
	sb.len = 32;
	for (int i = 0; i < 9; i++)
		strbuf_addch(&sb, 0x80);
	strbuf_addch(&sb, 0x02);
	CHECK(imgf_go_buildinfo_parse(sb.buf, sb.len, &bi, &err) < 0);
	imgf_error_clear(&err);
	strbuf_release(&sb);
}

TEST(buildinfo_without_magic_or_before_go_1_18_is_refused)
{
	struct imgf_error *err = NULL;
	struct imgf_go_buildinfo bi;
	char zero[64] = {0};
	CHECK(imgf_go_buildinfo_parse(zero, sizeof(zero), &bi, &err) < 0);
	CHECK_ERR(err, "no Go build information");
	imgf_error_clear(&err);
	struct strbuf sb = STRBUF_INIT;
	buildinfo(&sb, "go1.17", MODINFO);
	sb.buf[15] = 0; /* pointer form */
	CHECK(imgf_go_buildinfo_parse(sb.buf, sb.len, &bi, &err) < 0);
	CHECK_ERR(err, "before 1.18");
	imgf_error_clear(&err);
	strbuf_release(&sb);
}

TEST(buildinfo_badly_quoted_setting_is_refused)
{
	struct strbuf sb = STRBUF_INIT;
	buildinfo(&sb, "go1.24.4", "path\tx\nbuild\t-ldflags=\"-X a.b=\\q\"\n");
	struct imgf_go_buildinfo bi;
	struct imgf_error *err = NULL;
	CHECK(imgf_go_buildinfo_parse(sb.buf, sb.len, &bi, &err) < 0);
	CHECK_ERR(err, "build setting '-ldflags' is not a Go string");
	imgf_error_free(err);
	strbuf_release(&sb);
}

TEST(ldflags_x_quoted_and_unquoted_forms)
{
	const char *v = "k8s.io/component-base/version.gitVersion";
	char *x;
	CHECK_STR(x = imgf_go_ldflags_x("-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2",
					v),
		  "v1.37.2");
	free(x);
	CHECK_STR(x = imgf_go_ldflags_x(
			  "-X 'k8s.io/component-base/version.gitVersion=v1.37.2' -X 'a.b=c d'", v),
		  "v1.37.2");
	free(x);
	CHECK_STR(x = imgf_go_ldflags_x(
			  "-X \"k8s.io/component-base/version.gitVersion=v1.36.0+abc\"", v),
		  "v1.36.0+abc");
	free(x);
	CHECK_STR(x = imgf_go_ldflags_x("-X=k8s.io/component-base/version.gitVersion=v1.2.3", v),
		  "v1.2.3");
	free(x);
	/* The linker takes the last one. */
	CHECK_STR(x = imgf_go_ldflags_x("-X k8s.io/component-base/version.gitVersion=v1.0.0 "
					"--X k8s.io/component-base/version.gitVersion=v2.0.0",
					v),
		  "v2.0.0");
	free(x);
	/* Another variable with the name as its prefix, a missing -X, an unterminated quote. */
	CHECK(!imgf_go_ldflags_x("-X k8s.io/component-base/version.gitVersionX=v1.0.0", v));
	CHECK(!imgf_go_ldflags_x("-s -w", v));
	CHECK(!imgf_go_ldflags_x("-X 'k8s.io/component-base/version.gitVersion=v1.0.0", v));
	CHECK(!imgf_go_ldflags_x("-X", v));
}

/* ---- ELF files ---- */

#define RODATA_ADDR 0x401000u
#define DATA_ADDR 0x402000u

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/*
 * A minimal static amd64 ELF: .go.buildinfo (bi, may be NULL for none), .rodata, .data,
 * .shstrtab. Not runnable (no program headers): running it fails.
 */
static char *craft_elf(const char *dir, const char *name, const struct strbuf *bi,
		       const void *rodata, size_t rolen, const void *data, size_t dlen)
{
	static const char names[] = "\0.go.buildinfo\0.rodata\0.data\0.shstrtab\0.text";
	const uint64_t bi_off = 0x100, ro_off = 0x1000, data_off = 0x2000, str_off = 0x3000,
		       sh_off = 0x3100;
	unsigned char *f = xcalloc(1, 0x3100 + 5 * 64);
	memcpy(f, "\177ELF\2\1\1", 7);
	put_le(f + 16, 2, 2);  /* ET_EXEC */
	put_le(f + 18, 62, 2); /* EM_X86_64 */
	put_le(f + 20, 1, 4);
	put_le(f + 40, sh_off, 8);
	put_le(f + 52, 64, 2);
	put_le(f + 58, 64, 2);
	put_le(f + 60, 5, 2);
	put_le(f + 62, 4, 2);
	if (bi)
		memcpy(f + bi_off, bi->buf, bi->len);
	memcpy(f + ro_off, rodata, rolen);
	memcpy(f + data_off, data, dlen);
	memcpy(f + str_off, names, sizeof(names));
	struct {
		uint32_t name;
		uint64_t addr, off, size;
	} sh[5] = {
		{0, 0, 0, 0},
		{bi ? 1u : 39u, 0x400100, bi_off, bi ? bi->len : 16}, /* ".text" without one */
		{15, RODATA_ADDR, ro_off, rolen},
		{23, DATA_ADDR, data_off, dlen},
		{29, 0, str_off, sizeof(names)},
	};
	for (int i = 1; i < 5; i++) {
		unsigned char *s = f + sh_off + 64 * i;
		put_le(s, sh[i].name, 4);
		put_le(s + 4, i == 4 ? 3 : 1, 4); /* SHT_STRTAB, SHT_PROGBITS */
		put_le(s + 16, sh[i].addr, 8);
		put_le(s + 24, sh[i].off, 8);
		put_le(s + 32, sh[i].size, 8);
	}
	char *p = path_join(dir, name);
	struct imgf_error *err = NULL;
	CHECK(write_file_atomic(p, f, 0x3100 + 5 * 64, 0755, &err) == 0);
	free(f);
	return p;
}

/* A string header {pointer, length} into .rodata at `off`. */
static void header_at(unsigned char *data, size_t at, size_t off, size_t len)
{
	put_le(data + at, RODATA_ADDR + off, 8);
	put_le(data + at + 8, len, 8);
}

/* An ELF whose -X stamp is `stamp` (NUL-terminated in .rodata), beside a version-like Go
 * string literal (not terminated) that is no stamp. */
static char *elf_with_stamp(const char *dir, const char *name, const char *stamp,
			    const char *modinfo)
{
	struct strbuf bi = STRBUF_INIT;
	buildinfo(&bi, "go1.24.4", modinfo);
	unsigned char rodata[256] = {0}, data[64] = {0};
	memcpy(rodata + 16, "v9.9.9validate", 14); /* a literal followed by another */
	memcpy(rodata + 64, stamp, strlen(stamp) + 1);
	header_at(data, 8, 16, 6);
	header_at(data, 32, 64, strlen(stamp));
	char *p = craft_elf(dir, name, &bi, rodata, sizeof(rodata), data, sizeof(data));
	strbuf_release(&bi);
	return p;
}

static char *tmpdir(void)
{
	char *d = NULL;
	struct imgf_error *err = NULL;
	if (make_temp_dir("imgf-test-gobi", &d, &err) < 0)
		abort();
	return d;
}

TEST(elf_stamps_are_the_nul_terminated_strings_the_data_points_at)
{
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *p =
		elf_with_stamp(d, "kubeadm", "v1.37.2", "path\tk8s.io/kubernetes/cmd/kubeadm\n");
	struct imgf_go_binary b;
	struct imgf_error *err = NULL;
	CHECK(imgf_go_binary_read(p, &b, &err) == 0);
	CHECK_STR(b.bi.go_version, "go1.24.4");
	CHECK(!b.bi.ldflags);
	CHECK(b.stamps && b.stamps[0] && !b.stamps[1]);
	CHECK_STR(b.stamps ? b.stamps[0] : NULL, "v1.37.2");
	imgf_go_binary_release(&b);
	rm_rf(d, &err);
}

TEST(elf_without_go_buildinfo_is_refused_naming_the_file)
{
	_cleanup_free_ char *d = tmpdir();
	char ro[16] = {0}, data[16] = {0};
	_cleanup_free_ char *p = craft_elf(d, "notgo", NULL, ro, sizeof(ro), data, sizeof(data));
	struct imgf_go_binary b;
	struct imgf_error *err = NULL;
	CHECK(imgf_go_binary_read(p, &b, &err) < 0);
	CHECK_ERR(err, "has no Go build information (no .go.buildinfo section");
	CHECK_ERR(err, p);
	imgf_error_clear(&err);
	/* A file cut short of its section headers. */
	CHECK(truncate(p, 0x2000) == 0);
	CHECK(imgf_go_binary_read(p, &b, &err) < 0);
	CHECK_ERR(err, "truncated");
	imgf_error_clear(&err);
	rm_rf(d, &err);
}

/* ---- kubesrc_check_binary: read, never run ---- */

struct step_fixture {
	struct imgf_config cfg;
	struct imgf_build build;
	struct imgf_step s;
};

/* The contract of a build with none of its variables set. */
static const struct imgf_contract no_contract;

static void step_init(struct step_fixture *f, const char *arch)
{
	f->cfg = (struct imgf_config){.vars = json_object()};
	f->build = (struct imgf_build){.config = &f->cfg, .contract = &no_contract};
	f->s = (struct imgf_step){.build = &f->build, .label = "kubernetes"};
	f->s.cfg = json_pack("{s:s}", "arch", arch);
}

static void step_release(struct step_fixture *f)
{
	json_decref(f->s.cfg);
	json_decref(f->cfg.vars);
}

TEST(check_binary_reads_the_version_of_a_binary_that_cannot_run)
{
	/* The crafted ELF cannot run: a check that ran it (as before) fails here. */
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *p = elf_with_stamp(d, "kubelet", "v1.37.2", "path\tx\n");
	struct step_fixture f;
	step_init(&f, "amd64");
	struct imgf_error *err = NULL;
	CHECK(kubesrc_check_binary(&f.s, p, "v1.37.2", true, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_clear(&err);

	CHECK(kubesrc_check_binary(&f.s, p, "v1.36.99", true, &err) < 0);
	CHECK_ERR(err, "carries version 'v1.37.2' (its -X version stamp), expected 'v1.36.99' "
		       "(kubernetes_semver)");
	imgf_error_clear(&err);

	/* The build information's -X wins over the data, and names the variable. */
	_cleanup_free_ char *q = elf_with_stamp(d, "kubeadm", "v1.37.2", MODINFO);
	CHECK(kubesrc_check_binary(&f.s, q, "v1.37.2", true, &err) < 0);
	CHECK_ERR(err, "is built for GOOS=linux GOARCH=arm64 (its Go build information), "
		       "expected linux/amd64");
	imgf_error_clear(&err);
	step_release(&f);
	step_init(&f, "arm64");
	CHECK(kubesrc_check_binary(&f.s, q, "v1.37.2", true, &err) < 0);
	CHECK_ERR(err, "is built for amd64, expected arm64"); /* the ELF header's machine */
	imgf_error_clear(&err);
	step_release(&f);

	/* No version anywhere: refused, saying what was expected. */
	step_init(&f, "amd64");
	_cleanup_free_ char *n = elf_with_stamp(d, "kubectl", "1.37.2", "path\tx\n");
	CHECK(kubesrc_check_binary(&f.s, n, "v1.37.2", false, &err) < 0);
	CHECK_ERR(err, "carries no version: expected '-X "
		       "k8s.io/component-base/version.gitVersion=v1.37.2'");
	CHECK_ERR(err, "does not run a binary on the host");
	imgf_error_clear(&err);
	step_release(&f);
	rm_rf(d, &err);
}

/* ---- Real Go programs ---- */

static const char go_mod[] = "module k8s.io/component-base\n\ngo 1.18\n";
static const char go_version[] = "package version\n\n"
				 "var gitVersion = \"v0.0.0-master+$Format:%H$\"\n\n"
				 "func Get() string { return gitVersion }\n";
/* Leaves a mark when run, so a test sees whether anything ran it. */
static const char go_main[] = "package main\n\n"
			      "import (\n\t\"os\"\n\n\t\"k8s.io/component-base/version\"\n)\n\n"
			      "var mark string\n\n"
			      "func main() {\n"
			      "\tos.WriteFile(mark, []byte(\"ran\"), 0o644)\n"
			      "\tos.Stdout.WriteString(\"Kubernetes \" + version.Get() + \"\\n\")\n"
			      "}\n";

/* Build the program into dir/NAME with these -ldflags (and -trimpath); false without Go. */
static bool go_build(const char *dir, const char *name, bool trimpath, const char *ldflags)
{
	struct imgf_error *err = NULL;
	_cleanup_free_ char *src = path_join(dir, "src");
	_cleanup_free_ char *vdir = path_join(src, "version");
	_cleanup_free_ char *mdir = path_join(src, "cmd/x");
	_cleanup_free_ char *f1 = path_join(src, "go.mod");
	_cleanup_free_ char *f2 = path_join(vdir, "version.go");
	_cleanup_free_ char *f3 = path_join(mdir, "main.go");
	_cleanup_free_ char *out = path_join(dir, name);
	if (mkdir_p(vdir, 0755, &err) < 0 || mkdir_p(mdir, 0755, &err) < 0 ||
	    write_file_atomic(f1, go_mod, strlen(go_mod), 0644, &err) < 0 ||
	    write_file_atomic(f2, go_version, strlen(go_version), 0644, &err) < 0 ||
	    write_file_atomic(f3, go_main, strlen(go_main), 0644, &err) < 0) {
		imgf_error_free(err);
		return false;
	}
	if (!getenv("HOME") && !getenv("GOCACHE")) { /* go needs a cache and a GOPATH */
		_cleanup_free_ char *cache = path_join(dir, "gocache");
		_cleanup_free_ char *gopath = path_join(dir, "gopath");
		setenv("GOCACHE", cache, 1);
		setenv("GOPATH", gopath, 1);
	}
	setenv("CGO_ENABLED", "0", 1);
	setenv("GOTOOLCHAIN", "local", 1);
	setenv("GOFLAGS", "-mod=mod", 1);
	setenv("GOWORK", "off", 1);
	char *argv[] = {"go",
			"-C",
			src,
			"build",
			"-buildvcs=false",
			"-ldflags",
			(char *)ldflags,
			"-o",
			out,
			"./cmd/x",
			trimpath ? "-trimpath" : NULL,
			NULL};
	if (trimpath) { /* flags before the package */
		argv[9] = "-trimpath";
		argv[10] = "./cmd/x";
	}
	int r = imgf_run(argv, NULL, &err);
	if (r < 0)
		fprintf(stderr, "  go build: %s\n", err->msg);
	imgf_error_free(err);
	return r == 0;
}

static bool have_go(void)
{
	char *argv[] = {"go", "version", NULL};
	struct imgf_error *err = NULL;
	int r = imgf_run(argv, NULL, &err);
	imgf_error_free(err);
	return r == 0;
}

TEST(real_go_binaries_carry_their_version_with_and_without_trimpath)
{
	if (!have_go())
		SKIP("no Go toolchain (the crafted ELF tests cover the parser)");
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *mark = path_join(d, "ran");
	/* As Kubernetes' release and hack/kube-from-source.sh build: -trimpath, quoted -X. */
	_cleanup_free_ char *ld = xasprintf(
		"-s -w -X 'k8s.io/component-base/version.gitVersion=v1.37.2' -X main.mark=%s",
		mark);
	if (!go_build(d, "trimmed", true, ld) || !go_build(d, "full", false, ld)) {
		CHECK(!"go build of the test program");
		rm_rf(d, NULL);
		return;
	}
	_cleanup_free_ char *trimmed = path_join(d, "trimmed");
	_cleanup_free_ char *full = path_join(d, "full");
	struct imgf_go_binary b;
	struct imgf_error *err = NULL;
	CHECK(imgf_go_binary_read(trimmed, &b, &err) == 0);
	CHECK(!b.bi.ldflags); /* -trimpath leaves -ldflags out of the build information */
	CHECK_STR(b.bi.goos, "linux");
	CHECK(b.stamps && b.stamps[0] && !b.stamps[1]);
	CHECK_STR(b.stamps ? b.stamps[0] : NULL, "v1.37.2");
	imgf_go_binary_release(&b);

	CHECK(imgf_go_binary_read(full, &b, &err) == 0);
	_cleanup_free_ char *goarch = xstrdup(b.bi.goarch ? b.bi.goarch : "");
	_cleanup_free_ char *x =
		b.bi.ldflags ? imgf_go_ldflags_x(b.bi.ldflags,
						 "k8s.io/component-base/version.gitVersion")
			     : NULL;
	CHECK_STR(x, "v1.37.2");
	imgf_go_binary_release(&b);

	/* kubesrc_check_binary vouches for both without running either. */
	struct step_fixture f;
	step_init(&f, goarch);
	CHECK(kubesrc_check_binary(&f.s, trimmed, "v1.37.2", true, &err) == 0);
	CHECK(kubesrc_check_binary(&f.s, full, "v1.37.2", true, &err) == 0);
	CHECK(kubesrc_check_binary(&f.s, trimmed, "v1.37.3", true, &err) < 0);
	CHECK_ERR(err, "carries version 'v1.37.2'");
	imgf_error_clear(&err);
	CHECK(access(mark, F_OK) < 0); /* nothing ran it */
	step_release(&f);
	rm_rf(d, &err);
}
