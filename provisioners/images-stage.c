/*
 * The images provisioner on the host, before the target exists: the control-plane archives
 * from the Kubernetes source or made from a local build's binaries, registry references
 * pulled and verified blob by blob, image tars hashed and recorded; and kube-proxy's image,
 * whose iptables layer comes from the target, finished in it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "build.h"
#include "config.h"
#include "digest.h"
#include "error.h"
#include "imageref.h"
#include "images-internal.h"
#include "kubesrc.h"
#include "log.h"
#include "ociimage.h"
#include "provisioner.h"
#include "registry.h"
#include "target.h"
#include "util.h"

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

/* The control-plane archives: from the source, or made from a local build's binaries. */
static int stage_archives(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **archives = imgf_cfg_strv(s->cfg, "archives");
	if (!archives[0])
		return 0;
	char **need = NULL, **may = NULL;
	for (size_t i = 0; archives[i]; i++) {
		if (images_made_from_binary(s, archives[i]))
			need = strv_push(need, images_component(archives[i]));
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
		_cleanup_free_ char *comp = images_component(archives[i]);
		const char *bin = json_string_value(json_object_get(paths, comp));
		r = kubesrc_check_binary(s, bin, imgf_cfg_str(s->cfg, "version", ""), true, err);
		if (r < 0) {
			imgf_error_prefix(err, "%s", comp);
			break;
		}
		_cleanup_free_ char *name = images_made_name(s, comp);
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
		json_t *cfg = images_made_config(comp);
		struct imgf_oci_image img = {
			.name = name, .arch = images_arch(s), .layers = layers, .config = cfg};
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
int images_stage_pull(struct imgf_step *s, const char *refstr, json_t *mirrors,
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
		r = imgf_oci_import_layout(layout, images_arch(s), name, tar, digest, err);
		if (r == 0 && ref.digest && strcmp(ref.digest, digest))
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'%s' pins %s, the mirror's layout holds %s", refstr,
					   ref.digest, digest);
	} else {
		log_info("%s: pulling '%s' for linux/%s%s%s", s->label, ref.full, images_arch(s),
			 mirror ? " through " : "", mirror ? mirror : "");
		r = imgf_registry_pull_oci(refstr, mirror, images_arch(s), &s->build->fetch, tar,
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
int images_stage(struct imgf_step *s, struct imgf_error **err)
{
	s->staged = json_array();
	if (stage_archives(s, err) < 0)
		return -1;
	_cleanup_strv_ char **refs = images_refs(s);
	_cleanup_strv_ char **more = images_additional(s);
	json_t *mirrors = images_mirrors(s, err);
	if (!mirrors)
		return -1;
	int r = 0;
	for (size_t i = 0; refs[i] && r == 0; i++)
		r = images_stage_pull(s, refs[i], mirrors, err);
	for (size_t i = 0; more[i] && r == 0; i++)
		r = images_is_path(more[i]) ? stage_local_tar(s, more[i], err)
					    : images_stage_pull(s, more[i], mirrors, err);
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
int images_make_proxy(struct imgf_step *s, struct imgf_target *t, json_t *e,
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
		json_t *cfg = images_made_config(comp);
		struct imgf_oci_image img = {
			.name = name, .arch = images_arch(s), .layers = layers, .config = cfg};
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
