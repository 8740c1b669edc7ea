/*
 * The pieces of the GCS client and image-upload that need no server: base64(url), CRC-32C,
 * the checksum forms GCS reports, the service-account key and the RS256 JWT (verified with
 * the public half of a key generated here), gs:// URLs, the channel rule, .sha256 parsing,
 * endpoint selection and download URLs, an upload's digests (inline and on the hashing
 * thread), a symlinked artifact refused. Uploads themselves are in t1400-image-upload.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "base64.h"
#include "crc32c.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "gcs-internal.h"
#include "gcs.h"
#include "upload-internal.h"
#include "upload.h"
#include "util.h"

#include "test.h"

/* ---- helpers ---- */

static unsigned char *b64url_decode(const char *s, size_t *out_len)
{
	size_t n = strlen(s);
	char *std = xmalloc(n + 4);
	for (size_t i = 0; i < n; i++)
		std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	size_t padded = n;
	while (padded % 4)
		std[padded++] = '=';
	std[padded] = '\0';
	unsigned char *out = xmalloc(padded / 4 * 3 + 1);
	int r = EVP_DecodeBlock(out, (unsigned char *)std, (int)padded);
	free(std);
	if (r < 0) {
		free(out);
		return NULL;
	}
	*out_len = (size_t)r - (padded - n); /* DecodeBlock counts the padding as zero bytes */
	return out;
}

static char *tmpdir;

static char *tmp_path(const char *name)
{
	if (!tmpdir) {
		struct imgf_error *err = NULL;
		if (make_temp_dir("test-gcs", &tmpdir, &err) < 0) {
			fprintf(stderr, "%s\n", err->msg);
			exit(2);
		}
	}
	return path_join(tmpdir, name);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

static EVP_PKEY *gen_rsa(void)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
	EVP_PKEY *k = NULL;
	if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) != 1 || EVP_PKEY_keygen(ctx, &k) != 1)
		abort();
	EVP_PKEY_CTX_free(ctx);
	return k;
}

static char *pem_of(EVP_PKEY *k, bool public_half)
{
	BIO *b = BIO_new(BIO_s_mem());
	int ok = public_half ? PEM_write_bio_PUBKEY(b, k)
			     : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	if (!ok)
		abort();
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s = xstrndup(data, (size_t)n);
	BIO_free(b);
	return s;
}

static EVP_PKEY *public_from_pem(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	BIO_free(b);
	return k;
}

#define EMAIL "uploader@imgforge-test.iam.gserviceaccount.com"
#define TOKEN_URI "http://127.0.0.1:1/token"

/* A key file as the Cloud console writes it, with fields replaced or removed (NULL). */
static char *key_file(const char *name, const char *pem, const char *email, const char *uri)
{
	json_t *j = json_pack("{s:s,s:s,s:s}", "type", "service_account", "project_id", "p",
			      "private_key_id", "kid-1");
	if (pem)
		json_object_set_new(j, "private_key", json_string(pem));
	if (email)
		json_object_set_new(j, "client_email", json_string(email));
	if (uri)
		json_object_set_new(j, "token_uri", json_string(uri));
	char *path = tmp_path(name);
	if (json_dump_file(j, path, JSON_INDENT(2)) != 0)
		abort();
	json_decref(j);
	return path;
}

static struct {
	EVP_PKEY *key;
	char *pem, *pub_pem;
	char *path;
	char *body_line; /* a line of the PEM's base64 body */
} k;

static void key_setup(void)
{
	if (k.key)
		return;
	k.key = gen_rsa();
	k.pem = pem_of(k.key, false);
	k.pub_pem = pem_of(k.key, true);
	k.path = key_file("sa.json", k.pem, EMAIL, TOKEN_URI);
	const char *l = strchr(k.pem, '\n') + 1;
	l = strchr(l, '\n') + 1; /* the second body line */
	k.body_line = xstrndup(l, strcspn(l, "\n"));
}

/* ---- base64 ---- */

TEST(base64_rfc4648_vectors)
{
	static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const std[] = {"",	      "Zg==",	  "Zm8=",    "Zm9v",
					  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	for (size_t i = 0; i < ARRAY_SIZE(in); i++) {
		char *a = imgf_base64_encode(in[i], strlen(in[i]));
		char *b = imgf_base64url_encode(in[i], strlen(in[i]));
		CHECK_STR(a, std[i]);
		CHECK_STR(b, url[i]);
		free(a);
		free(b);
	}
}

TEST(base64url_uses_the_url_alphabet)
{
	const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
	char *a = imgf_base64_encode(bytes, 2);
	char *b = imgf_base64url_encode(bytes, 2);
	char *c = imgf_base64url_encode(bytes, 3);
	CHECK_STR(a, "+/8=");
	CHECK_STR(b, "-_8");
	CHECK_STR(c, "-_-_");
	free(a);
	free(b);
	free(c);
}

/* ---- CRC-32C ---- */

TEST(crc32c_known_vectors)
{
	CHECK(imgf_crc32c_update(0, "123456789", 9) == 0xE3069283u);
	CHECK(imgf_crc32c_update_sw(0, "123456789", 9) == 0xE3069283u);
	CHECK(imgf_crc32c_update(0, "", 0) == 0);
	/* RFC 3720 (iSCSI) B.4 */
	unsigned char buf[32];
	memset(buf, 0, sizeof(buf));
	CHECK(imgf_crc32c_update(0, buf, 32) == 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	CHECK(imgf_crc32c_update(0, buf, 32) == 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	CHECK(imgf_crc32c_update(0, buf, 32) == 0x46DD794Eu);
	CHECK(imgf_crc32c_update_sw(0, buf, 32) == 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	CHECK(imgf_crc32c_update(0, buf, 32) == 0x113FDB5Cu);
}

TEST(crc32c_in_pieces_and_both_paths_agree)
{
	enum {
		N = 100003
	};
	unsigned char *data = xmalloc(N);
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < N; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (unsigned char)x;
	}
	uint32_t whole = imgf_crc32c_update(0, data, N);
	CHECK(whole == imgf_crc32c_update_sw(0, data, N));
	/* odd offsets and lengths exercise the byte-wise heads and tails */
	static const size_t cuts[] = {1, 3, 7, 8, 9, 15, 64, 4093, 65536};
	for (size_t c = 0; c < ARRAY_SIZE(cuts); c++) {
		uint32_t crc = 0, sw = 0;
		for (size_t off = 0; off < N; off += cuts[c]) {
			size_t n = N - off < cuts[c] ? N - off : cuts[c];
			crc = imgf_crc32c_update(crc, data + off, n);
			sw = imgf_crc32c_update_sw(sw, data + off, n);
		}
		CHECK(crc == whole);
		CHECK(sw == whole);
	}
	for (size_t off = 1; off < 8; off++)
		CHECK(imgf_crc32c_update(0, data + off, N - off) ==
		      imgf_crc32c_update_sw(0, data + off, N - off));
	free(data);
}

TEST(checksums_in_the_form_gcs_reports)
{
	char b64[9];
	imgf_crc32c_b64(0xE3069283u, b64);
	CHECK_STR(b64, "4waSgw==");
	imgf_crc32c_b64(0, b64);
	CHECK_STR(b64, "AAAAAA==");
	/* What fake-gcs-server (Go's hash/crc32 and crypto/md5) reported for the object "x1". */
	imgf_crc32c_b64(imgf_crc32c_update(0, "x1", 2), b64);
	CHECK_STR(b64, "EaSqXw==");
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	CHECK(EVP_Digest("x1", 2, md, &n, EVP_md5(), NULL) == 1);
	char *m = imgf_base64_encode(md, n);
	CHECK_STR(m, "bb+awtoJ7h096/WlGHPsbQ==");
	free(m);
}

/* ---- the key and the JWT ---- */

TEST(jwt_is_rs256_over_header_and_claims_and_verifies_with_the_public_half)
{
	key_setup();
	struct imgf_gcs_key key;
	struct imgf_error *err = NULL;
	CHECK(imgf_gcs_key_load(k.path, &key, &err) == 0);
	if (err) {
		fprintf(stderr, "  %s\n", err->msg);
		imgf_error_free(err);
		return;
	}
	CHECK_STR(key.client_email, EMAIL);
	CHECK_STR(key.token_uri, TOKEN_URI);
	char *jwt = NULL;
	CHECK(imgf_gcs_jwt_build(&key, 1700000000, &jwt, &err) == 0);
	imgf_gcs_key_release(&key);
	if (!jwt)
		return;
	char *dot1 = strchr(jwt, '.');
	char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	CHECK(dot1 && dot2 && !strchr(dot2 + 1, '.'));
	if (!dot2) {
		free(jwt);
		return;
	}
	CHECK(strcspn(jwt, "+/=") == strlen(jwt)); /* base64url, unpadded */
	char *h64 = xstrndup(jwt, (size_t)(dot1 - jwt));
	char *c64 = xstrndup(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	size_t hl = 0, cl = 0, sl = 0;
	unsigned char *h = b64url_decode(h64, &hl);
	unsigned char *c = b64url_decode(c64, &cl);
	unsigned char *sig = b64url_decode(dot2 + 1, &sl);
	CHECK(h && c && sig && sl == 256);
	json_t *hj = json_loadb((char *)h, hl, 0, NULL);
	json_t *cj = json_loadb((char *)c, cl, 0, NULL);
	CHECK_STR(json_string_value(json_object_get(hj, "alg")), "RS256");
	CHECK_STR(json_string_value(json_object_get(hj, "typ")), "JWT");
	CHECK_STR(json_string_value(json_object_get(hj, "kid")), "kid-1");
	CHECK_STR(json_string_value(json_object_get(cj, "iss")), EMAIL);
	CHECK_STR(json_string_value(json_object_get(cj, "aud")), TOKEN_URI);
	CHECK_STR(json_string_value(json_object_get(cj, "scope")),
		  "https://www.googleapis.com/auth/devstorage.read_write");
	CHECK(json_integer_value(json_object_get(cj, "iat")) == 1700000000);
	CHECK(json_integer_value(json_object_get(cj, "exp")) == 1700000000 + 3600);

	/* Verify with a key read back from the public PEM alone. */
	EVP_PKEY *pub = public_from_pem(k.pub_pem);
	CHECK(pub != NULL);
	size_t input_len = (size_t)(dot2 - jwt);
	EVP_MD_CTX *v = EVP_MD_CTX_new();
	CHECK(EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1);
	CHECK(EVP_DigestVerify(v, sig, sl, (unsigned char *)jwt, input_len) == 1);
	EVP_MD_CTX_free(v);
	/* ... and a changed claim no longer verifies. */
	jwt[dot1 - jwt + 3] ^= 1;
	v = EVP_MD_CTX_new();
	CHECK(EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1);
	CHECK(EVP_DigestVerify(v, sig, sl, (unsigned char *)jwt, input_len) != 1);
	EVP_MD_CTX_free(v);

	EVP_PKEY_free(pub);
	json_decref(hj);
	json_decref(cj);
	free(h);
	free(c);
	free(sig);
	free(h64);
	free(c64);
	free(jwt);
}

TEST(key_defaults_the_token_uri)
{
	key_setup();
	char *path = key_file("nouri.json", k.pem, EMAIL, NULL);
	struct imgf_gcs_key key;
	struct imgf_error *err = NULL;
	CHECK(imgf_gcs_key_load(path, &key, &err) == 0);
	CHECK_STR(key.token_uri, "https://oauth2.googleapis.com/token");
	imgf_gcs_key_release(&key);
	imgf_error_free(err);
	free(path);
}

/* The error names the file and what is wrong, and holds nothing of the key. */
static void expect_key_error(const char *path, const char *needle)
{
	struct imgf_gcs_key key;
	struct imgf_error *err = NULL;
	CHECK(imgf_gcs_key_load(path, &key, &err) < 0);
	CHECK_ERR(err, needle);
	CHECK_ERR(err, path);
	if (err) {
		CHECK(!strstr(err->msg, k.body_line));
		CHECK(!strstr(err->msg, "PRIVATE KEY"));
		CHECK(!strstr(err->msg, "MII"));
	}
	imgf_error_free(err);
}

TEST(corrupt_key_files_give_precise_errors_without_the_key)
{
	key_setup();
	/* cut inside the private_key string: jansson would quote it in its message */
	char *text = NULL;
	size_t len = 0;
	struct imgf_error *err = NULL;
	CHECK(read_file(k.path, 0, &text, &len, &err) == 0);
	char *cut = strstr(text, k.body_line);
	CHECK(cut != NULL);
	if (cut)
		cut[20] = '\0';
	char *trunc = tmp_path("truncated.json");
	write_text(trunc, text);
	expect_key_error(trunc, "not valid JSON (line ");

	char *garbled_pem = xstrdup(k.pem);
	char *p = strstr(garbled_pem, "MII");
	if (p)
		memcpy(p, "XYZ", 3);
	char *garbled = key_file("garbled.json", garbled_pem, EMAIL, TOKEN_URI);
	expect_key_error(garbled, "field 'private_key' is not a PEM private key");

	char *noemail = key_file("noemail.json", k.pem, NULL, TOKEN_URI);
	expect_key_error(noemail, "field 'client_email' is missing");
	char *nokey = key_file("nokey.json", NULL, EMAIL, TOKEN_URI);
	expect_key_error(nokey, "field 'private_key' is missing");
	char *baduri = key_file("baduri.json", k.pem, EMAIL, "file:///etc/passwd");
	expect_key_error(baduri, "field 'token_uri' is not an http(s) URL");

	/* An encrypted key must not make OpenSSL prompt for a passphrase. */
	BIO *b = BIO_new(BIO_s_mem());
	CHECK(PEM_write_bio_PrivateKey(b, k.key, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL,
				       NULL) == 1);
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *enc_pem = xstrndup(data, (size_t)n);
	BIO_free(b);
	char *enc = key_file("encrypted.json", enc_pem, EMAIL, TOKEN_URI);
	expect_key_error(enc, "field 'private_key' is not a PEM private key");

	/* RS256 needs RSA */
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(ec != NULL);
	char *ec_pem = pem_of(ec, false);
	char *ecf = key_file("ec.json", ec_pem, EMAIL, TOKEN_URI);
	expect_key_error(ecf, "field 'private_key' is not an RSA key");

	char *user = tmp_path("user.json");
	write_text(user, "{\"type\": \"authorized_user\", \"client_id\": \"x\"}");
	expect_key_error(user, "field 'type' is not 'service_account'");

	EVP_PKEY_free(ec);
	free(ec_pem);
	free(ecf);
	free(user);
	free(enc_pem);
	free(enc);
	free(text);
	free(trunc);
	free(garbled_pem);
	free(garbled);
	free(noemail);
	free(nokey);
	free(baduri);
}

/* ---- gs:// URLs, channels, .sha256 text ---- */

TEST(gs_urls)
{
	static const struct {
		const char *url, *bucket, *prefix;
	} ok[] = {
		{"gs://capv-images/release/v1.31.2/", "capv-images", "release/v1.31.2/"},
		{"gs://capv-images", "capv-images", ""},
		{"gs://capv-images/", "capv-images", ""},
		{"gs://a.b_c-1/x", "a.b_c-1", "x"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		char *b = NULL, *p = NULL;
		struct imgf_error *err = NULL;
		CHECK(imgf_gs_url_parse(ok[i].url, &b, &p, &err) == 0);
		CHECK_STR(b, ok[i].bucket);
		CHECK_STR(p, ok[i].prefix);
		free(b);
		free(p);
		imgf_error_free(err);
	}
	static const struct {
		const char *url, *needle;
	} bad[] = {
		{"s3://bucket/x", "expected a gs://BUCKET/PREFIX URL"},
		{"capv-images/x", "expected a gs://BUCKET/PREFIX URL"},
		{"gs://", "bucket name '' is not valid"},
		{"gs:///x", "bucket name '' is not valid"},
		{"gs://ab/x", "bucket name 'ab' is not valid"},
		{"gs://Capv/x", "bucket name 'Capv' is not valid"},
		{"gs://a b/x", "bucket name 'a b' is not valid"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *b = NULL, *p = NULL;
		struct imgf_error *err = NULL;
		CHECK(imgf_gs_url_parse(bad[i].url, &b, &p, &err) < 0);
		CHECK_ERR(err, bad[i].needle);
		CHECK(err && err->status == IMGF_EXIT_USAGE);
		imgf_error_free(err);
	}
}

TEST(channel_from_the_version)
{
	static const struct {
		const char *v;
		bool release;
	} cases[] = {
		{"v1.31.2", true},	  {"1.31.2-1", true},	  {"v1.31.2-10", true},
		{"1.31.2", true},	  {"v10.200.3000", true}, {"v1.31.2-rc.1", false},
		{"v1.31.2+abc", false},	  {"v1.31", false},	  {"", false},
		{"v1.31.2-", false},	  {"V1.31.2", false},	  {"vv1.31.2", false},
		{"v1.31.2-1-2", false},	  {"v1.31.2 ", false},	  {"v1.31.2\n", false},
		{"v1.31.2-alpha", false}, {"x1.31.2", false},	  {"1..2", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool got = imgf_upload_version_is_release(cases[i].v);
		if (got != cases[i].release)
			fprintf(stderr, "  version '%s': release=%d, want %d\n", cases[i].v, got,
				cases[i].release);
		CHECK(got == cases[i].release);
	}
}

TEST(sha256_sidecar_text)
{
	const char *hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	char out[65];
	char *bare = xasprintf("%s\n", hex);
	char *sum = xasprintf("%s  ubuntu-2204+kube-v1.31.2.ova\n", hex);
	char *upper =
		xasprintf("  E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855");
	CHECK(imgf_upload_parse_sha256(bare, strlen(bare), out) == 0);
	CHECK_STR(out, hex);
	CHECK(imgf_upload_parse_sha256(sum, strlen(sum), out) == 0);
	CHECK_STR(out, hex);
	CHECK(imgf_upload_parse_sha256(upper, strlen(upper), out) == 0);
	CHECK_STR(out, hex);
	CHECK(imgf_upload_parse_sha256(hex, 63, out) < 0);
	CHECK(imgf_upload_parse_sha256("", 0, out) < 0);
	char *longer = xasprintf("%s0\n", hex);
	CHECK(imgf_upload_parse_sha256(longer, strlen(longer), out) < 0);
	char *nothex = xasprintf("%.63sg\n", hex);
	CHECK(imgf_upload_parse_sha256(nothex, strlen(nothex), out) < 0);
	free(bare);
	free(sum);
	free(upper);
	free(longer);
	free(nothex);
}

/* ---- endpoints and URLs (no traffic: opening a client sends nothing) ---- */

static void env_clear(void)
{
	unsetenv("STORAGE_EMULATOR_HOST");
	unsetenv("IMGFORGE_GCS_ENDPOINT");
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	unsetenv("IMGFORGE_UPLOAD_CHUNK");
}

TEST(emulator_endpoint_and_download_urls)
{
	env_clear();
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443", 1);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json", 1); /* not read */
	struct imgf_gcs *g = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_gcs_open(NULL, &g, &err) == 0);
	if (g) {
		CHECK_STR(imgf_gcs_endpoint(g), "http://127.0.0.1:4443");
		CHECK(imgf_gcs_is_custom_endpoint(g));
		char *u = imgf_gcs_download_url(g, "capv-images",
						"release/v1.31.2/ubuntu-2204+kube-v1.31.2.ova");
		CHECK_STR(u, "http://127.0.0.1:4443/download/storage/v1/b/capv-images/o/"
			     "release%2Fv1.31.2%2Fubuntu-2204%2Bkube-v1.31.2.ova?alt=media");
		free(u);
	}
	imgf_gcs_free(g);
	imgf_error_free(err);
	env_clear();
}

TEST(google_endpoint_needs_a_key_and_gives_public_urls)
{
	key_setup();
	env_clear();
	struct imgf_gcs *g = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_gcs_open(NULL, &g, &err) < 0);
	CHECK_ERR(err, "no credentials for https://storage.googleapis.com: pass --key-file");
	imgf_error_free(err);
	err = NULL;

	setenv("GOOGLE_APPLICATION_CREDENTIALS", k.path, 1);
	CHECK(imgf_gcs_open(NULL, &g, &err) == 0);
	if (g) {
		CHECK_STR(imgf_gcs_endpoint(g), "https://storage.googleapis.com");
		CHECK(!imgf_gcs_is_custom_endpoint(g));
		char *u = imgf_gcs_download_url(g, "capv-images",
						"release/v1.31.2/ubuntu-2204+kube-v1.31.2.ova");
		CHECK_STR(u, "https://storage.googleapis.com/capv-images/release/v1.31.2/"
			     "ubuntu-2204%2Bkube-v1.31.2.ova");
		free(u);
	}
	imgf_gcs_free(g);
	imgf_error_free(err);
	env_clear();
}

TEST(custom_endpoint_keeps_the_key)
{
	key_setup();
	env_clear();
	setenv("IMGFORGE_GCS_ENDPOINT", "http://127.0.0.1:9/", 1);
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443", 1);
	struct imgf_gcs *g = NULL;
	struct imgf_error *err = NULL;
	char *bad = tmp_path("missing.json");
	/* the key is read (and its absence reported) although an emulator is set too */
	CHECK(imgf_gcs_open(bad, &g, &err) < 0);
	CHECK_ERR(err, "service-account key: open '");
	imgf_error_free(err);
	err = NULL;
	CHECK(imgf_gcs_open(k.path, &g, &err) == 0);
	if (g)
		CHECK_STR(imgf_gcs_endpoint(g), "http://127.0.0.1:9");
	imgf_gcs_free(g);
	imgf_error_free(err);
	free(bad);
	env_clear();
}

TEST(upload_chunk_must_be_a_multiple_of_256k)
{
	env_clear();
	setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443", 1);
	static const char *const bad[] = {"1000", "0", "-262144", "abc", "262144x", "262145"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		setenv("IMGFORGE_UPLOAD_CHUNK", bad[i], 1);
		struct imgf_gcs *g = NULL;
		struct imgf_error *err = NULL;
		CHECK(imgf_gcs_open(NULL, &g, &err) < 0);
		CHECK_ERR(err, "IMGFORGE_UPLOAD_CHUNK");
		CHECK_ERR(err, "multiple of 262144");
		imgf_error_free(err);
	}
	setenv("IMGFORGE_UPLOAD_CHUNK", "524288", 1);
	struct imgf_gcs *g = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_gcs_open(NULL, &g, &err) == 0);
	imgf_gcs_free(g);
	imgf_error_free(err);
	env_clear();
}

/* What the key tests shared, freed after main returns (tests run in no promised order). */
__attribute__((destructor)) static void shared_release(void)
{
	EVP_PKEY_free(k.key);
	free(k.pem);
	free(k.pub_pem);
	free(k.path);
	free(k.body_line);
	if (tmpdir)
		rm_rf(tmpdir, NULL);
	free(tmpdir);
	memset(&k, 0, sizeof(k));
}

/* sha256 (hex) and crc32c of what was fed, after finishing the worker. */
static void upload_hash_result(struct upload_hash *h, char sha[IMGF_DIGEST_HEX_MAX], uint32_t *crc)
{
	imgf_gcs_upload_hash_finish(h);
	imgf_digest_final_hex(&h->sha256, sha);
	*crc = h->crc;
	imgf_digest_release(&h->sha256);
}

static void upload_hash_init(struct upload_hash *h)
{
	memset(h, 0, sizeof(*h));
	imgf_digest_init(&h->sha256, IMGF_SHA256);
}

TEST(upload_digests_on_the_hashing_thread_equal_inline_ones_across_resends)
{
	/* More than the worker's ring (8 slots of 512 KiB) holds, in pieces of odd sizes, some
	 * larger than a slot, with ranges sent again as after a resume. */
	enum {
		N = 9 * 1024 * 1024 + 12345
	};
	unsigned char *data = xmalloc(N);
	uint64_t x = 0x9E3779B97F4A7C15ULL;
	for (size_t i = 0; i < N; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (unsigned char)x;
	}
	struct upload_hash inl, thr;
	upload_hash_init(&inl);
	upload_hash_init(&thr);
	CHECK(imgf_gcs_upload_hash_start(&thr));
	static const size_t piece[] = {1, 4093, 524288, 524289, 1500000, 65536, 7};
	uint64_t at = 0;
	for (size_t j = 0; at < N; j++) {
		size_t n = piece[j % ARRAY_SIZE(piece)];
		if (n > N - at)
			n = (size_t)(N - at);
		imgf_gcs_upload_hash_feed(&inl, at, (const char *)data + at, n);
		imgf_gcs_upload_hash_feed(&thr, at, (const char *)data + at, n);
		at += n;
		if (j % 5 == 4 && at > 300000) /* a resume from an earlier offset */
			at -= 300000;
	}
	CHECK(thr.upto == (uint64_t)N && inl.upto == (uint64_t)N);
	char s1[IMGF_DIGEST_HEX_MAX], s2[IMGF_DIGEST_HEX_MAX];
	uint32_t c1, c2;
	upload_hash_result(&inl, s1, &c1);
	upload_hash_result(&thr, s2, &c2);
	CHECK_STR(s1, s2);
	CHECK(c1 == c2);
	/* and both are the digests of the data, once */
	char want[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, data, N, want);
	CHECK_STR(s1, want);
	CHECK(c1 == imgf_crc32c_update(0, data, N));
	free(data);
}

/* A build directory whose manifest names NAME.qcow2, and a key file outside it. */
static void symlinked_build(char **dir, char **key)
{
	*dir = tmp_path("symlinked-build");
	*key = tmp_path("service-account.json");
	CHECK(mkdir_p(*dir, 0755, NULL) == 0);
	CHECK(write_file_atomic(*key, "{\"private_key\": \"secret\"}", 26, 0600, NULL) == 0);
	const char *m = "{\"builds\": [{\"name\": \"capi-qcow2\", \"files\": [{\"name\": "
			"\"ubuntu+kube-v1.31.2.qcow2\"}], \"custom_data\": {\"build_name\": "
			"\"ubuntu\", \"kubernetes_semver\": \"v1.31.2\", \"upload_bucket\": "
			"\"capi-images\"}}]}";
	_cleanup_free_ char *mpath = path_join(*dir, "manifest.json");
	CHECK(write_file_atomic(mpath, m, strlen(m), 0644, NULL) == 0);
	_cleanup_free_ char *art = path_join(*dir, "ubuntu+kube-v1.31.2.qcow2");
	unlink(art);
	CHECK(symlink(*key, art) == 0);
}

TEST(image_upload_refuses_a_symlinked_artifact_before_any_request)
{
	env_clear();
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9", 1); /* nothing listens: no request */
	setenv("IMGFORGE_RETRY_BASE_MS", "1", 1);
	_cleanup_free_ char *dir = NULL, *key = NULL;
	symlinked_build(&dir, &key);
	char *dirs[] = {dir, NULL};
	struct imgf_upload_opts o = {.dry_run = true};
	struct imgf_error *err = NULL;
	CHECK(imgf_upload_run(&o, dirs, &err) < 0);
	CHECK_ERR(err, "builds[0].files: artifact 'ubuntu+kube-v1.31.2.qcow2' is a symlink");
	imgf_error_free(err);
	unsetenv("IMGFORGE_RETRY_BASE_MS");
	env_clear();
}

/* A build directory whose manifest names `files` (a JSON list of names), nothing else in it. */
static char *listed_build(const char *name, const char *files)
{
	char *dir = tmp_path(name);
	CHECK(mkdir_p(dir, 0755, NULL) == 0);
	_cleanup_free_ char *m =
		xasprintf("{\"builds\": [{\"name\": \"capi\", \"files\": %s, \"custom_data\": "
			  "{\"build_name\": \"ubuntu\", \"kubernetes_semver\": \"v1.31.2\", "
			  "\"upload_bucket\": \"capi-images\"}}]}",
			  files);
	_cleanup_free_ char *mpath = path_join(dir, "manifest.json");
	CHECK(write_file_atomic(mpath, m, strlen(m), 0644, NULL) == 0);
	return dir;
}

/* The planner takes what the post-processors write: each extension of imgf_upload_exts is
 * picked up (its symlink refused while planning, before any request), and a build with none
 * of them names them all. */
TEST(image_upload_plans_every_extension_the_builders_and_post_processors_write)
{
	env_clear();
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9", 1); /* nothing listens: no request */
	setenv("IMGFORGE_RETRY_BASE_MS", "1", 1);
	struct imgf_upload_opts o = {.dry_run = true};
	static const char *const exts[] = {"qcow2", "ova",    "raw",
					   "vhd",   "tar.gz", "containerdisk.tar"};
	for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
		_cleanup_free_ char *dname = xasprintf("listed-%s", exts[i]);
		_cleanup_free_ char *file = xasprintf("ubuntu+kube-v1.31.2.%s", exts[i]);
		_cleanup_free_ char *files = xasprintf("[{\"name\": \"console.log\"}, "
						       "{\"name\": \"%s\"}]",
						       file);
		_cleanup_free_ char *dir = listed_build(dname, files);
		_cleanup_free_ char *art = path_join(dir, file);
		CHECK(symlink("/etc/hostname", art) == 0);
		char *dirs[] = {dir, NULL};
		struct imgf_error *err = NULL;
		CHECK(imgf_upload_run(&o, dirs, &err) < 0);
		_cleanup_free_ char *want = xasprintf("artifact '%s' is a symlink", file);
		CHECK_ERR(err, want);
		imgf_error_free(err);
	}
	_cleanup_free_ char *dir = listed_build("listed-none", "[{\"name\": \"console.log\"}, "
							       "{\"name\": \"disk.img\"}]");
	char *dirs[] = {dir, NULL};
	struct imgf_error *err = NULL;
	CHECK(imgf_upload_run(&o, dirs, &err) < 0);
	CHECK_ERR(
		err,
		"manifest.json: no .qcow2, .ova, .raw, .vhd, .tar.gz or .containerdisk.tar artifact in "
		"any build's files");
	imgf_error_free(err);
	unsetenv("IMGFORGE_RETRY_BASE_MS");
	env_clear();
}

TEST(gcs_upload_does_not_follow_a_symlink_swapped_in_after_the_plan)
{
	env_clear();
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9", 1);
	setenv("IMGFORGE_RETRY_BASE_MS", "1", 1);
	_cleanup_free_ char *dir = NULL, *key = NULL;
	symlinked_build(&dir, &key);
	_cleanup_free_ char *art = path_join(dir, "ubuntu+kube-v1.31.2.qcow2");
	struct imgf_gcs *g = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_gcs_open(NULL, &g, &err) == 0);
	struct imgf_gcs_upload_result res;
	CHECK(g && imgf_gcs_upload_file(g, "capi-images", "o.qcow2", art, NULL, &res, &err) < 0);
	CHECK_ERR(err, "open '");
	CHECK_ERR(err, "Too many levels of symbolic links");
	imgf_error_free(err);
	imgf_gcs_free(g);
	unsetenv("IMGFORGE_RETRY_BASE_MS");
	env_clear();
}
