/*
 * The package lock (`imgforge lock`) and the local apt repositories imgforge writes.
 *
 * A lock is one JSON document, written with sorted keys and 2-space indents so that the same
 * resolution gives the same bytes:
 *
 *   {"imgforge_lock": 1,
 *    "images": {"IMAGE": {
 *        "archives": [{"release": "deb.debian.org_debian_dists_bookworm_InRelease",
 *                      "sha256": HEX}],     the archive's Release files as apt fetched them
 *        "steps": [{"step": INDEX,          the packages step's index in the image
 *                   "requested": [NAME…],   what the step's config asks for, sorted
 *                   "packages": [{"package", "version", "architecture", "sha256", "size",
 *                                 "filename" (the archive's pool/… path), "url",
 *                                 "archive" ("URL suite/component")}…]}]}}}
 *
 * `packages` is what apt downloaded when it installed `requested` on the image's base: the
 * dependencies resolved, what the base already holds left out; sorted by package and
 * architecture.
 */
#ifndef IMGF_APTLOCK_H
#define IMGF_APTLOCK_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct imgf_error;

#define IMGF_LOCK_VERSION 1

/* Read and check a lock; an error names the file and the key path of what is wrong. */
int imgf_aptlock_load(const char *path, json_t **out, struct imgf_error **err);
/* The same for a document in memory (`what` names it in errors). */
int imgf_aptlock_check(json_t *doc, const char *what, struct imgf_error **err);
/* The lock's entry of an image's step (borrowed), NULL when there is none. */
json_t *imgf_aptlock_step(json_t *doc, const char *image, size_t step);
/* The lock's Release files of an image (borrowed; an empty array when none). */
json_t *imgf_aptlock_archives(json_t *doc, const char *image);
/* Every name of `pkgs` (NAME or NAME=VERSION) is among the step's requested ones, else an
 * error naming the first one that is not, the lock file and the image. */
int imgf_aptlock_covers(json_t *step, char *const *pkgs, const char *lock_path, const char *image,
			struct imgf_error **err);
/* sha256 of an entry's canonical JSON (sorted keys, compact): for the step cache. */
char *imgf_aptlock_digest(json_t *entry);
/* The lock's text: sorted keys, indented, a final newline (newly allocated). */
char *imgf_aptlock_dump(json_t *doc);

/* A .deb's control file (DEBIAN/control) as text, read through libarchive. */
int imgf_deb_control(const char *deb_path, char **out, struct imgf_error **err);
/* A control field's value (first line; NULL when absent), newly allocated. */
char *imgf_control_field(const char *control, const char *field);

/*
 * Write a flat apt repository's index into `dir` (read by `deb [trusted=yes] file:DIR ./`):
 * DIR/Packages, DIR/Packages.gz (with `gz`) and DIR/Release with their sha256. `debs` lists
 * {"package", "version", "architecture", "sha256", "path"}: path is the .deb relative to dir.
 * Each file's control must name the package, version and architecture the entry says and
 * hash to its sha256: an error names the package and the file. Deterministic.
 */
int imgf_aptrepo_write(const char *dir, json_t *debs, bool gz, struct imgf_error **err);

#endif
