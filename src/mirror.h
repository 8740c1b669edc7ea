/*
 * `imgforge mirror`: fetch and verify every input the selected images would use into DIR, and
 * write DIR/vars.json, a --var-file that points each source variable at DIR, so a build needs
 * no network:
 *   DIR/files/HOST/PATH      each download (URL without its scheme), its checksum list beside
 *                            it where the checksum came from a list
 *   DIR/images/REGISTRY/REPOSITORY/TAG.tar   each registry image as an OCI layout tar, as the
 *                            images step would stage it; registry_mirrors points at
 *                            file://DIR/images/REGISTRY, which the images step reads offline,
 *                            verifying every blob by digest
 *   DIR/debs/POOL-PATH       every .deb the selected images install, at its archive path, by
 *                            the lock given (--lock, packages_lock) or resolved now as
 *                            `imgforge lock` does (each image's base made into a target);
 *                            DIR/debs/Packages, Packages.gz and Release (written by imgforge,
 *                            each .deb checked against its sha256 and control) make it a flat
 *                            apt repository: `deb [trusted=yes] file:DIR/debs ./`
 *   DIR/imgforge.lock        the lock of those packages (the images of earlier runs kept);
 *                            vars.json sets packages_lock to it, packages_mirror to
 *                            file://DIR/debs, and docker_network none, qemu_network false:
 *                            the build containers and the appliance get no network
 *   DIR/index.json           what is there (URL or reference -> sha256): a re-run fetches
 *                            nothing whose file is present and still hashes the same
 */
#ifndef IMGF_MIRROR_H
#define IMGF_MIRROR_H

#include <stddef.h>

struct imgf_build;
struct imgf_config;
struct imgf_error;

int imgf_mirror_builds(const struct imgf_config *c, struct imgf_build *builds, size_t n,
		       const char *dir, struct imgf_error **err);

#endif
