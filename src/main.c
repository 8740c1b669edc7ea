/* imgforge: build Kubernetes node images. The subcommand and option tables drive dispatch. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "aptlock.h"
#include "config.h"
#include "engine.h"
#include "error.h"
#include "fetch.h"
#include "http.h"
#include "log.h"
#include "parallel.h"
#include "plugins.h"
#include "redact.h"
#include "regcache.h"
#include "regpush.h"
#include "stepcache.h"
#include "strbuf.h"
#include "upload.h"
#include "util.h"

enum opt_id {
	OPT_ONLY,
	OPT_EXCEPT,
	OPT_VAR,
	OPT_VAR_FILE,
	OPT_ON_ERROR,
	OPT_FORCE,
	OPT_PARALLEL_BUILDS,
	OPT_OUTPUT_DIR,
	OPT_JSON,
	OPT_VERBOSE,
	OPT_KEY_FILE,
	OPT_BUCKET,
	OPT_CI,
	OPT_RELEASE,
	OPT_DRY_RUN,
	OPT_NO_CACHE,
	OPT_CACHE_TO,
	OPT_CACHE_FROM,
	OPT_MAX_SIZE,
	OPT_OLDER_THAN,
	OPT_AUTH_FILE,
	OPT_TLS_VERIFY,
	OPT_CA_FILE,
	OPT_LOCK,
	OPT_HELP,
};

/* Which subcommands take an option: bit per command. */
enum {
	C_BUILD = 1,
	C_VALIDATE = 2,
	C_INSPECT = 4,
	C_UPLOAD = 8,
	C_LIST = 16,
	C_MIRROR = 32,
	C_CACHE = 64,
	C_PUSH_INDEX = 128,
	C_LOCK = 256,
};

struct option_def {
	enum opt_id id;
	const char *name;
	bool takes_value;
	unsigned commands;
	const char *help;
};

static const struct option_def options[] = {
	{OPT_ONLY, "only", true, C_BUILD | C_VALIDATE | C_INSPECT | C_MIRROR | C_LOCK,
	 "A,B      build only these images (repeatable)"},
	{OPT_EXCEPT, "except", true, C_BUILD | C_VALIDATE | C_INSPECT | C_MIRROR | C_LOCK,
	 "A,B    build all images but these (repeatable)"},
	{OPT_VAR, "var", true, C_BUILD | C_VALIDATE | C_INSPECT | C_MIRROR | C_LOCK,
	 "K=V       set a variable (highest precedence; repeatable)"},
	{OPT_VAR_FILE, "var-file", true, C_BUILD | C_VALIDATE | C_INSPECT | C_MIRROR | C_LOCK,
	 "F    read variables from a JSON or YAML file (repeatable, later wins)"},
	{OPT_LOCK, "lock", true, C_BUILD | C_VALIDATE | C_INSPECT | C_MIRROR,
	 "FILE     install the distro packages a lock pins (the same as --var packages_lock=FILE)"},
	{OPT_ON_ERROR, "on-error", true, C_BUILD,
	 "cleanup|abort  on failure remove the build target (default) or keep it"},
	{OPT_FORCE, "force", false, C_BUILD, "          replace an existing output directory"},
	{OPT_PARALLEL_BUILDS, "parallel-builds", true, C_BUILD,
	 "N build N images at once (default: all the selected ones)"},
	{OPT_NO_CACHE, "no-cache", false, C_BUILD,
	 "       run every step; reuse nothing from the step cache (it is refreshed)"},
	{OPT_CACHE_TO, "cache-to", true, C_BUILD,
	 "R     export each step's state to the registry repository R (REGISTRY/REPO) as\n"
	 "                    it is made, tagged step-KEY"},
	{OPT_CACHE_FROM, "cache-from", true, C_BUILD,
	 "R   start from the deepest step R (REGISTRY/REPO) holds, verified by digest, when\n"
	 "                    the local step cache has none as deep"},
	{OPT_MAX_SIZE, "max-size", true, C_CACHE,
	 "N    prune: keep at most N bytes (K, M, G, T), least recently used go first"},
	{OPT_OLDER_THAN, "older-than", true, C_CACHE,
	 "D  prune: remove entries unused for D (seconds, or 30m, 12h, 7d, 2w)"},
	{OPT_OUTPUT_DIR, "output-dir", true, C_BUILD,
	 "DIR where build directories go (default: output)"},
	{OPT_KEY_FILE, "key-file", true, C_UPLOAD | C_LIST,
	 "F    service-account key (default: $GOOGLE_APPLICATION_CREDENTIALS)"},
	{OPT_BUCKET, "bucket", true, C_UPLOAD,
	 "B      bucket (default: the build's upload_bucket)"},
	{OPT_CI, "ci", false, C_UPLOAD, "             upload under ci/ whatever the version"},
	{OPT_RELEASE, "release", false, C_UPLOAD,
	 "        upload under release/ whatever the version"},
	{OPT_DRY_RUN, "dry-run", false, C_UPLOAD,
	 "        say what would be uploaded, upload nothing"},
	{OPT_AUTH_FILE, "auth-file", true, C_BUILD | C_PUSH_INDEX,
	 "F   registry credentials: a docker config.json (default: $DOCKER_CONFIG/config.json or\n"
	 "                    ~/.docker/config.json when present); for build, --cache-to's and\n"
	 "                    --cache-from's"},
	{OPT_TLS_VERIFY, "tls-verify", true, C_BUILD | C_PUSH_INDEX,
	 "B  true (default) or false: verify the registry's TLS certificate"},
	{OPT_CA_FILE, "ca-file", true, C_BUILD | C_PUSH_INDEX,
	 "F     CA certificates to verify the registry with"},
	/* not for lock: its stdout is the lock */
	{OPT_JSON, "json", false,
	 C_BUILD | C_VALIDATE | C_INSPECT | C_UPLOAD | C_LIST | C_MIRROR | C_CACHE | C_PUSH_INDEX,
	 "           machine-readable output: one JSON event per line"},
	{OPT_VERBOSE, "verbose", false,
	 C_BUILD | C_VALIDATE | C_INSPECT | C_UPLOAD | C_LIST | C_MIRROR | C_CACHE | C_PUSH_INDEX |
		 C_LOCK,
	 "        more log output"},
	{OPT_HELP, "help", false,
	 C_BUILD | C_VALIDATE | C_INSPECT | C_UPLOAD | C_LIST | C_MIRROR | C_CACHE | C_PUSH_INDEX |
		 C_LOCK,
	 "           this help"},
};

struct cli {
	struct imgf_build_opts build;
	struct imgf_upload_opts upload;
	struct imgf_config_opts cfg;
	bool json;
	int verbose;
	char **configs;
	uint64_t max_size;  /* cache prune --max-size, UINT64_MAX: none */
	int64_t older_than; /* cache prune --older-than in seconds, -1: none */
	struct imgf_push_opts push;
};

static void cli_release(struct cli *c)
{
	strv_free(c->build.only);
	strv_free(c->build.except);
	strv_free(c->cfg.vars);
	strv_free(c->cfg.var_files);
	strv_free(c->configs);
	free((char *)c->build.output_dir);
	free((char *)c->build.cache_to);
	free((char *)c->build.cache_from);
	free((char *)c->upload.key_file);
	free((char *)c->upload.bucket);
	free((char *)c->push.auth_file);
	free((char *)c->push.ca_file);
}

struct command {
	const char *name;
	int (*fn)(struct cli *c, unsigned cmd_bit);
	unsigned bit;
	const char *usage;
	const char *summary;
};

static int cmd_build(struct cli *c, unsigned bit);
static int cmd_validate(struct cli *c, unsigned bit);
static int cmd_inspect(struct cli *c, unsigned bit);
static int cmd_version(struct cli *c, unsigned bit);
static int cmd_image_upload(struct cli *c, unsigned bit);
static int cmd_image_list(struct cli *c, unsigned bit);
static int cmd_mirror(struct cli *c, unsigned bit);
static int cmd_cache(struct cli *c, unsigned bit);
static int cmd_push_index(struct cli *c, unsigned bit);
static int cmd_lock(struct cli *c, unsigned bit);

static const struct command commands[] = {
	{"build", cmd_build, C_BUILD,
	 "imgforge build [--only A,B] [--except C] [--var k=v]... [--var-file F]...\n"
	 "               [--on-error=cleanup|abort] [--force] [--parallel-builds N] [--no-cache]\n"
	 "               [--cache-to REGISTRY/REPO] [--cache-from REGISTRY/REPO]\n"
	 "               [--auth-file F] [--tls-verify=false] [--ca-file F]\n"
	 "               [--output-dir DIR] [--lock FILE] [--json] CONFIG...",
	 "build the images a config defines"},
	{"validate", cmd_validate, C_VALIDATE,
	 "imgforge validate [--only A,B] [--except C] [--var k=v]... [--var-file F]... CONFIG...",
	 "check configs: everything but building"},
	{"inspect", cmd_inspect, C_INSPECT,
	 "imgforge inspect [--only A,B] [--except C] [--var k=v]... [--var-file F]... [--json] "
	 "CONFIG...",
	 "show resolved variables, images, builders and steps"},
	{"image-upload", cmd_image_upload, C_UPLOAD,
	 "imgforge image-upload [--key-file F] [--bucket B] [--ci|--release] [--dry-run] "
	 "BUILD_DIR...",
	 "upload build outputs with sha256 sidecars, skipping what the bucket has"},
	{"image-list", cmd_image_list, C_LIST,
	 "imgforge image-list [--key-file F] gs://BUCKET/PREFIX",
	 "list uploaded images with size, sha256 and URL"},
	{"mirror", cmd_mirror, C_MIRROR,
	 "imgforge mirror [--only A,B] [--except C] [--var k=v]... [--var-file F]... [--lock FILE] "
	 "CONFIG... DIR",
	 "fetch and verify every input into DIR and write DIR/vars.json for offline builds"},
	{"lock", cmd_lock, C_LOCK,
	 "imgforge lock [--only A,B] [--except C] [--var k=v]... [--var-file F]... CONFIG... "
	 "> imgforge.lock",
	 "resolve the distro packages of each image on its base and print the lock"},
	{"cache", cmd_cache, C_CACHE,
	 "imgforge cache ls [--json]\n"
	 "       imgforge cache prune [--max-size N] [--older-than D]",
	 "list or prune the step cache (IMGFORGE_CACHE_DIR/steps)"},
	{"push-index", cmd_push_index, C_PUSH_INDEX,
	 "imgforge push-index [--auth-file F] [--tls-verify=false] [--ca-file F] REF IMAGE_REF...",
	 "push an OCI image index joining images already pushed (one per platform) as REF"},
	{"version", cmd_version, 0, "imgforge version", "print the version"},
};

static void usage_all(FILE *f)
{
	fprintf(f, "usage: imgforge COMMAND [OPTIONS] CONFIG...\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'imgforge COMMAND --help' for a command's options.\n");
}

static void usage_cmd(FILE *f, const struct command *cmd)
{
	fprintf(f, "usage: %s\n\n%s\n", cmd->usage, cmd->summary);
	if (!cmd->bit)
		return;
	fprintf(f, "\noptions (also with a single dash, as Packer spells them):\n");
	for (size_t i = 0; i < ARRAY_SIZE(options); i++)
		if (options[i].commands & cmd->bit)
			fprintf(f, "  --%s %s\n", options[i].name, options[i].help);
}

static char **push_split(char **v, const char *list)
{
	_cleanup_free_ char *copy = xstrdup(list);
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (*tok)
			v = strv_push(v, xstrdup(tok));
	return v;
}

static int apply_option(struct cli *c, const struct option_def *o, const char *val,
			struct imgf_error **err)
{
	switch (o->id) {
	case OPT_ONLY:
		c->build.only =
			push_split(c->build.only ? c->build.only : xcalloc(1, sizeof(char *)), val);
		break;
	case OPT_EXCEPT:
		c->build.except = push_split(
			c->build.except ? c->build.except : xcalloc(1, sizeof(char *)), val);
		break;
	case OPT_VAR:
		if (!strchr(val, '=') || val[0] == '=')
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "--var '%s': expected NAME=VALUE", val);
		c->cfg.vars = strv_push(c->cfg.vars, xstrdup(val));
		break;
	case OPT_LOCK:
		c->cfg.vars = strv_push(c->cfg.vars, xasprintf("packages_lock=%s", val));
		break;
	case OPT_VAR_FILE:
		c->cfg.var_files = strv_push(c->cfg.var_files, xstrdup(val));
		break;
	case OPT_ON_ERROR:
		if (!strcmp(val, "cleanup"))
			c->build.on_error = IMGF_ON_ERROR_CLEANUP;
		else if (!strcmp(val, "abort"))
			c->build.on_error = IMGF_ON_ERROR_ABORT;
		else
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "--on-error '%s': expected 'cleanup' or 'abort'",
					      val);
		break;
	case OPT_FORCE:
		c->build.force = true;
		break;
	case OPT_PARALLEL_BUILDS:
		return imgf_parallel_parse(val, &c->build.parallel_builds, err);
	case OPT_OUTPUT_DIR:
		free((char *)c->build.output_dir);
		c->build.output_dir = xstrdup(val);
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_VERBOSE:
		c->verbose++;
		break;
	case OPT_KEY_FILE:
		free((char *)c->upload.key_file);
		c->upload.key_file = xstrdup(val);
		break;
	case OPT_BUCKET:
		free((char *)c->upload.bucket);
		c->upload.bucket = xstrdup(val);
		break;
	case OPT_CI:
	case OPT_RELEASE: {
		enum imgf_upload_channel ch =
			o->id == OPT_CI ? IMGF_CHANNEL_CI : IMGF_CHANNEL_RELEASE;
		if (c->upload.channel != IMGF_CHANNEL_AUTO && c->upload.channel != ch)
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "--ci and --release exclude each other");
		c->upload.channel = ch;
		break;
	}
	case OPT_DRY_RUN:
		c->upload.dry_run = true;
		break;
	case OPT_NO_CACHE:
		c->build.no_cache = true;
		break;
	case OPT_CACHE_TO:
	case OPT_CACHE_FROM: {
		const char **dst =
			o->id == OPT_CACHE_TO ? &c->build.cache_to : &c->build.cache_from;
		if (imgf_regcache_repo_check(val, err) < 0)
			return imgf_error_prefix(err, "--%s", o->name);
		free((char *)*dst);
		*dst = xstrdup(val);
		break;
	}
	case OPT_MAX_SIZE:
		if (imgf_size_parse(val, &c->max_size) < 0)
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "--max-size '%s': expected a size like 10G (bytes, "
					      "or K, M, G, T)",
					      val);
		break;
	case OPT_OLDER_THAN:
		if (imgf_duration_parse(val, &c->older_than) < 0)
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "--older-than '%s': expected a duration like 7d "
					      "(seconds, or s, m, h, d, w)",
					      val);
		break;
	case OPT_AUTH_FILE:
		free((char *)c->push.auth_file);
		c->push.auth_file = xstrdup(val);
		break;
	case OPT_CA_FILE:
		free((char *)c->push.ca_file);
		c->push.ca_file = xstrdup(val);
		break;
	case OPT_TLS_VERIFY:
		if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0)
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "--tls-verify '%s': expected 'true' or 'false'", val);
		c->push.tls_no_verify = !strcmp(val, "false");
		break;
	case OPT_HELP:
		break;
	}
	return 0;
}

/* Parse argv after the subcommand; returns 1 when --help was given. */
static int parse_args(struct cli *c, const struct command *cmd, int argc, char **argv,
		      struct imgf_error **err)
{
	bool only_args = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (only_args || a[0] != '-' || !a[1]) {
			c->configs = strv_push(c->configs, xstrdup(a));
			continue;
		}
		if (!strcmp(a, "--")) {
			only_args = true;
			continue;
		}
		if (!strcmp(a, "-h"))
			return 1;
		if (!strcmp(a, "-v")) {
			c->verbose++;
			continue;
		}
		const char *name = a + (a[1] == '-' ? 2 : 1);
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const struct option_def *o = NULL;
		for (size_t k = 0; k < ARRAY_SIZE(options) && !o; k++)
			if (strlen(options[k].name) == nlen &&
			    !strncmp(options[k].name, name, nlen) &&
			    ((options[k].commands & cmd->bit) || options[k].id == OPT_HELP))
				o = &options[k];
		if (!o)
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "%s: unknown option '%s' (see 'imgforge %s --help')",
					      cmd->name, a, cmd->name);
		if (o->id == OPT_HELP)
			return 1;
		const char *val = NULL;
		if (o->takes_value) {
			if (eq)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else
				return imgf_error_set(err, IMGF_EXIT_USAGE,
						      "%s: option '--%s' needs a value", cmd->name,
						      o->name);
		} else if (eq) {
			return imgf_error_set(err, IMGF_EXIT_USAGE,
					      "%s: option '--%s' takes no value", cmd->name,
					      o->name);
		}
		if (apply_option(c, o, val, err) < 0)
			return -1;
	}
	return 0;
}

static int report(struct imgf_error *e)
{
	int status = e->status ? e->status : IMGF_EXIT_FAIL;
	if (imgf_log_json())
		imgf_event("error", json_pack("{s:s,s:i}", "message", e->msg, "status", status),
			   NULL);
	_cleanup_free_ char *msg = imgf_redact(e->msg);
	fprintf(stderr, "imgforge: error: %s\n", msg);
	imgf_error_free(e);
	return status;
}

static int need_configs(struct cli *c, const char *cmd)
{
	if (strv_len(c->configs) == 0) {
		fprintf(stderr, "imgforge %s: no CONFIG given (see 'imgforge %s --help')\n", cmd,
			cmd);
		return IMGF_EXIT_USAGE;
	}
	return 0;
}

static int run_configs(struct cli *c, bool validate_only)
{
	c->build.validate_only = validate_only;
	for (size_t i = 0; c->configs[i]; i++) {
		struct imgf_error *e = NULL;
		struct imgf_config *cfg = NULL;
		if (imgf_config_load(c->configs[i], &c->cfg, &cfg, &e) < 0 ||
		    imgf_engine_run(cfg, &c->build, &e) < 0) {
			imgf_config_free(cfg);
			if (imgf_interrupted && e)
				e->status = IMGF_EXIT_INTERRUPTED;
			return report(e);
		}
		imgf_config_free(cfg);
		if (validate_only) {
			imgf_event("valid", json_pack("{s:s}", "config", c->configs[i]), NULL);
			if (!imgf_log_json())
				printf("%s: the configuration is valid\n", c->configs[i]);
		}
	}
	return 0;
}

static int cmd_build(struct cli *c, unsigned bit)
{
	(void)bit;
	int r = need_configs(c, "build");
	c->build.registry = &c->push; /* --auth-file, --tls-verify, --ca-file */
	return r ? r : run_configs(c, false);
}

static int cmd_validate(struct cli *c, unsigned bit)
{
	(void)bit;
	int r = need_configs(c, "validate");
	return r ? r : run_configs(c, true);
}

static int cmd_mirror(struct cli *c, unsigned bit)
{
	(void)bit;
	size_t n = strv_len(c->configs);
	if (n < 2) {
		fprintf(stderr, "imgforge mirror: give CONFIG... and the mirror DIR (see 'imgforge "
				"mirror --help')\n");
		return IMGF_EXIT_USAGE;
	}
	/* The last argument is the directory, the rest are configs. */
	char *dir = c->configs[n - 1];
	c->configs[n - 1] = NULL;
	c->build.mirror_dir = dir;
	int r = run_configs(c, false);
	c->configs[n - 1] = dir;
	c->build.mirror_dir = NULL;
	return r;
}

static int cmd_lock(struct cli *c, unsigned bit)
{
	(void)bit;
	int r = need_configs(c, "lock");
	if (r)
		return r;
	/* resolved afresh: a lock the variables name is not read */
	c->cfg.vars = strv_push(c->cfg.vars, xstrdup("packages_lock="));
	json_t *doc = json_pack("{s:i,s:{}}", "imgforge_lock", IMGF_LOCK_VERSION, "images");
	c->build.lock_doc = doc;
	r = run_configs(c, false);
	c->build.lock_doc = NULL;
	if (r == 0) {
		_cleanup_free_ char *text = imgf_aptlock_dump(doc);
		fputs(text, stdout);
		struct imgf_error *e = NULL;
		if (fflush(stdout) != 0) {
			imgf_error_errno(&e, errno, "write the lock to stdout");
			r = report(e);
		}
	}
	json_decref(doc);
	return r;
}

static void print_inspect(json_t *doc)
{
	printf("config: %s\n\nvariables:\n", json_string_value(json_object_get(doc, "config")));
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(doc, "variables"), k, v)
	{
		_cleanup_free_ char *value =
			imgf_redact(json_string_value(json_object_get(v, "value")));
		printf("  %-32s = %s  (%s)\n", k, value,
		       json_string_value(json_object_get(v, "from")));
	}
	printf("\nimages:\n");
	size_t i;
	json_array_foreach(json_object_get(doc, "images"), i, v)
	{
		json_t *b = json_object_get(v, "builder");
		printf("  %s (%s)\n    builder: %s\n",
		       json_string_value(json_object_get(v, "name")),
		       json_string_value(json_object_get(v, "file")),
		       json_string_value(json_object_get(b, "type")));
		size_t j;
		json_t *p;
		json_array_foreach(json_object_get(v, "provisioners"), j, p)
		{
			json_t *n = json_object_get(p, "name");
			printf("    step %zu: %s%s%s\n", j + 1,
			       json_string_value(json_object_get(p, "type")), n ? " " : "",
			       n ? json_string_value(n) : "");
		}
		json_array_foreach(json_object_get(v, "post_processors"), j, p) printf(
			"    post-processor: %s\n", json_string_value(json_object_get(p, "type")));
	}
}

static int cmd_inspect(struct cli *c, unsigned bit)
{
	(void)bit;
	int r = need_configs(c, "inspect");
	if (r)
		return r;
	for (size_t i = 0; c->configs[i]; i++) {
		struct imgf_error *e = NULL;
		struct imgf_config *cfg = NULL;
		c->build.validate_only = true;
		c->build.inspect = true;
		if (imgf_config_load(c->configs[i], &c->cfg, &cfg, &e) < 0 ||
		    imgf_engine_run(cfg, &c->build, &e) < 0) {
			imgf_config_free(cfg);
			return report(e);
		}
		json_t *doc = imgf_engine_inspect(cfg, &c->build);
		if (c->json) {
			_cleanup_free_ char *raw = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
			_cleanup_free_ char *s = imgf_redact(raw);
			printf("%s\n", s);
		} else {
			print_inspect(doc);
		}
		json_decref(doc);
		imgf_config_free(cfg);
	}
	return 0;
}

static int cmd_image_upload(struct cli *c, unsigned bit)
{
	(void)bit;
	if (strv_len(c->configs) == 0) {
		fprintf(stderr, "imgforge image-upload: no BUILD_DIR given (see 'imgforge "
				"image-upload --help')\n");
		return IMGF_EXIT_USAGE;
	}
	c->upload.json = c->json;
	struct imgf_error *e = NULL;
	if (imgf_upload_run(&c->upload, c->configs, &e) < 0)
		return report(e);
	return 0;
}

static int cmd_image_list(struct cli *c, unsigned bit)
{
	(void)bit;
	if (strv_len(c->configs) != 1) {
		fprintf(stderr, "imgforge image-list: give one gs://BUCKET/PREFIX (see 'imgforge "
				"image-list --help')\n");
		return IMGF_EXIT_USAGE;
	}
	c->upload.json = c->json;
	struct imgf_error *e = NULL;
	if (imgf_image_list(&c->upload, c->configs[0], &e) < 0)
		return report(e);
	return 0;
}

static int cmd_push_index(struct cli *c, unsigned bit)
{
	(void)bit;
	if (strv_len(c->configs) < 2) {
		fprintf(stderr, "imgforge push-index: give REF and at least one IMAGE_REF (see "
				"'imgforge push-index --help')\n");
		return IMGF_EXIT_USAGE;
	}
	struct imgf_error *e = NULL;
	char digest[72];
	if (imgf_registry_push_index(c->configs[0], (const char *const *)c->configs + 1, &c->push,
				     digest, &e) < 0)
		return report(e);
	_cleanup_free_ char *human = xasprintf("%s@%s", c->configs[0], digest);
	imgf_event("pushed", json_pack("{s:s,s:s}", "ref", c->configs[0], "digest", digest), NULL);
	if (!imgf_log_json())
		printf("%s\n", human);
	return 0;
}

static int cmd_cache(struct cli *c, unsigned bit)
{
	(void)bit;
	const char *sub = c->configs && c->configs[0] ? c->configs[0] : "";
	bool ls = !strcmp(sub, "ls"), prune = !strcmp(sub, "prune");
	if ((!ls && !prune) || strv_len(c->configs) != 1) {
		fprintf(stderr, "imgforge cache: expected 'ls' or 'prune' (see 'imgforge cache "
				"--help')\n");
		return IMGF_EXIT_USAGE;
	}
	if (ls && (c->max_size != UINT64_MAX || c->older_than >= 0)) {
		fprintf(stderr, "imgforge cache ls: --max-size and --older-than are for 'prune'\n");
		return IMGF_EXIT_USAGE;
	}
	_cleanup_free_ char *dir = imgf_cache_dir_default();
	struct imgf_error *e = NULL;
	int r = ls ? imgf_stepcache_ls(dir, c->json, &e)
		   : imgf_stepcache_prune(dir, c->max_size, c->older_than, &e);
	return r < 0 ? report(e) : 0;
}

static int cmd_version(struct cli *c, unsigned bit)
{
	(void)c;
	(void)bit;
	curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
	printf("imgforge %s (libcurl %s, jansson %s)\n", IMGF_VERSION, cv->version,
	       jansson_version_str());
	return 0;
}

int main(int argc, char **argv)
{
	imgf_plugins_register();
	if (argc < 2) {
		usage_all(stderr);
		return IMGF_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
		usage_all(stdout);
		return 0;
	}
	if (!strcmp(name, "--version") || !strcmp(name, "-version"))
		name = "version";
	const struct command *cmd = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(commands) && !cmd; i++)
		if (!strcmp(commands[i].name, name))
			cmd = &commands[i];
	if (!cmd) {
		fprintf(stderr, "imgforge: unknown command '%s'\n\n", name);
		usage_all(stderr);
		return IMGF_EXIT_USAGE;
	}

	struct cli c = {.max_size = UINT64_MAX, .older_than = -1};
	struct imgf_error *e = NULL;
	int pr = parse_args(&c, cmd, argc - 2, argv + 2, &e);
	int rc;
	if (pr < 0) {
		rc = report(e);
		rc = rc == IMGF_EXIT_FAIL ? IMGF_EXIT_USAGE : rc;
	} else if (pr == 1) {
		usage_cmd(stdout, cmd);
		rc = 0;
	} else {
		imgf_http_init(NULL); /* once; a failure is reported where HTTP is used */
		imgf_log_init(c.json, c.verbose);
		imgf_install_signal_handlers();
		rc = cmd->fn(&c, cmd->bit);
		curl_global_cleanup();
	}
	cli_release(&c);
	return rc;
}
