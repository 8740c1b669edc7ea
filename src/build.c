/* What builders, provisioners and post-processors use of the build they run in (build.h). */
#include <ctype.h>
#include <string.h>
#include <time.h>

#include "build.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "manifest.h"
#include "strbuf.h"
#include "util.h"

const char *imgf_build_var(const struct imgf_build *b, const char *name)
{
	return imgf_config_var(b->config, name);
}

/* Set on a thread whose records wait for the build's own (imgf_build_hold_records). */
static _Thread_local json_t *held_records;

void imgf_build_hold_records(json_t *into)
{
	held_records = into;
}

/* An input entry into the manifest's list and, when `labelled`, the image's labels. */
static void record(struct imgf_build *b, json_t *entry, bool labelled)
{
	if (held_records) {
		json_array_append_new(held_records, json_pack("[o,b]", entry, labelled));
		return;
	}
	if (labelled) {
		_cleanup_free_ char *label = xasprintf(
			"io.imgforge.input.%s", json_string_value(json_object_get(entry, "name")));
		_cleanup_free_ char *value =
			xasprintf("sha256:%s", json_string_value(json_object_get(entry, "sha256")));
		json_object_set_new(b->labels, label, json_string(value));
	}
	if (b->inputs)
		json_array_append_new(b->inputs, entry);
	else
		json_decref(entry);
}

void imgf_build_record_held(struct imgf_build *b, json_t *held)
{
	size_t i;
	json_t *h;
	json_array_foreach(held, i, h)
	{
		record(b, json_incref(json_array_get(h, 0)), json_is_true(json_array_get(h, 1)));
	}
}

void imgf_build_record_input(struct imgf_build *b, const char *name, const char *url,
			     const char *sha256)
{
	record(b, json_pack("{s:s,s:s,s:s}", "name", name, "url", url, "sha256", sha256), true);
}

void imgf_build_record_local_input(struct imgf_build *b, const char *name, const char *path,
				   const char *sha256)
{
	record(b,
	       json_pack("{s:s,s:s,s:s,s:b}", "name", name, "path", path, "sha256", sha256, "local",
			 1),
	       true);
}

void imgf_build_record_package(struct imgf_build *b, json_t *entry)
{
	record(b, entry, false);
}

double imgf_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void imgf_build_phase(const struct imgf_build *b, const char *phase, double seconds)
{
	imgf_event("phase",
		   json_pack("{s:s,s:s,s:f}", "image", b->def->name, "phase", phase, "seconds",
			     seconds),
		   NULL);
	log_debug("%s: %s took %.1fs", b->def->name, phase, seconds);
}

/* The Kubernetes minors upstream supports now (v1.MINOR); README lists the same. */
static const unsigned supported_minors[] = {35, 36, 37};

/* Digits at *p, as a number; false when there are none or too many. */
static bool scan_number(const char **p, unsigned *n)
{
	const char *s = *p;
	unsigned v = 0;
	while (*s >= '0' && *s <= '9' && s - *p < 6)
		v = v * 10 + (unsigned)(*s++ - '0');
	if (s == *p || (*s >= '0' && *s <= '9'))
		return false;
	*p = s;
	*n = v;
	return true;
}

int imgf_kube_version_check(const struct imgf_config *c, bool warn, struct imgf_error **err)
{
	const char *kv = imgf_config_var(c, "kubernetes_semver");
	if (!kv)
		return 0;
	const char *p = kv;
	unsigned major, minor, patch;
	if (*p == 'v')
		p++; /* kubeadm takes 1.37.2 as v1.37.2 */
	bool ok = scan_number(&p, &major) && *p++ == '.' && scan_number(&p, &minor) &&
		  *p++ == '.' && scan_number(&p, &patch);
	/* A pre-release or build suffix, as semver writes it: -rc.1, +build.2 */
	if (ok && (*p == '-' || *p == '+'))
		for (ok = *++p != '\0'; ok && *p; p++)
			ok = isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '+';
	else if (ok)
		ok = !*p;
	if (!ok)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: kubernetes_semver '%s' is not a Kubernetes release "
				      "version: expected vMAJOR.MINOR.PATCH[-PRE][+BUILD], e.g. "
				      "v1.37.2",
				      c->path, kv);
	struct strbuf list = STRBUF_INIT;
	size_t n = sizeof(supported_minors) / sizeof(supported_minors[0]);
	for (size_t i = 0; i < n; i++) {
		if (!warn || (major == 1 && minor == supported_minors[i])) {
			strbuf_release(&list);
			return 0;
		}
		strbuf_addf(&list, "%sv1.%u", i ? ", " : "", supported_minors[i]);
	}
	log_warn("kubernetes_semver '%s': v%u.%u is not a Kubernetes minor upstream supports "
		 "(supported: %s); building it anyway",
		 kv, major, minor, list.buf);
	strbuf_release(&list);
	return 0;
}
