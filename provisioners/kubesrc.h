/*
 * Where a step's Kubernetes files come from (the kubernetes and images provisioners share it):
 *   release  SOURCE/NAME with SOURCE/NAME.sha256 beside it (dl.k8s.io's release tree);
 *   tarball  kubernetes-server-linux-ARCH.tar.gz by URL (checksum beside it or given) or by
 *            path; members kubernetes/server/bin/NAME are taken, nothing else is unpacked;
 *   local    a directory as a Kubernetes build leaves it: binaries in _output/local/bin/linux/
 *            ARCH, _output/bin or _output/dockerized/bin/linux/ARCH (the newest wins), image
 *            tars in _output/release-images/ARCH; or those files in the directory itself.
 * Local files (a local dir, a tarball path without a checksum) have no upstream checksum:
 * they are hashed, logged as such and recorded in the manifest as local inputs.
 */
#ifndef IMGF_PROVISIONERS_KUBESRC_H
#define IMGF_PROVISIONERS_KUBESRC_H

#include <stdbool.h>

#include <jansson.h>

#include "keys.h"

struct imgf_error;
struct imgf_step;

/* The keys of a step that takes Kubernetes files, for its keys table. */
/* clang-format off */
#define KUBESRC_KEYS \
	{"kubernetes_source", IMGF_KEY_STRING, false}, {"source", IMGF_KEY_STRING, false}, \
	{"tarball", IMGF_KEY_HOST_PATH, false}, {"tarball_checksum", IMGF_KEY_STRING, false}, \
	{"local_dir", IMGF_KEY_HOST_PATH, false}
/* clang-format on */

enum kubesrc_type {
	KUBESRC_RELEASE,
	KUBESRC_TARBALL,
	KUBESRC_LOCAL,
};

enum kubesrc_type kubesrc_type_of(const struct imgf_step *s);

/* For the provisioner's reads_host: `tarball` and `local_dir` name host paths the step reads
 * only with the source that takes them. */
bool kubesrc_reads_host(const struct imgf_step *s, const char *key);

/* The step's GOARCH ("arch" key, else the 'arch' variable, else amd64). */
const char *kubesrc_arch(const struct imgf_step *s);

/*
 * Check the source keys; with a local source, that every name in `need` is there (names in
 * `may` may be missing). Messages name the key, the value and what was expected.
 */
int kubesrc_validate(struct imgf_step *s, const char *const *need, const char *const *may,
		     struct imgf_error **err);

/* Declare the downloads the source needs for `names` (release: one each; tarball: one). */
void kubesrc_inputs(struct imgf_step *s, const char *const *names);

/*
 * After the downloads: a JSON object NAME -> host path of a verified (or, for local files,
 * hashed and recorded) file, for every name in `need` and those of `may` the source has.
 * Tarball members are copied to the step's stage directory first; a missing one is an error.
 */
json_t *kubesrc_stage(struct imgf_step *s, const char *const *need, const char *const *may,
		      struct imgf_error **err);

/* With a local source, the newest file `name` of the build (NULL when there is none). */
char *kubesrc_local_find(const struct imgf_step *s, const char *name);

/*
 * For binaries not from an upstream release: check the ELF is for the step's arch and that the
 * Go binary carries `version` (its build information's -X k8s.io/component-base/version.
 * gitVersion, or, for a -trimpath build, the linker's -X stamp in its data; gobuildinfo.h).
 * Nothing is run: a binary without a readable version is refused, saying what was expected.
 * With `want_static`, a dynamically linked binary is refused (it goes into an image alone).
 */
int kubesrc_check_binary(struct imgf_step *s, const char *path, const char *version,
			 bool want_static, struct imgf_error **err);

#endif
