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
 * Inside the target a private containerd runs for the step only.
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
#include "contract.h"
#include "error.h"
#include "fsutil.h"
#include "kubesrc.h"
#include "log.h"
#include "ociimage.h"
#include "provisioner.h"
#include "registry.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

#define IMAGES_DIR "/var/tmp/imgforge-images"
#define IMAGES_DIR_REL "var/tmp/imgforge-images" /* the same, as a tar member name */
#define RUN_DIR "/run/imgforge-containerd"

#define PROXY_DIR "/var/tmp/imgforge-kube-proxy" /* kube-proxy's extra root, in the target */

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

/*
 * The step's registry_mirrors as a JSON object (a new reference), checked; NULL on error. The
 * shipped images set it to the variable, which the contract has parsed and checked already
 * when it is valid.
 */
static json_t *mirrors_of(struct imgf_step *s, struct imgf_error **err)
{
	const char *text = imgf_cfg_str(s->cfg, "registry_mirrors", NULL);
	const struct imgf_contract *k = s->build->contract;
	if (text && k->mirrors && !strcmp(text, k->registry_mirrors))
		return json_incref(k->mirrors);
	return imgf_registry_mirrors_parse(text, err);
}

static const char *arch_of(const struct imgf_step *s)
{
	return kubesrc_arch(s);
}

/* An additional_images entry that names a file rather than a registry reference. */
static bool is_path(const char *e)
{
	return imgf_word_is_path(e);
}

/* Push the words of p (separated by whitespace or commas) onto v. */
static char **push_words(char **v, const char *p)
{
	while (*p) {
		p += strspn(p, " \t\n,");
		size_t n = strcspn(p, " \t\n,");
		if (n)
			v = strv_push(v, xstrndup(p, n));
		p += n;
	}
	return v;
}

/* The additional_images entries (whitespace-separated). */
static char **additional(const struct imgf_step *s)
{
	return push_words(xcalloc(1, sizeof(char *)),
			  imgf_cfg_str(s->cfg, "additional_images", ""));
}

/* The `images` references: an entry may hold several, or none (an empty variable). */
static char **image_refs(const struct imgf_step *s)
{
	_cleanup_strv_ char **raw = imgf_cfg_strv(s->cfg, "images");
	char **v = xcalloc(1, sizeof(*v));
	for (size_t i = 0; raw[i]; i++)
		v = push_words(v, raw[i]);
	return v;
}

/* Whether the step asks the target's kubeadm for its images (default: with archives). */
static bool asks_kubeadm(const struct imgf_step *s)
{
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	return imgf_cfg_bool(s->cfg, "kubeadm", archives[0] != NULL);
}

/* "kube-apiserver.tar" -> "kube-apiserver" (newly allocated). */
static char *component_of(const char *archive)
{
	size_t n = strlen(archive);
	return xstrndup(archive, str_has_suffix(archive, ".tar") ? n - 4 : n);
}

/* The name kubeadm looks for: registry.k8s.io/NAME:VERSION ('+' becomes '_', as in kubeadm). */
static char *made_image_name(const struct imgf_step *s, const char *component)
{
	char *v = xstrdup(imgf_cfg_str(s->cfg, "version", ""));
	for (char *p = v; *p; p++)
		if (*p == '+')
			*p = '_';
	char *name = xasprintf("registry.k8s.io/%s:%s", component, v);
	free(v);
	return name;
}

/* With a local source: whether the archive must be made from its binary. */
static bool made_from_binary(const struct imgf_step *s, const char *archive)
{
	if (kubesrc_type_of(s) != KUBESRC_LOCAL)
		return false;
	_cleanup_free_ char *p = kubesrc_local_find(s, archive);
	return !p;
}

static int images_validate(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	_cleanup_strv_ char **refs = image_refs(s);
	_cleanup_strv_ char **more = additional(s);
	if (!archives[0] && !refs[0] && !more[0] && !asks_kubeadm(s))
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
			if (!made_from_binary(s, archives[i]))
				continue;
			_cleanup_free_ char *bin = component_of(archives[i]);
			_cleanup_free_ char *p = kubesrc_local_find(s, bin);
			if (!p)
				return imgf_error_set(
					err, IMGF_EXIT_FAIL,
					"local_dir: '%s' has neither '%s' nor the binary '%s' to "
					"make it from (looked in _output/release-images/%s, "
					"_output/local/bin/linux/%s, _output/bin, "
					"_output/dockerized/bin/linux/%s and the directory itself)",
					imgf_cfg_str(s->cfg, "local_dir", ""), archives[i], bin,
					arch_of(s), arch_of(s), arch_of(s));
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
		if (is_path(more[i])) {
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
	if (asks_kubeadm(s) && (!*kv || !str_is_shell_word(kv)))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "version: '%s' is not a Kubernetes version (kubeadm is asked "
				      "which images that version needs; or set 'kubeadm' false)",
				      kv);
	const char *ns = imgf_cfg_str(s->cfg, "namespace", "k8s.io");
	if (!str_is_shell_word(ns))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "namespace: '%s' is not valid", ns);
	if (!str_is_shell_word(arch_of(s)))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "arch: '%s' is not valid", arch_of(s));
	json_t *m = mirrors_of(s, err);
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

/*
 * A one-layer tar with `bin` at usr/local/bin/NAME, where upstream's images keep it, and what
 * their distroless base gives a static binary: /etc/passwd, /etc/group, /etc/nsswitch.conf and
 * a sticky /tmp.
 */
static int binary_layer(const char *bin, const char *name, const char *out, struct imgf_error **err)
{
	static const char passwd[] = "root:x:0:0:root:/root:/sbin/nologin\n"
				     "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
				     "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
	static const char group[] = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";
	static const char nsswitch[] = "hosts: files dns\n";
	struct imgf_tar *w = imgf_tar_open(out, err);
	if (!w)
		return -1;
	_cleanup_free_ char *dest = xasprintf("usr/local/bin/%s", name);
	int r = imgf_tar_add_dir(w, "etc", 0755, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_data(w, group, strlen(group), "etc/group", 0644, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_data(w, nsswitch, strlen(nsswitch), "etc/nsswitch.conf", 0644, 0,
				      0, err);
	if (r == 0)
		r = imgf_tar_add_data(w, passwd, strlen(passwd), "etc/passwd", 0644, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_dir(w, "tmp", 01777, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_dir(w, "usr", 0755, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_dir(w, "usr/local", 0755, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_dir(w, "usr/local/bin", 0755, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_file(w, bin, dest, 0755, 0, 0, err);
	if (r == 0)
		r = imgf_tar_close(w, err);
	imgf_tar_free(w);
	if (r < 0)
		unlink(out);
	return r;
}

/* The image config of an image made from a binary. */
static json_t *made_config(const char *component)
{
	_cleanup_free_ char *entry = xasprintf("/usr/local/bin/%s", component);
	return json_pack("{s:[s],s:[s]}", "Env",
			 "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			 "Entrypoint", entry);
}

/* The control-plane archives: from the source, or made from a local build's binaries. */
static int stage_archives(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	if (!archives[0])
		return 0;
	char **need = NULL, **may = NULL;
	for (size_t i = 0; archives[i]; i++) {
		if (made_from_binary(s, archives[i]))
			need = strv_push(need, component_of(archives[i]));
		else if (kubesrc_type_of(s) == KUBESRC_LOCAL)
			may = strv_push(may, xstrdup(archives[i]));
		else
			need = strv_push(need, xstrdup(archives[i]));
	}
	json_t *paths = kubesrc_stage(s, (const char *const *)need, (const char *const *)may, err);
	strv_free(need);
	strv_free(may);
	if (!paths)
		return -1;
	int r = 0;
	for (size_t i = 0; archives[i] && r == 0; i++) {
		const char *tar = json_string_value(json_object_get(paths, archives[i]));
		if (tar) {
			json_array_append_new(s->staged, json_pack("{s:s}", "tar", tar));
			continue;
		}
		_cleanup_free_ char *comp = component_of(archives[i]);
		const char *bin = json_string_value(json_object_get(paths, comp));
		r = kubesrc_check_binary(s, bin, imgf_cfg_str(s->cfg, "version", ""), true, err);
		if (r < 0) {
			imgf_error_prefix(err, "%s", comp);
			break;
		}
		_cleanup_free_ char *name = made_image_name(s, comp);
		_cleanup_free_ char *layer =
			xasprintf("%s/made-%zu-%s-layer.tar", s->build->stage_dir, s->index, comp);
		r = binary_layer(bin, comp, layer, err);
		if (r < 0)
			break;
		if (!strcmp(comp, "kube-proxy")) {
			/* Its iptables layer comes from the target, in run(). */
			json_array_append_new(s->staged,
					      json_pack("{s:s,s:s,s:s}", "layer", layer, "name",
							name, "component", comp));
			continue;
		}
		_cleanup_free_ char *tar2 =
			xasprintf("%s/made-%zu-%s.tar", s->build->stage_dir, s->index, comp);
		const char *layers[] = {layer, NULL};
		json_t *cfg = made_config(comp);
		struct imgf_oci_image img = {
			.name = name, .arch = arch_of(s), .layers = layers, .config = cfg};
		_cleanup_free_ char *id = NULL;
		r = imgf_oci_write(&img, tar2, &id, err);
		json_decref(cfg);
		unlink(layer);
		if (r < 0)
			break;
		log_info("%s: made %s from %s (image %s)", s->label, name, bin, id);
		json_array_append_new(s->staged, json_pack("{s:s,s:s}", "tar", tar2, "name", name));
	}
	json_decref(paths);
	return r;
}

/* additional_images given as image tars: hashed, recorded, their names read and checked. */
static int stage_local_tar(struct imgf_step *s, const char *path, struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	char **names = NULL;
	if (imgf_digest_file(path, IMGF_SHA256, hex, err) < 0 ||
	    imgf_image_tar_names(path, &names, err) < 0)
		return imgf_error_prefix(err, "additional_images: '%s'", path);
	json_t *e = json_pack("{s:s,s:[]}", "tar", path, "names");
	int r = 0;
	for (size_t i = 0; names[i] && r == 0; i++) {
		struct imgf_image_ref ref;
		if (imgf_image_ref_parse(names[i], &ref, err) < 0) {
			r = imgf_error_prefix(err, "additional_images: '%s': image name", path);
			break;
		}
		if (!ref.tag)
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "additional_images: '%s' names '%s', which has no tag",
					   path, names[i]);
		else
			json_array_append_new(json_object_get(e, "names"), json_string(ref.full));
		imgf_image_ref_release(&ref);
	}
	if (r == 0 && !names[0])
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "additional_images: '%s' names no image (save it with a tag: "
				   "docker save NAME:TAG, or an OCI layout with "
				   "io.containerd.image.name)",
				   path);
	strv_free(names);
	if (r < 0) {
		json_decref(e);
		return -1;
	}
	log_info("%s: %s: local image tar (no upstream checksum), sha256 %s", s->label, path, hex);
	imgf_build_record_local_input(s->build, path_basename(path), path, hex);
	json_array_append_new(s->staged, e);
	return 0;
}

/* Pull a registry reference on the host, verified blob by blob, through its mirror if any. */
static int stage_pull(struct imgf_step *s, const char *refstr, json_t *mirrors,
		      struct imgf_error **err)
{
	struct imgf_image_ref ref;
	if (imgf_image_ref_parse(refstr, &ref, err) < 0)
		return -1;
	char *tar = xasprintf("%s/image-%zu-%zu.tar", s->build->stage_dir, s->index,
			      json_array_size(s->staged));
	char digest[72] = "";
	const char *mirror = json_string_value(json_object_get(mirrors, ref.registry));
	int r;
	/* Stored under NAME:TAG (a pinned digest is checked, not kept in the name). */
	_cleanup_free_ char *name =
		ref.tag ? xasprintf("%s/%s:%s", ref.registry, ref.repository, ref.tag)
			: xstrdup(ref.full);
	if (mirror && str_has_prefix(mirror, "file://")) {
		/* A layout `imgforge mirror` wrote (or anyone could have): containerd is given a
		 * layout written here from the blobs verified as they were read, named here. */
		_cleanup_free_ char *layout = xasprintf("%s/%s/%s.tar", mirror + strlen("file://"),
							ref.repository, ref.tag ? ref.tag : "");
		log_info("%s: '%s' from the mirror's layout %s", s->label, ref.full, layout);
		r = imgf_oci_import_layout(layout, arch_of(s), name, tar, digest, err);
		if (r == 0 && ref.digest && strcmp(ref.digest, digest))
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'%s' pins %s, the mirror's layout holds %s", refstr,
					   ref.digest, digest);
	} else {
		log_info("%s: pulling '%s' for linux/%s%s%s", s->label, ref.full, arch_of(s),
			 mirror ? " through " : "", mirror ? mirror : "");
		r = imgf_registry_pull_oci(refstr, mirror, arch_of(s), &s->build->fetch, tar,
					   digest, err);
	}
	if (r == 0) {
		/* After import, containerd must hold this manifest under this name. */
		json_array_append_new(s->staged, json_pack("{s:s,s:[s],s:s}", "tar", tar, "names",
							   name, "digest", digest));
		/* The URL says where the bytes came from; the name is the canonical one. */
		_cleanup_free_ char *url = mirror ? xasprintf("docker://%s/%s", mirror,
							      ref.full + strlen(ref.registry) + 1)
						  : xasprintf("docker://%s", ref.full);
		imgf_build_record_input(s->build, ref.full, url,
					str_has_prefix(digest, "sha256:") ? digest + 7 : digest);
	} else {
		imgf_error_prefix(err, "pull '%s'", refstr);
	}
	imgf_image_ref_release(&ref);
	free(tar);
	return r;
}

/* Everything but kube-proxy's iptables layer is made on the host now, so nothing unverified
 * reaches the target. */
static int images_stage(struct imgf_step *s, struct imgf_error **err)
{
	s->staged = json_array();
	if (stage_archives(s, err) < 0)
		return -1;
	_cleanup_strv_ char **refs = image_refs(s);
	_cleanup_strv_ char **more = additional(s);
	json_t *mirrors = mirrors_of(s, err);
	if (!mirrors)
		return -1;
	int r = 0;
	for (size_t i = 0; refs[i] && r == 0; i++)
		r = stage_pull(s, refs[i], mirrors, err);
	for (size_t i = 0; more[i] && r == 0; i++)
		r = is_path(more[i]) ? stage_local_tar(s, more[i], err)
				     : stage_pull(s, more[i], mirrors, err);
	json_decref(mirrors);
	return r;
}

/*
 * kube-proxy's second layer, from the target's own packages: xtables (legacy and nft),
 * conntrack, nft when present, a shell and the tools the wrapper uses, every library they
 * load (the loader included), the xtables extensions; iptables* named after the wrapper.
 */
static const char proxy_script[] =
	"r=" PROXY_DIR "/root\n"
	"rm -rf " PROXY_DIR "\n"
	"mkdir -p $r/usr/sbin $r/usr/bin\n"
	"P=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
	"bins=\n"
	"take() {\n"
	"  p=$(PATH=$P command -v \"$2\") || return 1\n"
	"  cp -L \"$p\" \"$r/$1/$2\"\n"
	"  bins=\"$bins $p\"\n"
	"}\n"
	"for f in xtables-legacy-multi xtables-nft-multi conntrack; do\n"
	"  take usr/sbin $f || { echo \"kube-proxy's image needs '$f' from the node's packages "
	"(iptables, conntrack); the target has none\" >&2; exit 1; }\n"
	"done\n"
	"take usr/sbin nft || true\n"
	"for f in sh grep basename ln; do\n"
	"  take usr/bin $f || { echo \"kube-proxy's image needs '$f'; the target has none\" >&2; "
	"exit 1; }\n"
	"done\n"
	"mods=$(ls /usr/lib/*/xtables/*.so /usr/lib/xtables/*.so /usr/lib64/xtables/*.so 2>/dev/null || true)\n"
	"# the xtables extensions load libraries of their own (libxt_statistic: libm)\n"
	"ldd $bins $mods 2>/dev/null | sed -n 's|.*=> \\(/[^ ]*\\) (0x.*|\\1|p; s|^[[:space:]]*\\(/[^ ]*\\) "
	"(0x.*|\\1|p' |\n"
	"  sort -u | while read -r lib; do\n"
	"    mkdir -p \"$r$(dirname \"$lib\")\"\n"
	"    cp -L \"$lib\" \"$r$lib\"\n"
	"  done\n"
	"for d in /usr/lib/*/xtables /usr/lib/xtables /usr/lib64/xtables; do\n"
	"  [ -d \"$d\" ] || continue\n"
	"  mkdir -p \"$r$d\"\n"
	"  cp -RL \"$d/.\" \"$r$d/\"\n"
	"done\n"
	"[ -e $r/bin ] || ln -s usr/bin $r/bin # the wrapper's #!/bin/sh\n"
	"cd $r/usr/sbin\n"
	"for f in iptables iptables-save iptables-restore ip6tables ip6tables-save "
	"ip6tables-restore; do\n"
	"  ln -s xtables-legacy-multi $f-legacy\n"
	"  ln -s xtables-nft-multi $f-nft\n"
	"  ln -s iptables-wrapper $f\n"
	"done\n";

/* Finish kube-proxy's image: its binary layer (staged) and the iptables layer. */
static int make_proxy_image(struct imgf_step *s, struct imgf_target *t, json_t *e,
			    struct imgf_error **err)
{
	const char *name = json_string_value(json_object_get(e, "name"));
	const char *layer = json_string_value(json_object_get(e, "layer"));
	const char *comp = json_string_value(json_object_get(e, "component"));
	_cleanup_free_ char *wrapper = NULL;
	size_t wlen = 0;
	if (imgf_step_data(s, "images/iptables-wrapper", &wrapper, &wlen, err) < 0)
		return -1;
	if (imgf_target_sh(t, s->label, proxy_script, NULL, err) < 0 ||
	    imgf_target_put_data(t, PROXY_DIR "/root/usr/sbin/iptables-wrapper", wrapper, wlen,
				 0755, err) < 0)
		return imgf_error_prefix(err, "kube-proxy's iptables layer");
	_cleanup_free_ char *got = xasprintf("%s/proxy-%zu-got.tar", s->build->stage_dir, s->index);
	_cleanup_free_ char *layer2 =
		xasprintf("%s/proxy-%zu-layer.tar", s->build->stage_dir, s->index);
	_cleanup_free_ char *out =
		xasprintf("%s/made-%zu-%s.tar", s->build->stage_dir, s->index, comp);
	int r = t->ops->get_tar(t, PROXY_DIR "/root", got, err);
	if (r == 0) {
		struct imgf_tar *w = imgf_tar_open(layer2, err);
		r = w ? 0 : -1;
		if (r == 0)
			r = imgf_tar_add_archive(w, got, 1, "", NULL, err);
		if (r == 0)
			r = imgf_tar_close(w, err);
		imgf_tar_free(w);
	}
	unlink(got);
	char *rm[] = {"rm", "-rf", PROXY_DIR, NULL};
	if (imgf_target_run(t, s->label, rm, NULL, r == 0 ? err : NULL) < 0 && r == 0)
		r = -1;
	_cleanup_free_ char *id = NULL;
	if (r == 0) {
		const char *layers[] = {layer, layer2, NULL};
		json_t *cfg = made_config(comp);
		struct imgf_oci_image img = {
			.name = name, .arch = arch_of(s), .layers = layers, .config = cfg};
		r = imgf_oci_write(&img, out, &id, err);
		json_decref(cfg);
	}
	unlink(layer2);
	if (r < 0)
		return imgf_error_prefix(err, "make %s", name);
	log_info("%s: made %s from %s and the target's iptables (image %s)", s->label, name,
		 path_basename(layer), id);
	json_object_set_new(e, "tar", json_string(out));
	json_object_set_new(e, "names", json_pack("[s]", name));
	return 0;
}

/* Of `names`, the one with w's registry and repository (at any tag), or NULL. */
static const char *same_repository(char **names, const struct imgf_image_ref *w)
{
	for (size_t i = 0; names[i]; i++) {
		struct imgf_image_ref got;
		if (imgf_image_ref_parse(names[i], &got, NULL) < 0)
			continue;
		bool same = !strcmp(got.registry, w->registry) &&
			    !strcmp(got.repository, w->repository);
		imgf_image_ref_release(&got);
		if (same)
			return names[i];
	}
	return NULL;
}

/* Whether an archive (NAME.tar) makes the image: registry.k8s.io/NAME. */
static bool from_archive(char **archives, const struct imgf_image_ref *w)
{
	for (size_t i = 0; archives[i]; i++) {
		_cleanup_free_ char *comp = component_of(archives[i]);
		if (!strcmp(w->registry, "registry.k8s.io") && !strcmp(w->repository, comp))
			return true;
	}
	return false;
}

/*
 * What kubeadm's image list (`list`: the output of `kubeadm config images list`) asks of a
 * step that preloads `given`: the archives' images are checked after import; an image given
 * at another tag (or from another registry) is an error, since kubeadm or the kubelet would
 * pull what it asks for when a cluster is created; the rest (pause, etcd, CoreDNS whose
 * variables are empty) are pushed onto *pull. Every name goes into `expect` (may be NULL);
 * *pause (newly allocated) receives kubeadm's pause image.
 */
static int kubeadm_plan(const struct imgf_step *s, const char *list, char **given, char ***pull,
			struct strbuf *expect, char **pause, struct imgf_error **err)
{
	const char *v = imgf_cfg_str(s->cfg, "version", "");
	_cleanup_strv_ char **want = push_words(xcalloc(1, sizeof(char *)), list);
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	if (!want[0])
		return imgf_error_set(err, IMGF_EXIT_FAIL, "kubeadm %s lists no images", v);
	for (size_t i = 0; want[i]; i++) {
		struct imgf_image_ref w;
		if (!str_is_shell_word(want[i]) || imgf_image_ref_parse(want[i], &w, NULL) < 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "kubeadm %s lists '%s', which is not an image "
					      "reference",
					      v, want[i]);
		if (expect)
			strbuf_addf(expect, " %s", want[i]);
		const char *slash = strrchr(w.repository, '/');
		if (!strcmp(slash ? slash + 1 : w.repository, "pause") && !*pause)
			*pause = xstrdup(want[i]);
		const char *have = same_repository(given, &w);
		int r = 0;
		if (have && strcmp(have, want[i]))
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'%s' is preloaded, but kubeadm %s asks for '%s', which "
					   "it would pull when a cluster is created (leave the "
					   "image's variable empty to take kubeadm's)",
					   have, v, want[i]);
		else if (!have && !from_archive(archives, &w))
			*pull = strv_push(*pull, xstrdup(want[i]));
		imgf_image_ref_release(&w);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* The names the staged images will have. */
static char **staged_names(json_t *staged)
{
	char **v = xcalloc(1, sizeof(*v));
	size_t i, j;
	json_t *e, *n;
	json_array_foreach(staged, i, e) json_array_foreach(json_object_get(e, "names"), j, n) v =
		strv_push(v, xstrdup(json_string_value(n)));
	return v;
}

/* Ask the target's kubeadm (kubeadm_plan) and pull what it wants that is not staged yet. */
static int kubeadm_images(struct imgf_step *s, struct imgf_target *t, struct strbuf *expect,
			  char **pause, struct imgf_error **err)
{
	const char *v = imgf_cfg_str(s->cfg, "version", "");
	/* kubeadm defaults the node name from the hostname and refuses one that is no DNS name:
	 * the libguestfs appliance's is "(none)". Only that kernel's name is changed, not the
	 * image's (the version is a shell word, checked by validate). */
	_cleanup_free_ char *script =
		xasprintf("case $(cat /proc/sys/kernel/hostname 2>/dev/null) in\n"
			  "*[!a-z0-9.-]*) echo imgforge-build >/proc/sys/kernel/hostname ;;\n"
			  "esac\n"
			  "exec kubeadm config images list --kubernetes-version %s\n",
			  v);
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	_cleanup_free_ char *out = NULL;
	if (imgf_target_capture(t, s->label, argv, &out, err) < 0)
		return imgf_error_prefix(err, "ask the target's kubeadm which images %s needs", v);
	_cleanup_strv_ char **given = staged_names(s->staged);
	_cleanup_strv_ char **pull = xcalloc(1, sizeof(char *));
	if (kubeadm_plan(s, out, given, &pull, expect, pause, err) < 0)
		return -1;
	json_t *mirrors = mirrors_of(s, err);
	if (!mirrors)
		return -1;
	int r = 0;
	for (size_t i = 0; pull[i] && r == 0; i++) {
		log_info("%s: kubeadm %s asks for '%s'", s->label, v, pull[i]);
		r = stage_pull(s, pull[i], mirrors, err);
	}
	json_decref(mirrors);
	return r;
}

static int images_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	const char *ns = imgf_cfg_str(s->cfg, "namespace", "k8s.io");
	size_t i;
	json_t *e;
	struct strbuf expect = STRBUF_INIT, imports = STRBUF_INIT, held = STRBUF_INIT;
	_cleanup_free_ char *pause = NULL;
	if (asks_kubeadm(s) && kubeadm_images(s, t, &expect, &pause, err) < 0) {
		strbuf_release(&expect);
		return -1;
	}
	json_array_foreach(s->staged, i, e)
	{
		if (!json_object_get(e, "tar") && make_proxy_image(s, t, e, err) < 0) {
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
		RUN_DIR, ns, arch_of(s), expect.buf + (expect.len ? 1 : 0), IMAGES_DIR, imports.buf,
		held.buf, pause ? pause : "");
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

/* Of the images kubeadm asks for beside the control plane's, those `refs` names none of (by
 * repository name): the shipped configs' variables for them, space-separated. */
static char *kubeadm_missing(char **refs)
{
	static const struct {
		const char *repo, *var;
	} kinds[] = {
		{"pause", "pause_image"}, {"etcd", "etcd_image"}, {"coredns", "coredns_image"}};
	struct strbuf sb = STRBUF_INIT;
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		bool have = false;
		for (size_t i = 0; refs[i] && !have; i++) {
			struct imgf_image_ref r;
			if (imgf_image_ref_parse(refs[i], &r, NULL) < 0)
				continue;
			const char *slash = strrchr(r.repository, '/');
			have = !strcmp(slash ? slash + 1 : r.repository, kinds[k].repo);
			imgf_image_ref_release(&r);
		}
		if (!have)
			strbuf_addf(&sb, "%s%s", sb.len ? ", " : "", kinds[k].var);
	}
	return strbuf_detach(&sb, NULL);
}

/*
 * For `imgforge mirror`: the references the step pulls. A mirror has no target to ask kubeadm
 * in, and runs nothing from a download on the host: where a build would take kubeadm's pause,
 * etcd and CoreDNS, the mirror needs them named (a build from the mirror still asks its
 * target's kubeadm, and refuses an image kubeadm does not want).
 */
static char **images_pulls(struct imgf_step *s, json_t **mirrors, struct imgf_error **err)
{
	if (!(*mirrors = mirrors_of(s, err)))
		return NULL;
	char **refs = image_refs(s);
	_cleanup_strv_ char **more = additional(s);
	for (size_t i = 0; more[i]; i++)
		if (!is_path(more[i]))
			refs = strv_push(refs, xstrdup(more[i]));
	if (!asks_kubeadm(s))
		return refs;
	const char *v = imgf_cfg_str(s->cfg, "version", "");
	_cleanup_free_ char *missing = kubeadm_missing(refs);
	if (!*missing)
		return refs;
	imgf_error_set(err, IMGF_EXIT_FAIL,
		       "kubeadm %s's images: a mirror has no target to ask kubeadm in, and "
		       "imgforge runs no downloaded binary on the host; set %s to what "
		       "`kubeadm config images list --kubernetes-version %s` prints (a build "
		       "from the mirror checks them against its target's kubeadm), or set the "
		       "step's 'kubeadm' false",
		       v, missing, v);
	strv_free(refs);
	json_decref(*mirrors);
	*mirrors = NULL;
	return NULL;
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
