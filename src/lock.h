/*
 * `imgforge lock`: resolve the distro packages of the selected images into a lock
 * (aptlock.h). Each image's base is made into a target by its builder, as a build would (a
 * container, an appliance), and every step that installs distro packages resolves them there
 * with apt: what `apt-get install` would download, by version and the sha256 of the
 * archive's signed index, with the digests of the archive's Release files. The target is
 * removed afterwards; nothing is built.
 */
#ifndef IMGF_LOCK_H
#define IMGF_LOCK_H

#include <stddef.h>

#include <jansson.h>

struct imgf_build;
struct imgf_error;

/* Add the images of builds[0..n) to the lock document `doc` ({"imgforge_lock", "images"}). */
int imgf_lock_builds(struct imgf_build *builds, size_t n, json_t *doc, struct imgf_error **err);

#endif
