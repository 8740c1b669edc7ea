/*
 * The contract variables, resolved and checked once per build (see contract.h). This is the
 * only file that reads SOURCE_DATE_EPOCH.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "contract.h"
#include "error.h"
#include "imageref.h"
#include "manifest.h"
#include "util.h"

#ifndef IMGF_SOURCE_DATE
#define IMGF_SOURCE_DATE 0 /* the Makefile sets imgforge's commit time */
#endif

/* The epoch of the contract being built with, for imgf_epoch_now; NULL outside a build. */
static const struct imgf_epoch *current_epoch;

static void epoch_unset(struct imgf_epoch *e)
{
	*e = (struct imgf_epoch){.value = (int64_t)IMGF_SOURCE_DATE,
				 .from = "imgforge's commit time"};
}

int imgf_epoch_read(struct imgf_epoch *e, struct imgf_error **err)
{
	epoch_unset(e);
	const char *s = getenv("SOURCE_DATE_EPOCH");
	if (!s || !*s)
		return 0;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || s[0] < '0' || s[0] > '9' || (long long)(time_t)v != v ||
	    strlen(s) >= sizeof(e->text))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "SOURCE_DATE_EPOCH '%s': expected a number of seconds since "
				      "1970-01-01 UTC",
				      s);
	e->set = true;
	e->value = v;
	e->from = "SOURCE_DATE_EPOCH";
	snprintf(e->text, sizeof(e->text), "%s", s);
	return 0;
}

int imgf_epoch_now(struct imgf_epoch *e, struct imgf_error **err)
{
	if (current_epoch) {
		*e = *current_epoch;
		return 0;
	}
	if (imgf_epoch_read(e, err) < 0) {
		epoch_unset(e);
		return -1;
	}
	return 0;
}

json_t *imgf_registry_mirrors_parse(const char *text, struct imgf_error **err)
{
	if (!text || !*text)
		return json_object();
	json_error_t jerr;
	json_t *m = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!m || !json_is_object(m)) {
		json_decref(m);
		imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"registry_mirrors: '%s' is not a JSON object of registry: mirror%s%s", text,
			m ? "" : ": ", m ? "" : jerr.text);
		return NULL;
	}
	const char *reg;
	json_t *v;
	_cleanup_free_ char *why = NULL;
	json_object_foreach(m, reg, v)
	{
		if (!imgf_registry_host_valid(reg, &why))
			break;
		if (!json_is_string(v)) {
			why = xasprintf("'%s': expected a string \"HOST[:PORT][/PATH]\"", reg);
			break;
		}
		const char *mv = json_string_value(v);
		if (str_has_prefix(mv, "file://")) {
			if (mv[7] != '/' || strstr(mv, "/../") || str_has_suffix(mv, "/..")) {
				why = xasprintf(
					"'%s': a file:// mirror needs an absolute path "
					"(an `imgforge mirror` directory's images/REGISTRY)",
					mv);
				break;
			}
			continue;
		}
		if (!imgf_registry_mirror_valid(mv, &why))
			break;
	}
	if (!why)
		return m;
	imgf_error_set(err, IMGF_EXIT_FAIL, "registry_mirrors: %s", why);
	json_decref(m);
	return NULL;
}

/* The file that set variable `name`, for messages. */
static const char *var_from(const struct imgf_config *c, const char *name)
{
	const char *f = json_string_value(json_object_get(c->var_from, name));
	return f ? f : c->path;
}

int imgf_contract_resolve(const struct imgf_config *c, struct imgf_contract *k,
			  struct imgf_error **err)
{
	*k = (struct imgf_contract){0};
	k->build_name = imgf_config_var(c, "build_name");
	k->kubernetes_version = imgf_config_var(c, "kubernetes_semver");
	if (!k->build_name || !k->kubernetes_version)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: variables 'build_name' and 'kubernetes_semver' must be "
				      "defined",
				      c->path);
	k->dir_name = imgf_output_name(k->build_name, k->kubernetes_version);
	if (!k->dir_name)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: build_name '%s' and kubernetes_semver '%s' must be "
				      "non-empty and contain no '/'",
				      c->path, k->build_name, k->kubernetes_version);
	const char *arch = imgf_config_var(c, "arch");
	k->arch = arch && *arch ? arch : NULL;
	for (const char *p = k->arch; p && *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
			imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"%s: variable 'arch': '%s' is not an architecture like amd64 "
				"or arm64 (lowercase letters and digits)",
				var_from(c, "arch"), k->arch);
			goto fail;
		}
	k->platform = xasprintf("linux/%s", k->arch ? k->arch : "amd64");
	/* A bad value is the error of the step that uses it, which names the step as it did
	 * before the contract (an image that pulls nothing does not fail on it). */
	k->registry_mirrors = imgf_config_var(c, "registry_mirrors");
	k->mirrors = imgf_registry_mirrors_parse(k->registry_mirrors, NULL);
	if (imgf_epoch_read(&k->epoch, err) < 0)
		goto fail;
	current_epoch = &k->epoch;
	return 0;
fail:
	imgf_contract_release(k);
	return -1;
}

void imgf_contract_release(struct imgf_contract *k)
{
	if (current_epoch == &k->epoch)
		current_epoch = NULL;
	free(k->dir_name);
	free(k->platform);
	json_decref(k->mirrors);
	*k = (struct imgf_contract){0};
}
