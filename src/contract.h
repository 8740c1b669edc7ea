/*
 * The contract variables of a build: the names and values every part of a build agrees on
 * (build name, Kubernetes version, arch and platform, SOURCE_DATE_EPOCH, registry mirrors).
 * The engine resolves and checks them once, at the start of `build`/`validate`/`mirror`, and
 * every builder, provisioner and post-processor reads them from this struct (b->contract),
 * so a bad value fails once, before anything is made, with one message.
 */
#ifndef IMGF_CONTRACT_H
#define IMGF_CONTRACT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct imgf_config;
struct imgf_error;

/* SOURCE_DATE_EPOCH, as reproducible-builds.org defines it: decimal seconds since 1970. */
struct imgf_epoch {
	bool set;	  /* SOURCE_DATE_EPOCH is set and not empty */
	int64_t value;	  /* its value; unset: imgforge's commit time (IMGF_SOURCE_DATE) */
	const char *from; /* "SOURCE_DATE_EPOCH" or "imgforge's commit time", for messages */
	char text[24];	  /* as given ("" when unset): part of the step cache's keys */
};

struct imgf_contract {
	const char *build_name;		/* variable build_name */
	const char *kubernetes_version; /* variable kubernetes_semver */
	char *dir_name;			/* BUILD_NAME+kube-KUBERNETES_VERSION (imgf_output_name) */
	const char *arch;		/* variable arch; NULL when unset or empty */
	char *platform;			/* "linux/ARCH", "linux/amd64" when arch is unset */
	const char *registry_mirrors;	/* variable registry_mirrors as given, NULL when unset */
	json_t *mirrors; /* it parsed and checked: {registry: mirror}; NULL when it is not valid
			  * (the step that uses it reports why, naming itself) */
	struct imgf_epoch epoch;
};

/*
 * Resolve and check the contract variables of config `c` into *k (released with
 * imgf_contract_release), and make k->epoch the process's (imgf_epoch_now). An error names
 * the variable, its value, the file that set it and what was expected.
 */
int imgf_contract_resolve(const struct imgf_config *c, struct imgf_contract *k,
			  struct imgf_error **err);
void imgf_contract_release(struct imgf_contract *k);

/*
 * Read SOURCE_DATE_EPOCH from the environment: the one place imgforge does. A malformed
 * value is an error naming it and what was expected.
 */
int imgf_epoch_read(struct imgf_epoch *e, struct imgf_error **err);

/*
 * SOURCE_DATE_EPOCH for code below the build (tar writers, OCI configs), which has no build
 * to read it from: the one imgf_contract_resolve checked, while that contract lives; outside a
 * build (other commands, unit tests) the environment's now. On error *e is the unset value.
 */
int imgf_epoch_now(struct imgf_epoch *e, struct imgf_error **err);

/*
 * registry_mirrors text: a JSON object {"registry": "HOST[:PORT][/PATH]" or "file:///DIR"},
 * checked; a new reference, or NULL with *err set ("registry_mirrors: …").
 */
json_t *imgf_registry_mirrors_parse(const char *text, struct imgf_error **err);

#endif
