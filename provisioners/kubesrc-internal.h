/*
 * The Kubernetes sources behind kubesrc.h: one table each (kubesrc-release.c,
 * kubesrc-tarball.c, kubesrc-local.c), listed in kubesrc.c, picked by `kubernetes_source`.
 *   name, type, validate, inputs, stage  MUST be set
 *   host_key                             MAY be NULL: the key naming a host path the source
 *                                        reads (for the step cache), when it is this source
 * A new source is a file with its table, a line in kubesrc.c's list and, if it takes keys
 * of its own, their entry in KUBESRC_KEYS.
 */
#ifndef IMGF_PROVISIONERS_KUBESRC_INTERNAL_H
#define IMGF_PROVISIONERS_KUBESRC_INTERNAL_H

#include <stdbool.h>

#include <jansson.h>

#include "kubesrc.h"

struct imgf_error;
struct imgf_step;

struct kubesrc_ops {
	const char *name;
	enum kubesrc_type type;
	const char *host_key;
	/* The source's own keys; with `need`, what must be there before anything is fetched. */
	int (*validate)(struct imgf_step *s, const char *const *need, struct imgf_error **err);
	/* Declare the downloads for `names` (imgf_step_add_input). */
	void (*inputs)(struct imgf_step *s, const char *const *names);
	/* After the downloads: out[NAME] = a host path for each of `need` and those of `may`
	 * the source has (kubesrc_stage). */
	int (*stage)(struct imgf_step *s, const char *const *need, const char *const *may,
		     json_t *out, struct imgf_error **err);
};

extern const struct kubesrc_ops kubesrc_release, kubesrc_tarball, kubesrc_local;

/* Shared by the sources (kubesrc-common.c). */
bool kubesrc_is_url(const char *s);
/* An absolute form of a local path (a relative one is taken from the working directory). */
char *kubesrc_abs_path(const char *p);
/* Hash a local file, say that it has no upstream checksum, record it for the manifest. */
int kubesrc_record_local(struct imgf_step *s, const char *name, const char *path,
			 struct imgf_error **err);

#endif
