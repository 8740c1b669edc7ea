/*
 * Post-processors turn a builder's artifact into the build's outputs. One file per
 * post-processor under post-processors/, each defining one
 * `const struct imgf_post_processor_ops`, listed in src/plugins.c's table.
 *
 *   name, keys, run   MUST be set (keys: every key of its post_processors entry but "type")
 *   validate          MAY be NULL: checks beyond the key table before anything is built, no
 *                     side effects (`imgforge validate` runs it)
 *   when              IMGF_PP_LISTED: runs where an image's post_processors list it;
 *                     IMGF_PP_FIRST / IMGF_PP_LAST: runs for every image, before / after the
 *                     listed ones, whether listed or not (listing it changes nothing)
 *   needs_disk        MAY be set: it converts the artifact's disk. Listing it for a builder
 *                     whose artifacts carry none (no disk_ext, builder.h) fails validate; an
 *                     artifact without a readable disk fails before its run is called
 *   ext               MAY be NULL: the extension of the file it writes (OUTPUT/NAME.EXT, with
 *                     NAME.EXT.sha256), which image-upload sends (imgf_upload_exts)
 */
#ifndef IMGF_POSTPROCESSOR_H
#define IMGF_POSTPROCESSOR_H

#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "keys.h"

struct imgf_artifact;
struct imgf_build;
struct imgf_error;

enum imgf_pp_when {
	IMGF_PP_LISTED,
	IMGF_PP_FIRST,
	IMGF_PP_LAST,
};

/* What a post-processor's run works on: one image's artifact after its builder's commit. */
struct imgf_pp_ctx {
	struct imgf_build *build;
	json_t *cfg;		   /* its post_processors entry; an empty object when unlisted */
	struct imgf_artifact *art; /* a run adds the files it writes to art->files */
	const char *artifact_id;   /* art->id as named once the output is in place */
	time_t start;		   /* when the image's build started */
	json_t *manifest;	   /* the run's manifest: builds[] gets the image's entry */
};

struct imgf_post_processor_ops {
	const char *name;
	const struct imgf_key *keys;
	enum imgf_pp_when when;
	bool needs_disk;
	const char *ext;
	int (*validate)(struct imgf_build *b, json_t *cfg, struct imgf_error **err);
	int (*run)(struct imgf_pp_ctx *c, struct imgf_error **err);
};

/* Make a post-processor known by its name (a second one of the same name is ignored). */
void imgf_post_processor_register(const struct imgf_post_processor_ops *ops);
const struct imgf_post_processor_ops *imgf_post_processor_find(const char *name);
/* "'checksum', 'manifest', 'ova'" for messages (newly allocated). */
char *imgf_post_processor_names(void);

/*
 * The extensions of the files image-upload sends and image-list shows (NULL-terminated, newly
 * allocated): the disks builders make (disk_ext, which the checksum post-processor sums) and
 * what post-processors write (ext), each once, in table order.
 */
char **imgf_upload_exts(void);

/* Check an image's post_processors list: types, keys and each one's validate. */
int imgf_post_processors_validate(struct imgf_build *b, struct imgf_error **err);
/* Run every post-processor of c->build's image in order (c->cfg is set for each); stops at
 * the first that fails. Each names itself in its errors. */
int imgf_post_processors_run(struct imgf_pp_ctx *c, struct imgf_error **err);

#endif
