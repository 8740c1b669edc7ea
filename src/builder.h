/*
 * Builders make a target from a base, turn it into an artifact and clean up. One file per
 * builder under builders/, each defining one `const struct imgf_builder_ops`, listed in
 * src/builder.c's table.
 *
 *   name, prepare, commit, cleanup  MUST be set
 *   keys                            MUST list every config key the builder accepts
 *   validate                        MAY be NULL (nothing beyond the key check)
 */
#ifndef IMGF_BUILDER_H
#define IMGF_BUILDER_H

#include <stdbool.h>

#include <jansson.h>

#include "keys.h"

struct imgf_error;
struct imgf_target;
struct imgf_build;

struct imgf_artifact {
	char *id;      /* docker image ID, or the disk file's path */
	char *disk;    /* the disk image in the output dir, for post-processors (NULL: none) */
	char **files;  /* output files relative to the build's output dir (NULL-terminated) */
	json_t *extra; /* builder-specific manifest data (may be NULL) */
};

struct imgf_builder_ops {
	const char *name;
	const struct imgf_key *keys;
	int (*validate)(struct imgf_build *b, struct imgf_error **err);
	/* Make the target from the base (config in b->builder_cfg). */
	int (*prepare)(struct imgf_build *b, struct imgf_target **out, struct imgf_error **err);
	/* Turn the provisioned target into the artifact. */
	int (*commit)(struct imgf_build *b, struct imgf_target *t, struct imgf_artifact *out,
		      struct imgf_error **err);
	/* Always runs once prepare has returned a target. With keep (--on-error=abort after a
	 * failure) the target stays and its whereabouts are logged; otherwise it is removed. */
	void (*cleanup)(struct imgf_build *b, struct imgf_target *t, bool keep);
};

const struct imgf_builder_ops *imgf_builder_find(const char *name);
/* "'docker', 'qemu'" for messages (newly allocated). */
char *imgf_builder_names(void);
void imgf_artifact_release(struct imgf_artifact *a);

#endif
