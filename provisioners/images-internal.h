/*
 * What the parts of the images provisioner share: images.c (its keys, validate, inputs, the
 * run in the target and the ops table), images-common.c (what the step's keys say),
 * images-stage.c (everything made and pulled on the host before the target exists, and
 * kube-proxy's image finished in the target) and images-kubeadm.c (what the target's kubeadm
 * asks for, and the pulls `imgforge mirror` makes). Not for other users.
 */
#ifndef IMGF_PROVISIONERS_IMAGES_INTERNAL_H
#define IMGF_PROVISIONERS_IMAGES_INTERNAL_H

#include <stdbool.h>

#include <jansson.h>

struct imgf_error;
struct imgf_step;
struct imgf_target;
struct strbuf;

#define IMAGES_DIR "/var/tmp/imgforge-images"
#define IMAGES_DIR_REL "var/tmp/imgforge-images" /* the same, as a tar member name */
#define RUN_DIR "/run/imgforge-containerd"
#define PROXY_DIR "/var/tmp/imgforge-kube-proxy" /* kube-proxy's extra root, in the target */

/* ---- the step's keys (images-common.c) ------------------------------------------------- */

/* The step's registry_mirrors as a JSON object (a new reference), checked; NULL on error. */
json_t *images_mirrors(struct imgf_step *s, struct imgf_error **err);
/* The platform's arch the step pulls and makes images for. */
const char *images_arch(const struct imgf_step *s);
/* An additional_images entry that names a file rather than a registry reference. */
bool images_is_path(const char *e);
/* Push the words of p (separated by whitespace or commas) onto v. */
char **images_words(char **v, const char *p);
/* The additional_images entries. */
char **images_additional(const struct imgf_step *s);
/* The `images` references: an entry may hold several, or none (an empty variable). */
char **images_refs(const struct imgf_step *s);
/* Whether the step asks the target's kubeadm for its images (default: with archives). */
bool images_asks_kubeadm(const struct imgf_step *s);
/* "kube-apiserver.tar" -> "kube-apiserver" (newly allocated). */
char *images_component(const char *archive);
/* The name kubeadm looks for: registry.k8s.io/NAME:VERSION (newly allocated). */
char *images_made_name(const struct imgf_step *s, const char *component);
/* With a local source: whether the archive must be made from its binary. */
bool images_made_from_binary(const struct imgf_step *s, const char *archive);
/* The image config of an image made from a binary. */
json_t *images_made_config(const char *component);

/* ---- on the host (images-stage.c) ------------------------------------------------------ */

/* The stage hook: the archives, the references and the image tars into s->staged. */
int images_stage(struct imgf_step *s, struct imgf_error **err);
/* Pull a registry reference on the host, verified blob by blob, through its mirror if any,
 * into s->staged. */
int images_stage_pull(struct imgf_step *s, const char *refstr, json_t *mirrors,
		      struct imgf_error **err);
/* Finish kube-proxy's staged image `e` in the target: its binary layer and the target's
 * iptables layer. */
int images_make_proxy(struct imgf_step *s, struct imgf_target *t, json_t *e,
		      struct imgf_error **err);

/* ---- kubeadm (images-kubeadm.c) -------------------------------------------------------- */

/* Ask the target's kubeadm which images the version needs and pull those not staged yet;
 * every name goes into `expect`, kubeadm's pause into *pause (newly allocated). */
int images_kubeadm(struct imgf_step *s, struct imgf_target *t, struct strbuf *expect, char **pause,
		   struct imgf_error **err);
/* The pulls hook (`imgforge mirror`). */
char **images_pulls(struct imgf_step *s, json_t **mirrors, struct imgf_error **err);

#endif
