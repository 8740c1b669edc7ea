/* Config loading, layering, precedence, interpolation and errors; manifest writing. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "manifest.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

#define FIX "tests/fixtures/config/"

static json_t *vars(const char *k1, const char *v1, const char *k2, const char *v2)
{
	json_t *o = json_object();
	json_object_set_new(o, k1, json_string(v1));
	if (k2)
		json_object_set_new(o, k2, json_string(v2));
	return o;
}

TEST(interpolate_replaces_references_with_and_without_spaces)
{
	json_t *v = vars("a", "x", "b_c-1.2", "y");
	char *out = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_interpolate("{{a}}-{{ a }}-{{  b_c-1.2\t}}!", v, "here", &out, &err) == 0);
	CHECK_STR(out, "x-x-y!");
	free(out);
	CHECK(imgf_interpolate("no refs { } }} {", v, "here", &out, &err) == 0);
	CHECK_STR(out, "no refs { } }} {");
	free(out);
	json_decref(v);
	CHECK(err == NULL);
}

TEST(interpolate_undefined_variable_names_place_and_name)
{
	json_t *v = vars("a", "x", NULL, NULL);
	char *out = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_interpolate("{{ a }}/{{ nope }}", v, "f.json: provisioners[2].url", &out, &err) <
	      0);
	CHECK_STR(err ? err->msg : NULL, "f.json: provisioners[2].url: undefined variable 'nope'");
	CHECK(out == NULL);
	imgf_error_free(err);
	json_decref(v);
}

TEST(interpolate_malformed_reference_is_an_error)
{
	json_t *v = vars("a", "x", NULL, NULL);
	char *out = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_interpolate("{{ a b }}", v, "w", &out, &err) < 0);
	CHECK_ERR(err, "malformed reference");
	imgf_error_clear(&err);
	CHECK(imgf_interpolate("{{ }}", v, "w", &out, &err) < 0);
	CHECK_ERR(err, "expected '{{ name }}'");
	imgf_error_free(err);
	json_decref(v);
}

TEST(interpolate_json_reports_key_paths)
{
	json_t *v = vars("a", "x", NULL, NULL);
	json_t *in = json_loads("{\"k\": [\"{{a}}\", {\"u\": \"{{ z }}\"}]}", 0, NULL);
	json_t *out = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_interpolate_json(in, v, "img.json: provisioners", &out, &err) < 0);
	CHECK_STR(err ? err->msg : NULL, "img.json: provisioners.k[1].u: undefined variable 'z'");
	imgf_error_free(err);
	json_decref(in);
	in = json_loads("{\"k\": [\"{{a}}\", 3, true]}", 0, NULL);
	err = NULL;
	CHECK(imgf_interpolate_json(in, v, "w", &out, &err) == 0);
	CHECK_STR(json_string_value(json_array_get(json_object_get(out, "k"), 0)), "x");
	CHECK(json_integer_value(json_array_get(json_object_get(out, "k"), 1)) == 3);
	json_decref(out);
	json_decref(in);
	json_decref(v);
}

TEST(template_first_var)
{
	char *v = imgf_template_first_var("{{ kubernetes_http_source }}/{{ kubernetes_semver }}");
	CHECK_STR(v, "kubernetes_http_source");
	free(v);
	CHECK(imgf_template_first_var("https://example.com/x") == NULL);
	v = imgf_template_first_var("{{ bad ref }} {{ok}}");
	CHECK_STR(v, "ok");
	free(v);
}

TEST(yaml_scalars_get_json_types_quoted_stay_strings)
{
	const char *y = "a: true\nb: 12\nc: '12'\nd: 1.5\ne: null\nf: hello\ng: [1, x]\n"
			"h: {i: false}\n";
	json_t *out = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_parse_yaml("t.yaml", y, strlen(y), &out, &err) == 0);
	CHECK(json_is_true(json_object_get(out, "a")));
	CHECK(json_integer_value(json_object_get(out, "b")) == 12);
	CHECK_STR(json_string_value(json_object_get(out, "c")), "12");
	CHECK(json_is_real(json_object_get(out, "d")));
	CHECK(json_is_null(json_object_get(out, "e")));
	CHECK_STR(json_string_value(json_object_get(out, "f")), "hello");
	CHECK(json_array_size(json_object_get(out, "g")) == 2);
	CHECK(json_is_false(json_object_get(json_object_get(out, "h"), "i")));
	json_decref(out);
}

TEST(yaml_errors_carry_line_and_column)
{
	const char *y = "a: b\n  c: d\n";
	json_t *out = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_parse_yaml("t.yaml", y, strlen(y), &out, &err) < 0);
	CHECK_ERR(err, "t.yaml:2:");
	imgf_error_clear(&err);
	y = "a: &x 1\nb: *x\n";
	CHECK(imgf_config_parse_yaml("t.yaml", y, strlen(y), &out, &err) < 0);
	CHECK_ERR(err, "t.yaml:2:4: aliases are not supported");
	imgf_error_clear(&err);
	y = "a: 1\na: 2\n";
	CHECK(imgf_config_parse_yaml("t.yaml", y, strlen(y), &out, &err) < 0);
	CHECK_ERR(err, "duplicate key 'a'");
	imgf_error_clear(&err);
	y = "--- 1\n--- 2\n";
	CHECK(imgf_config_parse_yaml("t.yaml", y, strlen(y), &out, &err) < 0);
	CHECK_ERR(err, "only one document");
	imgf_error_free(err);
}

TEST(json_errors_carry_line_and_column)
{
	json_t *out = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_parse_file(FIX "syntax-error.json", &out, &err) < 0);
	CHECK_ERR(err, FIX "syntax-error.json:4:");
	imgf_error_free(err);
}

TEST(load_layers_includes_then_file)
{
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(FIX "simple.json", NULL, &c, &err) == 0);
	if (!c)
		return;
	CHECK_STR(imgf_config_var(c, "shadowed"), "file");
	CHECK_STR(imgf_config_var(c, "arch"), "amd64");
	CHECK_STR(imgf_config_var(c, "nested"), "hello from base on amd64");
	CHECK(c->nimages == 1);
	CHECK_STR(c->images[0].name, "simple");
	CHECK_STR(json_string_value(json_object_get(c->images[0].builder, "image")),
		  "imgforge-test/none:1");
	imgf_config_free(c);
}

TEST(load_precedence_var_files_in_order_then_vars)
{
	char *files[] = {FIX "override.json", FIX "override2.yaml", NULL};
	char *cli[] = {"greeting=from cli", NULL};
	struct imgf_config_opts o = {.var_files = files, .vars = NULL};
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(FIX "simple.json", &o, &c, &err) == 0);
	CHECK_STR(imgf_config_var(c, "shadowed"), "var-file-2");
	CHECK_STR(imgf_config_var(c, "greeting"), "from var file");
	/* A variable defined low is re-resolved with the winning values of what it uses. */
	CHECK_STR(imgf_config_var(c, "nested"), "from var file on amd64");
	imgf_config_free(c);
	o.vars = cli;
	CHECK(imgf_config_load(FIX "simple.json", &o, &c, &err) == 0);
	CHECK_STR(imgf_config_var(c, "greeting"), "from cli");
	CHECK_STR(imgf_config_var(c, "nested"), "from cli on amd64");
	CHECK_STR(json_string_value(json_object_get(c->var_from, "greeting")), "--var");
	imgf_config_free(c);
	CHECK(err == NULL);
}

TEST(load_yaml_equals_json)
{
	struct imgf_config *a = NULL, *b = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(FIX "simple.json", NULL, &a, &err) == 0);
	CHECK(imgf_config_load(FIX "simple.yaml", NULL, &b, &err) == 0);
	if (a && b) {
		CHECK(json_equal(a->vars, b->vars));
		CHECK(json_equal(a->images[0].provisioners, b->images[0].provisioners));
	}
	imgf_config_free(a);
	imgf_config_free(b);
}

TEST(load_errors_are_precise)
{
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(FIX "cycle.json", NULL, &c, &err) < 0);
	CHECK_ERR(err, "refers to itself");
	imgf_error_clear(&err);
	CHECK(imgf_config_load(FIX "unknown-key.json", NULL, &c, &err) < 0);
	CHECK_ERR(err, "unknown key 'imagez' (known keys: 'include', 'variables', 'images')");
	imgf_error_clear(&err);
	CHECK(imgf_config_load(FIX "undefined-var.json", NULL, &c, &err) < 0);
	CHECK_ERR(err, "undefined-var-image.json: provisioners[1].url: undefined variable "
		       "'no_such_var'");
	imgf_error_clear(&err);
	char *bad[] = {"novalue", NULL};
	struct imgf_config_opts o = {.vars = bad};
	CHECK(imgf_config_load(FIX "simple.json", &o, &c, &err) < 0);
	CHECK_ERR(err, "--var 'novalue': expected NAME=VALUE");
	imgf_error_free(err);
	CHECK(c == NULL);
}

TEST(manifest_roundtrip_sorted_and_atomic)
{
	char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-manifest", &dir, &err) == 0);
	json_t *m = imgf_manifest_new();
	json_array_append_new(json_object_get(m, "builds"),
			      json_pack("{s:s,s:s,s:[{s:s,s:s,s:s}]}", "name", "kind-node",
					"builder_type", "docker", "inputs", "name", "runc", "url",
					"http://x/runc", "sha256", "ab"));
	CHECK(imgf_manifest_write(m, dir, &err) == 0);
	json_t *back = NULL;
	CHECK(imgf_manifest_read(dir, &back, &err) == 0);
	CHECK(json_equal(m, back));
	char *path = path_join(dir, "manifest.json"), *text = NULL;
	CHECK(read_file(path, 0, &text, NULL, &err) == 0);
	/* Keys sorted, indented, newline-terminated: stable bytes for the same content. */
	CHECK(text && strstr(text, "\"builder_type\"") < strstr(text, "\"name\""));
	CHECK(text && text[strlen(text) - 1] == '\n');
	free(text);
	free(path);
	json_decref(m);
	json_decref(back);
	CHECK(rm_rf(dir, &err) == 0);
	free(dir);
}

TEST(manifest_read_rejects_garbage)
{
	char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-manifest", &dir, &err) == 0);
	char *path = path_join(dir, "manifest.json");
	CHECK(write_file_atomic(path, "{\"builds\": 3}", 13, 0644, &err) == 0);
	json_t *m = NULL;
	CHECK(imgf_manifest_read(dir, &m, &err) < 0);
	CHECK_ERR(err, "builds: expected a list");
	imgf_error_free(err);
	free(path);
	rm_rf(dir, NULL);
	free(dir);
}

/* Write `text` to a fresh temp file named `name`; returns its path (caller frees). */
static char *temp_config(const char *name, const char *text)
{
	char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-config", &dir, &err) == 0);
	char *path = path_join(dir, name);
	CHECK(write_file_atomic(path, text, strlen(text), 0644, &err) == 0);
	free(dir);
	return path;
}

TEST(doubling_variables_hit_the_size_cap_with_file_key_and_cap)
{
	/* v1 = v0 twice, v2 = v1 twice, ...: 2^40 bytes if nothing stops it. */
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "{\"variables\": {\"v0\": \"xxxxxxxxxxxxxxxx\"");
	for (int i = 1; i <= 40; i++)
		strbuf_addf(&sb, ", \"v%d\": \"{{v%d}}{{v%d}}\"", i, i - 1, i - 1);
	strbuf_addstr(&sb, "}}");
	char *path = temp_config("double.json", sb.buf);
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(path, NULL, &c, &err) < 0);
	char *want = xasprintf("%s: variables.v17: the interpolated value is longer than 1048576 "
			       "bytes",
			       path);
	CHECK_ERR(err, want);
	free(want);
	imgf_error_free(err);
	imgf_config_free(c);
	_cleanup_free_ char *dir = path_dirname(path);
	rm_rf(dir, NULL);
	free(path);
	strbuf_release(&sb);
}

/* v15 is 512 KiB (16 bytes doubled 15 times); then `n` variables "{{v15}}{{v15}}" of 1 MiB. */
static void big_variables(struct strbuf *sb, int n)
{
	strbuf_addstr(sb, "\"v0\": \"xxxxxxxxxxxxxxxx\"");
	for (int i = 1; i <= 15; i++)
		strbuf_addf(sb, ", \"v%d\": \"{{v%d}}{{v%d}}\"", i, i - 1, i - 1);
	for (int i = 0; i < n; i++)
		strbuf_addf(sb, ", \"w%d\": \"{{v15}}{{v15}}\"", i);
}

TEST(many_variables_of_a_mebibyte_hit_the_total_cap)
{
	/* 3,000 variables of 1 MiB took 3 GB and 19 s before the total was capped (how fast the
	 * cap stops it is a figure for a benchmark, not a timed test) */
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "{\"variables\": {");
	big_variables(&sb, 3000);
	strbuf_addstr(&sb, "}}");
	char *path = temp_config("many.json", sb.buf);
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(path, NULL, &c, &err) < 0);
	CHECK_ERR(err, ": the interpolated config is longer than 67108864 bytes in all (the cap "
		       "for its variables and image definitions together)");
	imgf_error_free(err);
	imgf_config_free(c);
	_cleanup_free_ char *dir = path_dirname(path);
	rm_rf(dir, NULL);
	free(path);
	strbuf_release(&sb);
}

TEST(image_definitions_count_toward_the_total_interpolated_size)
{
	/* few variables, but an image that names a 1 MiB one a hundred times */
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-config", &dir, NULL) == 0);
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "{\"variables\": {");
	big_variables(&sb, 1);
	strbuf_addstr(&sb, "}, \"images\": [\"image.json\"]}");
	_cleanup_free_ char *path = path_join(dir, "config.json");
	CHECK(write_file_atomic(path, sb.buf, sb.len, 0644, NULL) == 0);
	strbuf_reset(&sb);
	strbuf_addstr(&sb, "{\"name\": \"big\", \"builder\": {\"type\": \"docker\"}, "
			   "\"provisioners\": [");
	for (int i = 0; i < 100; i++)
		strbuf_addf(&sb, "%s{\"type\": \"shell\", \"inline\": \"{{w0}}\"}", i ? ", " : "");
	strbuf_addstr(&sb, "]}");
	_cleanup_free_ char *image = path_join(dir, "image.json");
	CHECK(write_file_atomic(image, sb.buf, sb.len, 0644, NULL) == 0);
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(path, NULL, &c, &err) < 0);
	CHECK_ERR(err, "image.json: provisioners[");
	CHECK_ERR(err, "].inline: the interpolated config is longer than 67108864 bytes in all");
	imgf_error_free(err);
	imgf_config_free(c);
	rm_rf(dir, NULL);
	strbuf_release(&sb);
}

TEST(more_than_ten_thousand_variables_is_an_error_naming_the_file)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "{\"variables\": {\"a0\": \"\"");
	for (int i = 1; i <= 10000; i++)
		strbuf_addf(&sb, ", \"a%d\": \"\"", i);
	strbuf_addstr(&sb, "}}");
	char *path = temp_config("count.json", sb.buf);
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(path, NULL, &c, &err) < 0);
	_cleanup_free_ char *want = xasprintf(
		"%s: variables.a10000: more than 10000 variables (the cap for a whole config)",
		path);
	CHECK_ERR(err, want);
	imgf_error_free(err);
	imgf_config_free(c);
	/* 10,000 are fine */
	strbuf_reset(&sb);
	strbuf_addstr(&sb, "{\"variables\": {\"a1\": \"\"");
	for (int i = 2; i <= 10000; i++)
		strbuf_addf(&sb, ", \"a%d\": \"\"", i);
	strbuf_addstr(&sb, "}}");
	CHECK(write_file_atomic(path, sb.buf, sb.len, 0644, NULL) == 0);
	err = NULL;
	c = NULL;
	CHECK(imgf_config_load(path, NULL, &c, &err) == 0);
	imgf_error_free(err);
	imgf_config_free(c);
	_cleanup_free_ char *dir = path_dirname(path);
	rm_rf(dir, NULL);
	free(path);
	strbuf_release(&sb);
}

TEST(invalid_utf8_in_a_var_is_named_not_undefined)
{
	char *path = temp_config("u.json", "{\"variables\": {\"b\": \"{{a}}\"}}");
	struct imgf_config_opts o = {0};
	o.vars = strv_push(NULL, xstrdup("a=\xff\xfe"));
	struct imgf_config *c = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_config_load(path, &o, &c, &err) < 0);
	CHECK_ERR(err, "--var 'a': not valid UTF-8");
	imgf_error_free(err);
	imgf_config_free(c);
	strv_free(o.vars);
	_cleanup_free_ char *dir = path_dirname(path);
	rm_rf(dir, NULL);
	free(path);
}

TEST(config_accessors_read_each_type_and_fall_back_to_the_default)
{
	json_t *o = json_pack("{s:s,s:b,s:s,s:s,s:I,s:s,s:[s,i,s],s:s,s:n}", "str", "x", "yes", 1,
			      "no_s", "false", "yes_s", "true", "n", (json_int_t)2048, "n_s", "512",
			      "list", "a", 3, "b", "one", "only", "null");
	CHECK_STR(imgf_cfg_str(o, "str", "d"), "x");
	CHECK_STR(imgf_cfg_str(o, "absent", "d"), "d");
	CHECK_STR(imgf_cfg_str(o, "n", "d"), "d"); /* not a string */
	CHECK(imgf_cfg_str(o, "absent", NULL) == NULL);
	CHECK(imgf_cfg_str(NULL, "str", NULL) == NULL);

	CHECK(imgf_cfg_bool(o, "yes", false));
	CHECK(imgf_cfg_bool(o, "yes_s", false)); /* a variable's "true" */
	CHECK(!imgf_cfg_bool(o, "no_s", true));
	CHECK(imgf_cfg_bool(o, "absent", true));
	CHECK(!imgf_cfg_bool(o, "absent", false));
	CHECK(imgf_cfg_bool(o, "null", true));

	CHECK(imgf_cfg_int(o, "n", 1) == 2048);
	CHECK(imgf_cfg_int(o, "n_s", 1) == 512);
	CHECK(imgf_cfg_int(o, "absent", 7) == 7);

	char **v = imgf_cfg_strv(o, "list");
	CHECK(strv_len(v) == 2);
	if (strv_len(v) == 2) {
		CHECK_STR(v[0], "a");
		CHECK_STR(v[1], "b");
	}
	strv_free(v);
	v = imgf_cfg_strv(o, "one");
	CHECK(strv_len(v) == 1 && !strcmp(v[0], "only"));
	strv_free(v);
	v = imgf_cfg_strv(o, "absent");
	CHECK(v != NULL && v[0] == NULL);
	strv_free(v);
	json_decref(o);
}

TEST(kubernetes_semver_must_be_a_release_version)
{
	static const char *const good[] = {"v1.37.2", "v1.35.0-rc.1", "v1.36.5+build.7",
					   "v1.31.2", "v2.0.0",	      "1.37.2"};
	static const char *const bad[] = {"1.37",     "v1.37", "v1.37.x",  "latest",
					  "v1.37.2-", "v1..2", "v1.37.2 ", "v1.37.2-rc/1"};
	struct imgf_config c = {.path = "cfg.json"};
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		c.vars = vars("kubernetes_semver", good[i], NULL, NULL);
		struct imgf_error *err = NULL;
		CHECK(imgf_kube_version_check(&c, true, &err) == 0);
		if (err)
			fprintf(stderr, "  %s: %s\n", good[i], err->msg);
		imgf_error_free(err);
		json_decref(c.vars);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		c.vars = vars("kubernetes_semver", bad[i], NULL, NULL);
		struct imgf_error *err = NULL;
		CHECK(imgf_kube_version_check(&c, true, &err) < 0);
		CHECK_ERR(err, "cfg.json: kubernetes_semver");
		CHECK_ERR(err, bad[i]);
		CHECK_ERR(err, "expected vMAJOR.MINOR.PATCH");
		imgf_error_free(err);
		json_decref(c.vars);
	}
}
