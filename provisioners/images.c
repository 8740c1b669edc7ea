/*
 * images: preload container images into containerd (namespace k8s.io by default), labelled
 * pinned so the kubelet never garbage-collects them.
 *   archives           the control-plane image tars (kube-apiserver.tar, ...) from the
 *                      Kubernetes source (kubesrc.h: a release tree, a server tarball or a
 *                      local build). A local build without image tars gets images made here
 *                      from its binaries: the binary at /usr/local/bin/NAME, as upstream's
 *                      images have it, tagged registry.k8s.io/NAME:VERSION; kube-proxy's also
 *                      carries the node's own iptables (legacy and nft), conntrack and the
 *                      libraries they need, behind a wrapper that follows the node's mode.
 *   images             registry references, pulled on the host, every blob verified by digest;
 *                      an entry may hold several (whitespace-separated) or none (a variable
 *                      left empty: take what kubeadm asks for).
 *   kubeadm            (default true with archives) ask the target's kubeadm which images
 *                      `kubeadm config images list` needs for `version`, as kind's node-image
 *                      build does: one not given is pulled (pause, etcd, CoreDNS), one given at
 *                      another tag is an error (kubeadm would pull at cluster create), and
 *                      containerd's empty sandbox_image becomes kubeadm's pause. `imgforge
 *                      mirror` has no target, and runs no kubeadm on the host: it needs pause,
 *                      etcd and CoreDNS named.
 *   additional_images  more of either kind: references, or image tars by path (hashed and
 *                      recorded as local inputs); each must be stored under a tagged name.
 * Inside the target a private containerd runs for the step only. The parts: images-common.c
 * (the keys), images-stage.c (on the host), images-kubeadm.c, behind images-internal.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "build.h"
#include "common.h"
#include "config.h"
#include "error.h"
#include "imageref.h"
#include "images-internal.h"
#include "kubesrc.h"
#include "log.h"
#include "ociimage.h"
#include "provisioner.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

static const struct imgf_key images_keys[] = {
	KUBESRC_KEYS,				   /* where the archives come from */
	{"archives", IMGF_KEY_STRING_LIST, false}, /* names under source, e.g. kube-proxy.tar */
	{"version", IMGF_KEY_STRING, false},	   /* tag of images made from binaries */
	{"images", IMGF_KEY_STRING_LIST, false},   /* registry references */
	{"kubeadm", IMGF_KEY_BOOL, false},	   /* preload what kubeadm asks for */
	/* More images, whitespace-separated: references, or image tars by path (/... or ./...) */
	{"additional_images", IMGF_KEY_HOST_PATH_WORDS, false},
	{"namespace", IMGF_KEY_STRING, false}, /* default k8s.io */
	{"arch", IMGF_KEY_STRING, false},      /* platform to pull, default the 'arch' variable */
	{"pin", IMGF_KEY_BOOL, false},	       /* label io.cri-containerd.pinned (default true) */
	/* A JSON object {"registry.k8s.io": "HOST[:PORT][/PATH]", ...}: pull through a mirror,
	 * store under the canonical name. */
	{"registry_mirrors", IMGF_KEY_STRING, false},
	{NULL, 0, false},
};

static int images_validate(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	_cleanup_strv_ char **refs = images_refs(s);
	_cleanup_strv_ char **more = images_additional(s);
	if (!archives[0] && !refs[0] && !more[0] && !images_asks_kubeadm(s))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "nothing to preload: give 'archives', 'images' or "
				      "'additional_images'");
	for (size_t i = 0; archives[i]; i++)
		if (strchr(archives[i], '/') || !str_is_shell_word(archives[i]) ||
		    !str_has_suffix(archives[i], ".tar"))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "archives: '%s' is not a file name NAME.tar",
					      archives[i]);
	if (archives[0]) {
		if (kubesrc_validate(s, NULL, NULL, err) < 0)
			return -1;
		for (size_t i = 0; archives[i]; i++) {
			if (!images_made_from_binary(s, archives[i]))
				continue;
			_cleanup_free_ char *bin = images_component(archives[i]);
			_cleanup_free_ char *p = kubesrc_local_find(s, bin);
			if (!p)
				return imgf_error_set(
					err, IMGF_EXIT_FAIL,
					"local_dir: '%s' has neither '%s' nor the binary '%s' to "
					"make it from (looked in _output/release-images/%s, "
					"_output/local/bin/linux/%s, _output/bin, "
					"_output/dockerized/bin/linux/%s and the directory itself)",
					imgf_cfg_str(s->cfg, "local_dir", ""), archives[i], bin,
					images_arch(s), images_arch(s), images_arch(s));
			const char *v = imgf_cfg_str(s->cfg, "version", "");
			if (!*v || !str_is_shell_word(v))
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "version: '%s' is not a Kubernetes version "
						      "(needed to tag the image made from '%s')",
						      v, p);
		}
	}
	for (size_t i = 0; refs[i]; i++) {
		struct imgf_image_ref ref;
		if (imgf_image_ref_parse(refs[i], &ref, err) < 0)
			return imgf_error_prefix(err, "images[%zu]", i);
		imgf_image_ref_release(&ref);
	}
	for (size_t i = 0; more[i]; i++) {
		if (images_is_path(more[i])) {
			struct stat st;
			if (stat(more[i], &st) < 0 || !S_ISREG(st.st_mode))
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "additional_images: '%s' is not an image tar "
						      "file",
						      more[i]);
			continue;
		}
		struct imgf_image_ref ref;
		if (imgf_image_ref_parse(more[i], &ref, err) < 0)
			return imgf_error_prefix(err, "additional_images: '%s'", more[i]);
		bool tagged = ref.tag != NULL;
		imgf_image_ref_release(&ref);
		if (!tagged)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "additional_images: '%s' has no tag; give "
					      "NAME:TAG or NAME:TAG@sha256:DIGEST, so the image is "
					      "stored under a name",
					      more[i]);
	}
	const char *kv = imgf_cfg_str(s->cfg, "version", "");
	if (images_asks_kubeadm(s) && (!*kv || !str_is_shell_word(kv)))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "version: '%s' is not a Kubernetes version (kubeadm is asked "
				      "which images that version needs; or set 'kubeadm' false)",
				      kv);
	const char *ns = imgf_cfg_str(s->cfg, "namespace", "k8s.io");
	if (!str_is_shell_word(ns))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "namespace: '%s' is not valid", ns);
	if (!str_is_shell_word(images_arch(s)))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "arch: '%s' is not valid",
				      images_arch(s));
	json_t *m = images_mirrors(s, err);
	if (!m)
		return -1;
	json_decref(m);
	return 0;
}

static int images_inputs(struct imgf_step *s, struct imgf_error **err)
{
	(void)err;
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	if (archives[0])
		kubesrc_inputs(s, (const char *const *)archives);
	return 0;
}

static int images_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	const char *ns = imgf_cfg_str(s->cfg, "namespace", "k8s.io");
	size_t i;
	json_t *e;
	struct strbuf expect = STRBUF_INIT, imports = STRBUF_INIT, held = STRBUF_INIT;
	_cleanup_free_ char *pause = NULL;
	if (images_asks_kubeadm(s) && images_kubeadm(s, t, &expect, &pause, err) < 0) {
		strbuf_release(&expect);
		return -1;
	}
	json_array_foreach(s->staged, i, e)
	{
		if (!json_object_get(e, "tar") && images_make_proxy(s, t, e, err) < 0) {
			strbuf_release(&expect);
			return -1;
		}
	}
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w) {
		strbuf_release(&expect);
		return -1;
	}
	int r = 0;
	json_array_foreach(s->staged, i, e)
	{
		if (r < 0)
			break;
		strbuf_addf(&imports, "c images import --no-unpack --all-platforms %s/%03zu.tar\n",
			    IMAGES_DIR, i);
		/* The names are checked by str_is_shell_word, so they can stand unquoted. */
		const char *digest = json_string_value(json_object_get(e, "digest"));
		if (digest)
			strbuf_addf(
				&held, "held %s %s\n",
				json_string_value(json_array_get(json_object_get(e, "names"), 0)),
				digest);
		_cleanup_free_ char *dest = xasprintf("%s/%03zu.tar", IMAGES_DIR_REL, i);
		r = imgf_tar_add_file(w, json_string_value(json_object_get(e, "tar")), dest, 0600,
				      0, 0, err);
		size_t j;
		json_t *n;
		json_array_foreach(json_object_get(e, "names"), j, n)
			strbuf_addf(&expect, " %s", json_string_value(n));
	}
	if (prov_tar_put(w, path, t, r, err) < 0) {
		strbuf_release(&expect);
		strbuf_release(&imports);
		strbuf_release(&held);
		return -1;
	}

	/* The names are checked by str_is_shell_word, so they can stand unquoted. */
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(
		&sb,
		"d=%s\n"
		"ns=%s\n"
		"arch=%s\n"
		"expect='%s'\n"
		"mkdir -p $d\n"
		"cat > $d/config.toml <<EOF\n"
		"version = 2\n"
		"root = \"/var/lib/containerd\"\n"
		"state = \"$d/state\"\n"
		"disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
		"[grpc]\n"
		"  address = \"$d/containerd.sock\"\n"
		"EOF\n"
		"containerd --config $d/config.toml >$d/log 2>&1 &\n"
		"pid=$!\n"
		"stop() { kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; "
		"rm -rf $d %s; }\n"
		"trap stop EXIT\n"
		"i=0\n"
		"while ! ctr --address $d/containerd.sock version >/dev/null 2>&1; do\n"
		"  i=$((i + 1))\n"
		"  if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then\n"
		"    cat $d/log >&2; echo 'containerd did not start' >&2; exit 1\n"
		"  fi\n"
		"  sleep 0.1\n"
		"done\n"
		"c() { ctr --address $d/containerd.sock --namespace $ns \"$@\"; }\n"
		"%s"
		"# Release tarballs name images NAME-ARCH:TAG; kubeadm wants NAME:TAG.\n"
		"for name in $(c images ls -q); do\n"
		"  case $name in\n"
		"  *-$arch:*) c images tag --force \"$name\" \"$(echo \"$name\" | sed "
		"\"s/-$arch:/:/\")\" >/dev/null ;;\n"
		"  esac\n"
		"done\n"
		"names=$(c images ls -q)\n"
		"for want in $expect; do\n"
		"  echo \"$names\" | grep -qxF \"$want\" || { echo \"image '$want' missing "
		"after import\" >&2; exit 1; }\n"
		"done\n"
		"# What was verified on the host is what containerd holds under its name.\n"
		"held() {\n"
		"  got=$(c images ls | awk -v n=\"$1\" '$1 == n {print $3}')\n"
		"  [ \"$got\" = \"$2\" ] || { echo \"containerd holds '$1' at '${got:-nothing}', "
		"not the verified $2\" >&2; exit 1; }\n"
		"  echo \"containerd holds $1 at $2, as verified\"\n"
		"}\n"
		"%s"
		"# containerd's sandbox image: kubeadm's pause where the config left it empty;\n"
		"# whatever it is, it must be preloaded (a pod sandbox would pull it).\n"
		"f=/etc/containerd/config.toml\n"
		"pause='%s'\n"
		"if [ -f $f ]; then\n"
		"  if [ -n \"$pause\" ] && grep -q '^ *sandbox_image = \"\"' $f; then\n"
		"    sed -i \"s|^\\( *sandbox_image = \\)\\\"\\\"|\\1\\\"$pause\\\"|\" $f\n"
		"    echo \"containerd's sandbox image: $pause (kubeadm's pause)\"\n"
		"  fi\n"
		"  sb=$(sed -n 's/^ *sandbox_image = \"\\(.*\\)\"$/\\1/p' $f)\n"
		"  [ -z \"$sb\" ] || echo \"$names\" | grep -qxF \"$sb\" || { echo \"containerd's "
		"sandbox_image '$sb' is not preloaded\" >&2; exit 1; }\n"
		"fi\n",
		RUN_DIR, ns, images_arch(s), expect.buf + (expect.len ? 1 : 0), IMAGES_DIR,
		imports.buf, held.buf, pause ? pause : "");
	if (imgf_cfg_bool(s->cfg, "pin", true))
		strbuf_addstr(&sb, "for name in $names; do\n"
				   "  c images label \"$name\" io.cri-containerd.pinned=pinned "
				   ">/dev/null\n"
				   "done\n");
	/* The imports write blobs no image refers to (a docker-archive's manifest.json and its
	 * layers' json files), held by ctr's lease until its collector runs, on a schedule of
	 * its own: whether they were still there when containerd stopped depended on the load.
	 * Deleting a lease synchronously collects them now, in every build. */
	strbuf_addstr(&sb, "l=$(c leases create)\n"
			   "c leases delete --sync \"$l\"\n"
			   "c images ls\n");
	r = imgf_target_sh(t, s->label, sb.buf, NULL, err);
	strbuf_release(&sb);
	strbuf_release(&expect);
	strbuf_release(&imports);
	strbuf_release(&held);
	return r;
}

const struct imgf_provisioner_ops imgf_images_provisioner = {
	.name = "images",
	.keys = images_keys,
	.validate = images_validate,
	.inputs = images_inputs,
	.stage = images_stage,
	.run = images_run,
	.pulls = images_pulls,
	.reads_host = kubesrc_reads_host,
};
