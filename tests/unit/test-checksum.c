/* Checksum specs, checksum lists and the digests under them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "util.h"

#include "test.h"

#define ABC256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define ABC512                                                             \
	"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" \
	"2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
#define EMPTY256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"
#define FORMS \
	"expected sha256:HEX, sha512:HEX, file:URL, or a URL ending in .sha256/.sha256sum/.sha512"

/* Parse `spec`, expecting failure with `needle` in the message. */
static void expect_parse_error(const char *spec, const char *needle)
{
	struct imgf_checksum c;
	struct imgf_error *err = NULL;
	CHECK(imgf_checksum_parse(spec, &c, &err) < 0);
	CHECK_ERR(err, needle);
	CHECK(c.url == NULL);
	imgf_error_free(err);
}

/* Look `name` up in `text` (copied to an exact-size heap buffer, so overreads are caught). */
static int lookup(struct imgf_checksum *c, const char *text, size_t len, const char *name,
		  struct imgf_error **err)
{
	char *copy = xmalloc(len);
	memcpy(copy, text, len);
	int r = imgf_checksum_list_lookup(c, copy, len, name, err);
	free(copy);
	return r;
}

/* A list checksum as file:URL gives it: algorithm not known yet. */
static struct imgf_checksum list_of(const char *url)
{
	struct imgf_checksum c;
	struct imgf_error *err = NULL;
	_cleanup_free_ char *spec = xasprintf("file:%s", url);
	if (imgf_checksum_parse(spec, &c, &err) < 0) {
		fprintf(stderr, "  parse '%s': %s\n", spec, err->msg);
		abort();
	}
	return c;
}

static void expect_found(const char *text, const char *name, const char *hex,
			 enum imgf_digest_alg alg)
{
	struct imgf_checksum c = list_of("https://example.com/SUMS");
	struct imgf_error *err = NULL;
	int r = lookup(&c, text, strlen(text), name, &err);
	if (r < 0)
		fprintf(stderr, "  lookup '%s': %s\n", name, err->msg);
	CHECK(r == 0);
	CHECK_STR(c.hex, hex);
	CHECK(c.alg == alg);
	CHECK(c.alg_known);
	imgf_error_free(err);
	imgf_checksum_release(&c);
}

static void expect_lookup_error(struct imgf_checksum *c, const char *text, size_t len,
				const char *name, const char *needle)
{
	struct imgf_error *err = NULL;
	CHECK(lookup(c, text, len, name, &err) < 0);
	CHECK_ERR(err, needle);
	imgf_error_free(err);
}

TEST(digest_known_answers)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, "abc", 3, hex);
	CHECK_STR(hex, ABC256);
	imgf_digest_buffer(IMGF_SHA512, "abc", 3, hex);
	CHECK_STR(hex, ABC512);
	imgf_digest_buffer(IMGF_SHA256, "", 0, hex);
	CHECK_STR(hex, EMPTY256);
}

TEST(digest_streams_in_pieces_and_reinits)
{
	struct imgf_digest d;
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_init(&d, IMGF_SHA256);
	imgf_digest_update(&d, "a", 1);
	imgf_digest_update(&d, "", 0);
	imgf_digest_update(&d, "bc", 2);
	imgf_digest_final_hex(&d, hex);
	CHECK_STR(hex, ABC256);
	imgf_digest_release(&d); /* harmless after final */
	imgf_digest_init(&d, IMGF_SHA512);
	imgf_digest_update(&d, "abc", 3);
	imgf_digest_final_hex(&d, hex);
	CHECK_STR(hex, ABC512);
	imgf_digest_init(&d, IMGF_SHA256); /* abandoned without final */
	imgf_digest_update(&d, "x", 1);
	imgf_digest_release(&d);
}

TEST(digest_names)
{
	enum imgf_digest_alg alg;
	CHECK_STR(imgf_digest_alg_name(IMGF_SHA256), "sha256");
	CHECK_STR(imgf_digest_alg_name(IMGF_SHA512), "sha512");
	CHECK(imgf_digest_hex_len(IMGF_SHA256) == 64);
	CHECK(imgf_digest_hex_len(IMGF_SHA512) == 128);
	CHECK(imgf_digest_alg_from_name("sha512", &alg) == 0 && alg == IMGF_SHA512);
	CHECK(imgf_digest_alg_from_name("sha256", &alg) == 0 && alg == IMGF_SHA256);
	CHECK(imgf_digest_alg_from_name("md5", &alg) < 0);
}

TEST(digest_file)
{
	_cleanup_free_ char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("test-checksum", &dir, &err) == 0);
	_cleanup_free_ char *path = path_join(dir, "f");
	CHECK(write_file_atomic(path, "abc", 3, 0644, &err) == 0);
	char hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file(path, IMGF_SHA256, hex, &err) == 0);
	CHECK_STR(hex, ABC256);
	_cleanup_free_ char *missing = path_join(dir, "missing");
	CHECK(imgf_digest_file(missing, IMGF_SHA256, hex, &err) < 0);
	CHECK_ERR(err, "open '");
	CHECK_ERR(err, "No such file");
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(digest_file_once_reads_a_file_again_only_when_it_changed)
{
	_cleanup_free_ char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("test-checksum", &dir, &err) == 0);
	_cleanup_free_ char *path = path_join(dir, "f");
	CHECK(write_file_atomic(path, "abc", 3, 0644, &err) == 0);
	char hex[IMGF_DIGEST_HEX_MAX];
	CHECK(imgf_digest_file_once(path, IMGF_SHA256, hex, &err) == 0);
	CHECK_STR(hex, ABC256);
	/* The same file, unchanged: the first read's digest, whatever the other algorithm */
	CHECK(imgf_digest_file_once(path, IMGF_SHA512, hex, &err) == 0);
	CHECK_STR(hex, ABC512);
	CHECK(imgf_digest_file_once(path, IMGF_SHA256, hex, &err) == 0);
	CHECK_STR(hex, ABC256);
	/* Replaced (another inode) or written in place (another ctime): read again */
	CHECK(write_file_atomic(path, "", 0, 0644, &err) == 0);
	CHECK(imgf_digest_file_once(path, IMGF_SHA256, hex, &err) == 0);
	CHECK_STR(hex, EMPTY256);
	FILE *f = fopen(path, "w");
	CHECK(f && fputs("abc", f) >= 0 && fclose(f) == 0);
	CHECK(imgf_digest_file_once(path, IMGF_SHA256, hex, &err) == 0);
	CHECK_STR(hex, ABC256);
	CHECK(imgf_digest_file_once(dir, IMGF_SHA256, hex, &err) < 0); /* no file: an error */
	imgf_error_free(err);
	rm_rf(dir, NULL);
}

TEST(parse_sha256_and_sha512)
{
	struct imgf_checksum c;
	struct imgf_error *err = NULL;
	CHECK(imgf_checksum_parse("sha256:" ABC256, &c, &err) == 0);
	CHECK(!c.is_list && c.alg_known && c.alg == IMGF_SHA256 && !c.url);
	CHECK_STR(c.hex, ABC256);
	imgf_checksum_release(&c);

	CHECK(imgf_checksum_parse("sha512:" ABC512, &c, &err) == 0);
	CHECK(!c.is_list && c.alg_known && c.alg == IMGF_SHA512);
	CHECK_STR(c.hex, ABC512);
	imgf_checksum_release(&c);

	/* Uppercase hex is lowered; surrounding whitespace (a value read from a file) ignored. */
	CHECK(imgf_checksum_parse(
		      " sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F"
		      "20015AD\n",
		      &c, &err) == 0);
	CHECK_STR(c.hex, ABC256);
	imgf_checksum_release(&c);
	CHECK(err == NULL);
}

TEST(parse_wrong_lengths)
{
	expect_parse_error("sha256:abc", "expected 64 hex digits after 'sha256:', got 3");
	expect_parse_error("sha256:" ABC256 "0", "expected 64 hex digits after 'sha256:', got 65");
	expect_parse_error("sha256:", "expected 64 hex digits after 'sha256:', got 0");
	expect_parse_error("sha512:" ABC256, "expected 128 hex digits after 'sha512:', got 64");
	expect_parse_error("sha256:" ABC512, "expected 64 hex digits after 'sha256:', got 128");
	expect_parse_error("sha256:abc", "checksum 'sha256:abc'");
}

TEST(parse_non_hex)
{
	expect_parse_error(
		"sha256:ba78g6bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"'g' at position 5 is not a hex digit");
	expect_parse_error(
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f200 5ad",
		"' ' at position 61 is not a hex digit");
	expect_parse_error("sha256:\x01"
			   "a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
			   "byte 0x01 at position 1 is not a hex digit");
}

TEST(parse_unknown_forms_list_the_accepted_ones)
{
	expect_parse_error("none", "unknown checksum form 'none': " FORMS);
	expect_parse_error("", "empty checksum: " FORMS);
	expect_parse_error(NULL, "empty checksum: " FORMS);
	expect_parse_error("   \n", "empty checksum");
	expect_parse_error("md5:d41d8cd98f00b204e9800998ecf8427e",
			   "checksum 'md5:d41d8cd98f00b204e9800998ecf8427e': unsupported algorithm "
			   "'md5'; " FORMS);
	expect_parse_error("sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
			   "unsupported algorithm 'sha1'");
	expect_parse_error(ABC256, "a bare digest needs its algorithm, e.g. sha256:ba7816bf...");
	expect_parse_error(ABC512, "e.g. sha512:ddaf35a1...");
	expect_parse_error("sha256 " ABC256, "unknown checksum form");
	expect_parse_error("https://example.com/a.tar.gz",
			   "checksum 'https://example.com/a.tar.gz': a checksum URL must end in "
			   ".sha256, .sha256sum or .sha512");
	expect_parse_error("https://example.com/a.sha256.txt", "must end in .sha256");
	expect_parse_error("file:", "checksum 'file:': missing URL after 'file:'");
	expect_parse_error("file:SHA256SUMS", "'SHA256SUMS' after 'file:' is not a URL");
	expect_parse_error("file:https://", "is not a URL");
	expect_parse_error("://x.sha256", "unknown checksum form");
}

TEST(parse_list_forms)
{
	struct imgf_checksum c;
	struct imgf_error *err = NULL;

	CHECK(imgf_checksum_parse("file:https://example.com/v1/SHA256SUMS", &c, &err) == 0);
	CHECK(c.is_list && !c.alg_known);
	CHECK_STR(c.url, "https://example.com/v1/SHA256SUMS");
	imgf_checksum_release(&c);

	CHECK(imgf_checksum_parse("file:/srv/mirror/SHA256SUMS", &c, &err) == 0);
	CHECK(c.is_list && !c.alg_known);
	CHECK_STR(c.url, "file:///srv/mirror/SHA256SUMS");
	imgf_checksum_release(&c);

	CHECK(imgf_checksum_parse("file:///srv/mirror/SHA256SUMS", &c, &err) == 0);
	CHECK(c.is_list && !c.alg_known);
	CHECK_STR(c.url, "file:///srv/mirror/SHA256SUMS");
	imgf_checksum_release(&c);

	static const struct {
		const char *spec;
		enum imgf_digest_alg alg;
	} urls[] = {
		{"https://dl.k8s.io/v1.31.2/bin/linux/amd64/kubelet.sha256", IMGF_SHA256},
		{"https://github.com/x/y/releases/download/v2/y-2.tar.gz.sha256sum", IMGF_SHA256},
		{"http://127.0.0.1:8080/a.iso.sha512", IMGF_SHA512},
		{"https://example.com/a.sha256?X-Goog-Signature=abc#frag", IMGF_SHA256},
		{"file:///srv/a.iso.sha512", IMGF_SHA512},
	};
	for (size_t i = 0; i < ARRAY_SIZE(urls); i++) {
		CHECK(imgf_checksum_parse(urls[i].spec, &c, &err) == 0);
		CHECK(c.is_list && c.alg_known && c.alg == urls[i].alg);
		CHECK_STR(c.url, urls[i].spec);
		imgf_checksum_release(&c);
	}
	CHECK(err == NULL);
}

TEST(parse_hostile_spec_is_quoted_bounded)
{
	size_t n = 100000;
	char *spec = xmalloc(n + 1);
	memset(spec, 'x', n);
	spec[n] = '\0';
	struct imgf_checksum c;
	struct imgf_error *err = NULL;
	CHECK(imgf_checksum_parse(spec, &c, &err) < 0);
	CHECK_ERR(err, "unknown checksum form 'xxxx");
	CHECK_ERR(err, "...'");
	CHECK(err && strlen(err->msg) < 400);
	imgf_error_free(err);
	err = NULL;
	spec[0] = '\x1b';
	memcpy(spec + 1, "sha", 3);
	CHECK(imgf_checksum_parse(spec, &c, &err) < 0);
	CHECK_ERR(err, "'\\x1bsha");
	imgf_error_free(err);
	free(spec);
}

TEST(lookup_bare_hex)
{
	expect_found(ABC256, "kubelet", ABC256, IMGF_SHA256);
	expect_found(ABC256 "\n", "kubelet", ABC256, IMGF_SHA256);
	expect_found("  " ABC256 " \r\n\r\n", "kubelet", ABC256, IMGF_SHA256);
	expect_found(ABC512 "\n", "x.iso", ABC512, IMGF_SHA512);
	expect_found("\xef\xbb\xbf" ABC256 "\n", "kubelet", ABC256, IMGF_SHA256); /* BOM */

	/* The algorithm of a .sha256 URL must agree with the digest's length. */
	struct imgf_checksum c;
	struct imgf_error *err = NULL;
	CHECK(imgf_checksum_parse("https://e.com/x.sha256", &c, &err) == 0);
	expect_lookup_error(&c, ABC512, strlen(ABC512), "x",
			    "checksum list 'https://e.com/x.sha256' holds a sha512 digest, "
			    "expected sha256");
	CHECK(lookup(&c, ABC256, strlen(ABC256), "x", &err) == 0);
	CHECK_STR(c.hex, ABC256);
	imgf_checksum_release(&c);
}

TEST(lookup_sha256sum_format)
{
	const char *text = H1 "  other.tar.gz\n" ABC256 "  containerd-2.0.0-linux-amd64.tar.gz\n" H2
			      " *runc.amd64\n";
	expect_found(text, "containerd-2.0.0-linux-amd64.tar.gz", ABC256, IMGF_SHA256);
	expect_found(text, "runc.amd64", H2, IMGF_SHA256); /* binary mark */
	expect_found(text, "other.tar.gz", H1, IMGF_SHA256);
	expect_found(H1 " single-space\n", "single-space", H1, IMGF_SHA256);
	expect_found(H1 "\tTAB\n", "TAB", H1, IMGF_SHA256);
	expect_found(H1 "  my file.iso\n", "my file.iso", H1, IMGF_SHA256);
	expect_found("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD  UP\n", "UP",
		     ABC256, IMGF_SHA256);
	expect_found(ABC512 "  big.iso\n", "big.iso", ABC512, IMGF_SHA512);
}

TEST(lookup_bsd_format)
{
	const char *fedora = "-----BEGIN PGP SIGNED MESSAGE-----\n"
			     "Hash: SHA256\n"
			     "\n"
			     "# Fedora-Cloud-Base-40.x86_64.qcow2: 123 bytes\n"
			     "SHA256 (Fedora-Cloud-Base-40.x86_64.qcow2) = " ABC256 "\n"
			     "SHA256 (Fedora (odd) name.raw) = " H1 "\n"
			     "-----BEGIN PGP SIGNATURE-----\n"
			     "iQIzBAEBCAAdFiEE=\n"
			     "-----END PGP SIGNATURE-----\n";
	expect_found(fedora, "Fedora-Cloud-Base-40.x86_64.qcow2", ABC256, IMGF_SHA256);
	expect_found(fedora, "Fedora (odd) name.raw", H1, IMGF_SHA256);
	expect_found("SHA512 (a.iso) = " ABC512, "a.iso", ABC512, IMGF_SHA512);
	expect_found("SHA2-256(a.iso)= " ABC256 "\n", "a.iso", ABC256, IMGF_SHA256); /* openssl */
	/* A BSD line whose algorithm disagrees with its digest's length is no digest. */
	struct imgf_checksum c = list_of("https://e.com/SUMS");
	const char *t =
		"SHA512 (a.iso) = " ABC256 "\nMD5 (a.iso) = d41d8cd98f00b204e9800998ecf8427e\n";
	expect_lookup_error(&c, t, strlen(t), "a.iso", "'a.iso' in checksum list");
	imgf_checksum_release(&c);
}

TEST(lookup_names_with_directories)
{
	const char *text = H1 "  ./kubeadm\n" H2 " *bin/linux/amd64/kubectl\n";
	expect_found(text, "kubeadm", H1, IMGF_SHA256);
	expect_found(text, "kubectl", H2, IMGF_SHA256);
	/* A name is matched whole, never by prefix or suffix. */
	struct imgf_checksum c = list_of("https://e.com/SUMS");
	expect_lookup_error(&c, text, strlen(text), "adm",
			    "'adm' not found in checksum list 'https://e.com/SUMS'");
	const char *t2 = H1 "  a.bin.sig\n" H2 "  xa.bin\n";
	expect_lookup_error(&c, t2, strlen(t2), "a.bin", "'a.bin' not found");
	imgf_checksum_release(&c);
}

TEST(lookup_crlf_lines)
{
	const char *text = H1 "  a.tar.gz\r\n" ABC256 " *b.tar.gz\r\n\r\n";
	expect_found(text, "b.tar.gz", ABC256, IMGF_SHA256);
	expect_found(text, "a.tar.gz", H1, IMGF_SHA256);
	expect_found("SHA256 (c.iso) = " ABC256 "\r\n", "c.iso", ABC256, IMGF_SHA256);
}

TEST(lookup_missing_name_names_file_and_list)
{
	struct imgf_checksum c = list_of("https://example.com/v1/SHA256SUMS");
	const char *text = H1 "  a.tar.gz\n";
	expect_lookup_error(&c, text, strlen(text), "b.tar.gz",
			    "'b.tar.gz' not found in checksum list "
			    "'https://example.com/v1/SHA256SUMS'");
	/* One digest with a name for another file is not used for ours. */
	CHECK(c.hex[0] == '\0');
	expect_lookup_error(&c, "", 0, "b.tar.gz", "holds no sha256 or sha512 digest");
	expect_lookup_error(&c, "# nothing\n\n", 11, "b", "holds no sha256 or sha512 digest");
	const char *two = H1 "\n" H2 "\n";
	expect_lookup_error(&c, two, strlen(two), "b",
			    "holds 2 digests but no file names to find 'b' by");
	expect_lookup_error(&c, text, strlen(text), "", "no file name to look up");
	/* A lone digest is only used when the list names no files at all. */
	const char *mixed = H1 "\n" H2 "  other.bin\n";
	expect_lookup_error(&c, mixed, strlen(mixed), "b.tar.gz", "'b.tar.gz' not found");
	imgf_checksum_release(&c);
}

TEST(lookup_algorithm_choice_and_conflicts)
{
	const char *both = "SHA512 (a.iso) = " ABC512 "\nSHA256 (a.iso) = " ABC256 "\n";
	expect_found(both, "a.iso", ABC256, IMGF_SHA256); /* sha256 preferred */
	struct imgf_checksum c;
	struct imgf_error *err = NULL;
	CHECK(imgf_checksum_parse("https://e.com/a.iso.sha512", &c, &err) == 0);
	CHECK(lookup(&c, both, strlen(both), "a.iso", &err) == 0);
	CHECK_STR(c.hex, ABC512);
	CHECK(c.alg == IMGF_SHA512);
	const char *only256 = ABC256 "  b.iso\n";
	expect_lookup_error(&c, only256, strlen(only256), "b.iso",
			    "'b.iso' in checksum list 'https://e.com/a.iso.sha512' has a sha256 "
			    "digest, expected sha512");
	imgf_checksum_release(&c);

	c = list_of("https://e.com/SUMS");
	const char *sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709  a.iso\n";
	expect_lookup_error(&c, sha1, strlen(sha1), "a.iso",
			    "'a.iso' in checksum list 'https://e.com/SUMS' has a digest of 40 hex "
			    "digits, expected 64 (sha256) or 128 (sha512)");
	const char *conflict = H1 "  ./a.iso\n" H2 "  other/a.iso\n";
	expect_lookup_error(&c, conflict, strlen(conflict), "a.iso",
			    "'a.iso' appears in checksum list 'https://e.com/SUMS' with different "
			    "sha256 digests");
	imgf_checksum_release(&c);
	expect_found(H1 "  ./a.iso\n" H1 "  a.iso\n", "a.iso", H1, IMGF_SHA256); /* same: fine */
}

TEST(lookup_hostile_input)
{
	struct imgf_checksum c = list_of("https://e.com/SUMS");
	/* A huge line without a newline. */
	size_t n = 4 << 20;
	char *big = xmalloc(n);
	memset(big, 'a', n);
	expect_lookup_error(&c, big, n, "x", "holds no sha256 or sha512 digest");
	/* ... that ends in a real entry after a NUL and many blanks. */
	memset(big, ' ', n);
	big[10] = '\0';
	const char *tail = "\n" ABC256 "  x";
	memcpy(big + n - strlen(tail), tail, strlen(tail));
	struct imgf_error *err = NULL;
	CHECK(lookup(&c, big, n, "x", &err) == 0);
	CHECK_STR(c.hex, ABC256);
	free(big);

	/* NULs inside names and digests never match and never read past the end. */
	static const char nul[] = ABC256 "  x\0y\n" H1 "\0  z\n"
					 "SHA256 (q\0) = " H2 "\n";
	c.alg_known = false;
	expect_lookup_error(&c, nul, sizeof(nul) - 1, "x", "'x' not found");
	expect_lookup_error(&c, nul, sizeof(nul) - 1, "z", "'z' not found");
	expect_lookup_error(&c, nul, sizeof(nul) - 1, "q", "'q' not found");

	/* Truncated at every length: never crashes, never reads past the end. */
	const char *text = "SHA256 (a.iso) = " ABC256 "\n" H1 " *b\r\n";
	for (size_t i = 0; i <= strlen(text); i++) {
		struct imgf_error *e = NULL;
		c.alg_known = false;
		int r = lookup(&c, text, i, "b", &e);
		CHECK(r == 0 || e != NULL);
		imgf_error_free(e);
	}
	/* Control bytes in the file name are escaped in the message. */
	expect_lookup_error(&c, "", 0, "a\033[2J", "holds no");
	expect_lookup_error(&c, H1 "  q\n", strlen(H1 "  q\n"), "a\033[2J", "'a\\x1b[2J'");
	imgf_checksum_release(&c);
}
