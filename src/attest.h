/*
 * What imgforge says about each image it built, beside the image: an SPDX 2.3 JSON SBOM
 * (IMAGE.spdx.json) and a SLSA v1 provenance statement in an in-toto Statement v1
 * (IMAGE.provenance.json). Both are made from what the manifest records: the artifact's
 * digest, every input (downloads, pulled images, local files) and every distro package with
 * the sha256 of its .deb. The sbom and provenance post-processors write them for every image;
 * image-upload sends them beside each artifact it uploads (ARTIFACT_OBJECT.spdx.json, ...).
 */
#ifndef IMGF_ATTEST_H
#define IMGF_ATTEST_H

#include <time.h>

#include <jansson.h>

struct imgf_config;
struct imgf_error;
struct imgf_pp_ctx;

#define IMGF_SBOM_SUFFIX ".spdx.json"
#define IMGF_PROVENANCE_SUFFIX ".provenance.json"
/* No project domain: fixed URNs name imgforge's builder and build type. */
#define IMGF_BUILDER_ID "urn:imgforge:builder:imgforge@" IMGF_VERSION
#define IMGF_BUILD_TYPE "urn:imgforge:build-type:image@v1"

/* One image's build, as both documents describe it. */
struct imgf_attest {
	const char *image;	 /* the image definition's name: "kind-node" */
	const char *output_name; /* BUILD_NAME+kube-VERSION */
	const char *builder;	 /* "docker", "qemu" */
	json_t *subjects;	 /* [{name, sha256}]: the docker image ID, or the artifact files */
	json_t *inputs;		 /* the manifest's inputs[] of the image */
	json_t *versions;	 /* input name -> version, where a step says it */
	const struct imgf_config *config;
	time_t created; /* the SBOM's time: SOURCE_DATE_EPOCH when set, so it is reproducible */
	time_t started, finished; /* the build's real times, for provenance */
};

/* The SPDX 2.3 document (new reference). */
json_t *imgf_attest_spdx(const struct imgf_attest *a);
/* The in-toto Statement v1 with a SLSA v1 provenance predicate (new reference). */
json_t *imgf_attest_provenance(const struct imgf_attest *a);
/* purl of a Debian package: pkg:deb/DISTRO/NAME@VERSION?arch=ARCH[&distro=DISTRO-RELEASE]
 * (newly allocated); distro_release may be NULL. */
char *imgf_purl_deb(const char *distro, const char *name, const char *version, const char *arch,
		    const char *distro_release);

/* Fill `a` for the image of a post-processor's context; imgf_attest_release frees it. */
int imgf_attest_gather(struct imgf_pp_ctx *c, struct imgf_attest *a, struct imgf_error **err);
void imgf_attest_release(struct imgf_attest *a);
/* Write a document as OUT_DIR/NAME, indented, URL credentials redacted; adds NAME to the
 * artifact's files. */
int imgf_attest_write(struct imgf_pp_ctx *c, json_t *doc, const char *name,
		      struct imgf_error **err);

#endif
