/*
 * The contract variables (src/contract.h): resolved and checked once per build, and
 * SOURCE_DATE_EPOCH read in one place. A bad value fails the build once, before anything is
 * made, with one precise message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "config.h"
#include "contract.h"
#include "engine.h"
#include "error.h"
#include "fsutil.h"
#include "ociimage.h"
#include "test.h"
#include "util.h"

#define FIX "tests/fixtures/config/"

#ifndef IMGF_SOURCE_DATE
#define IMGF_SOURCE_DATE 0
#endif

/* tests/fixtures/config/simple.json with `vars` ("k=v", NULL-terminated) over it. */
static struct imgf_config *load_simple(char **vars)
{
	struct imgf_config_opts o = {.vars = vars};
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(FIX "simple.json", &o, &c, &err) == 0);
	imgf_error_free(err);
	return c;
}

TEST(source_date_epoch_from_the_environment_or_the_default)
{
	struct imgf_epoch e;
	struct imgf_error *err = NULL;
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	CHECK(imgf_epoch_read(&e, &err) == 0 && e.set && e.value == 1700000000);
	CHECK_STR(e.from, "SOURCE_DATE_EPOCH");
	CHECK_STR(e.text, "1700000000");
	unsetenv("SOURCE_DATE_EPOCH");
	CHECK(imgf_epoch_read(&e, &err) == 0 && !e.set && e.value == IMGF_SOURCE_DATE);
	CHECK_STR(e.from, "imgforge's commit time");
	CHECK_STR(e.text, "");
	const char *bad[] = {"yesterday", "-5", "17e8", " 1", "99999999999999999999999"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		setenv("SOURCE_DATE_EPOCH", bad[i], 1);
		CHECK(imgf_epoch_read(&e, &err) < 0);
		_cleanup_free_ char *want = xasprintf(
			"SOURCE_DATE_EPOCH '%s': expected a number of seconds since 1970-01-01 UTC",
			bad[i]);
		CHECK_STR(err ? err->msg : NULL, want);
		imgf_error_clear(&err);
	}
	unsetenv("SOURCE_DATE_EPOCH");
}

TEST(a_bad_source_date_epoch_fails_the_build_once_before_anything_is_made)
{
	_cleanup_free_ char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-contract", &dir, &err) == 0);
	struct imgf_config *c = load_simple(NULL);
	setenv("SOURCE_DATE_EPOCH", "yesterday", 1);
	const char *want = "SOURCE_DATE_EPOCH 'yesterday': expected a number of seconds since "
			   "1970-01-01 UTC";
	/* validate, and a build: the same one message, with nothing around it */
	struct imgf_build_opts o = {.validate_only = true, .output_dir = dir};
	CHECK(imgf_engine_run(c, &o, &err) < 0);
	CHECK_STR(err ? err->msg : NULL, want);
	imgf_error_clear(&err);
	o.validate_only = false;
	CHECK(imgf_engine_run(c, &o, &err) < 0);
	CHECK_STR(err ? err->msg : NULL, want);
	imgf_error_clear(&err);
	_cleanup_free_ char *out = path_join(dir, "test-simple+kube-v1.31.2");
	CHECK(access(out, F_OK) < 0); /* no output directory */
	unsetenv("SOURCE_DATE_EPOCH");
	imgf_config_free(c);
	rm_rf(dir, NULL);
}

TEST(the_contract_is_resolved_from_the_variables)
{
	struct imgf_contract k;
	struct imgf_error *err = NULL;
	setenv("SOURCE_DATE_EPOCH", "86400", 1);
	char *vars[] = {"registry_mirrors={\"registry.k8s.io\": \"127.0.0.1:5000\"}", NULL};
	struct imgf_config *c = load_simple(vars);
	CHECK(imgf_contract_resolve(c, &k, &err) == 0);
	CHECK_STR(k.build_name, "test-simple");
	CHECK_STR(k.kubernetes_version, "v1.31.2");
	CHECK_STR(k.dir_name, "test-simple+kube-v1.31.2");
	CHECK_STR(k.arch, "amd64");
	CHECK_STR(k.platform, "linux/amd64");
	CHECK_STR(json_string_value(json_object_get(k.mirrors, "registry.k8s.io")),
		  "127.0.0.1:5000");
	CHECK(k.epoch.set && k.epoch.value == 86400);

	/* Below the build, the contract's epoch is the one used, not the environment's now. */
	setenv("SOURCE_DATE_EPOCH", "172800", 1);
	struct imgf_epoch e;
	CHECK(imgf_epoch_now(&e, &err) == 0 && e.value == 86400);
	_cleanup_free_ char *created = imgf_oci_created();
	CHECK_STR(created, "1970-01-02T00:00:00Z");
	imgf_contract_release(&k);
	CHECK(imgf_epoch_now(&e, &err) == 0 && e.value == 172800);
	unsetenv("SOURCE_DATE_EPOCH");
	imgf_config_free(c);
}

TEST(each_contract_variable_is_checked_with_a_precise_message)
{
	struct {
		const char *var;
		const char *want;
	} cases[] = {
		{"kubernetes_semver=",
		 "simple.json: build_name 'test-simple' and kubernetes_semver "
		 "'' must be non-empty and contain no '/'"},
		{"build_name=a/b", "build_name 'a/b' and kubernetes_semver 'v1.31.2' must be"},
		{"arch=ARM 64",
		 "--var: variable 'arch': 'ARM 64' is not an architecture like amd64 "
		 "or arm64"},
	};
	struct imgf_config bare = {.path = "test.json",
				   .vars = json_pack("{s:s}", "build_name", "ubuntu-2204"),
				   .var_from = json_object()};
	struct imgf_contract k0;
	struct imgf_error *e0 = NULL;
	CHECK(imgf_contract_resolve(&bare, &k0, &e0) < 0);
	CHECK_STR(e0 ? e0->msg : NULL,
		  "test.json: variables 'build_name' and 'kubernetes_semver' must be defined");
	imgf_error_free(e0);
	json_decref(bare.vars);
	json_decref(bare.var_from);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *vars[] = {(char *)cases[i].var, NULL};
		struct imgf_config *c = load_simple(vars);
		struct imgf_contract k;
		struct imgf_error *err = NULL;
		CHECK(c && imgf_contract_resolve(c, &k, &err) < 0);
		CHECK_ERR(err, cases[i].want);
		imgf_error_free(err);
		imgf_config_free(c);
	}
}

/* A bad registry_mirrors is the error of the step that uses it (which names the step), so the
 * contract resolves without its parsed form. */
TEST(a_bad_registry_mirrors_is_left_to_the_step_that_uses_it)
{
	const char *bad[] = {"registry_mirrors=[1]",
			     "registry_mirrors={\"r.example\": \"file://rel\"}"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *vars[] = {(char *)bad[i], NULL};
		struct imgf_config *c = load_simple(vars);
		struct imgf_contract k;
		struct imgf_error *err = NULL;
		CHECK(c && imgf_contract_resolve(c, &k, &err) == 0);
		CHECK(k.registry_mirrors && k.mirrors == NULL);
		imgf_contract_release(&k);
		imgf_error_free(err);
		imgf_config_free(c);
	}
	struct imgf_error *err = NULL;
	CHECK(imgf_registry_mirrors_parse("[1]", &err) == NULL);
	CHECK_STR(err ? err->msg : NULL,
		  "registry_mirrors: '[1]' is not a JSON object of registry: mirror");
	imgf_error_clear(&err);
	CHECK(imgf_registry_mirrors_parse("{\"r.example\": \"file://rel\"}", &err) == NULL);
	CHECK_ERR(err, "registry_mirrors: 'file://rel': a file:// mirror needs an absolute path");
	imgf_error_free(err);
}

TEST(a_tar_outside_a_build_checks_the_environment_itself)
{
	_cleanup_free_ char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-test-contract", &dir, &err) == 0);
	_cleanup_free_ char *tar = path_join(dir, "t.tar");
	setenv("SOURCE_DATE_EPOCH", "soon", 1);
	CHECK(imgf_tar_open(tar, &err) == NULL);
	_cleanup_free_ char *want =
		xasprintf("tar '%s': SOURCE_DATE_EPOCH 'soon': expected a number of seconds since "
			  "1970-01-01 UTC",
			  tar);
	CHECK_STR(err ? err->msg : NULL, want);
	imgf_error_free(err);
	unsetenv("SOURCE_DATE_EPOCH");
	rm_rf(dir, NULL);
}
