/*
 * images: preload container images into containerd (namespace k8s.io by default), labelled
 * pinned so the kubelet never garbage-collects them. Image tarballs come from a release tree
 * (SOURCE/NAME.tar with NAME.tar.sha256, as dl.k8s.io ships the control-plane images);
 * registry references are pulled on the host, every blob verified by digest. Inside the
 * target a private containerd runs for the step only.
 */
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "common.h"
#include "engine.h"
#include "error.h"
#include "log.h"
#include "provisioner.h"
#include "registry.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

#define IMAGES_DIR "/var/tmp/imgforge-images"
#define IMAGES_DIR_REL "var/tmp/imgforge-images" /* the same, as a tar member name */
#define RUN_DIR "/run/imgforge-containerd"

static const struct imgf_key images_keys[] = {
	{"source", IMGF_KEY_STRING, false},	   /* base URL of the image tarballs */
	{"archives", IMGF_KEY_STRING_LIST, false}, /* names under source, e.g. kube-proxy.tar */
	{"images", IMGF_KEY_STRING_LIST, false},   /* registry references */
	{"namespace", IMGF_KEY_STRING, false},	   /* default k8s.io */
	{"arch", IMGF_KEY_STRING, false}, /* platform to pull, default the 'arch' variable */
	{"pin", IMGF_KEY_BOOL, false},	  /* label io.cri-containerd.pinned (default true) */
	/* A JSON object {"registry.k8s.io": "HOST[:PORT][/PATH]", ...}: pull through a mirror,
	 * store under the canonical name. */
	{"registry_mirrors", IMGF_KEY_STRING, false},
	{NULL, 0, false},
};

/* The step's registry_mirrors as a JSON object (a new reference), checked; NULL on error. */
static json_t *mirrors_of(struct imgf_step *s, struct imgf_error **err)
{
	const char *text = imgf_step_str(s, "registry_mirrors", NULL);
	if (!text || !*text)
		return json_object();
	json_error_t jerr;
	json_t *m = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!m || !json_is_object(m)) {
		json_decref(m);
		imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"registry_mirrors: '%s' is not a JSON object of registry: mirror%s%s", text,
			m ? "" : ": ", m ? "" : jerr.text);
		return NULL;
	}
	const char *reg;
	json_t *v;
	_cleanup_free_ char *why = NULL;
	json_object_foreach(m, reg, v)
	{
		if (!imgf_registry_host_valid(reg, &why))
			break;
		if (!json_is_string(v)) {
			why = xasprintf("'%s': expected a string \"HOST[:PORT][/PATH]\"", reg);
			break;
		}
		if (!imgf_registry_mirror_valid(json_string_value(v), &why))
			break;
	}
	if (!why)
		return m;
	imgf_error_set(err, IMGF_EXIT_FAIL, "registry_mirrors: %s", why);
	json_decref(m);
	return NULL;
}

static const char *arch_of(const struct imgf_step *s)
{
	const char *a = imgf_step_str(s, "arch", NULL);
	if (!a)
		a = imgf_step_var(s, "arch");
	return a ? a : "amd64";
}

static int images_validate(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **archives = imgf_step_strv(s, "archives");
	_cleanup_strv_ char **refs = imgf_step_strv(s, "images");
	if (archives[0] && !imgf_step_str(s, "source", NULL))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "archives: needs 'source'");
	if (!archives[0] && !refs[0])
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "nothing to preload: give 'archives' "
				      "or 'images'");
	for (size_t i = 0; archives[i]; i++)
		if (strchr(archives[i], '/') || !str_is_shell_word(archives[i]))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "archives: '%s' is not a file name", archives[i]);
	for (size_t i = 0; refs[i]; i++) {
		struct imgf_image_ref ref;
		if (imgf_image_ref_parse(refs[i], &ref, err) < 0)
			return imgf_error_prefix(err, "images[%zu]", i);
		imgf_image_ref_release(&ref);
	}
	const char *ns = imgf_step_str(s, "namespace", "k8s.io");
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
	_cleanup_strv_ char **archives = imgf_step_strv(s, "archives");
	const char *src = imgf_step_str(s, "source", "");
	for (size_t i = 0; archives[i]; i++) {
		_cleanup_free_ char *url = xasprintf("%s/%s", src, archives[i]);
		_cleanup_free_ char *ck = xasprintf("%s.sha256", url);
		imgf_step_add_input(s, archives[i], url, ck, "source", NULL);
	}
	return 0;
}

/* Pull every registry reference on the host now, so nothing unverified reaches the target. */
static int images_stage(struct imgf_step *s, struct imgf_error **err)
{
	_cleanup_strv_ char **refs = imgf_step_strv(s, "images");
	json_t *mirrors = mirrors_of(s, err);
	if (!mirrors)
		return -1;
	s->staged = json_array();
	for (size_t i = 0; refs[i]; i++) {
		struct imgf_image_ref ref;
		if (imgf_image_ref_parse(refs[i], &ref, err) < 0) {
			json_decref(mirrors);
			return -1;
		}
		_cleanup_free_ char *tar =
			xasprintf("%s/image-%zu-%zu.tar", s->build->stage_dir, s->index, i);
		char digest[72] = "";
		const char *mirror = json_string_value(json_object_get(mirrors, ref.registry));
		log_info("%s: pulling '%s' for linux/%s%s%s", s->label, ref.full, arch_of(s),
			 mirror ? " through " : "", mirror ? mirror : "");
		int r = imgf_registry_pull_oci(refs[i], mirror, arch_of(s), &s->build->fetch, tar,
					       digest, err);
		if (r == 0) {
			json_array_append_new(s->staged,
					      json_pack("{s:s,s:s}", "tar", tar, "name", ref.full));
			/* The URL says where the bytes came from; the name is the canonical one. */
			_cleanup_free_ char *url =
				mirror ? xasprintf("docker://%s/%s", mirror,
						   ref.full + strlen(ref.registry) + 1)
				       : xasprintf("docker://%s", ref.full);
			imgf_build_record_input(s->build, ref.full, url,
						str_has_prefix(digest, "sha256:") ? digest + 7
										  : digest);
		} else {
			imgf_error_prefix(err, "pull '%s'", refs[i]);
		}
		imgf_image_ref_release(&ref);
		if (r < 0) {
			json_decref(mirrors);
			return -1;
		}
	}
	json_decref(mirrors);
	return 0;
}

static int images_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	const char *ns = imgf_step_str(s, "namespace", "k8s.io");
	char *path;
	struct imgf_tar *w = prov_tar_new(s, t, &path, err);
	if (!w)
		return -1;
	int r = 0;
	size_t n = 0;
	for (size_t i = 0; i < s->ninputs && r == 0; i++, n++) {
		_cleanup_free_ char *dest = xasprintf("%s/%03zu.tar", IMAGES_DIR_REL, n);
		r = imgf_tar_add_file(w, s->inputs[i].path, dest, 0600, 0, 0, err);
	}
	struct strbuf expect = STRBUF_INIT;
	size_t i;
	json_t *e;
	json_array_foreach(s->staged, i, e)
	{
		if (r < 0)
			break;
		_cleanup_free_ char *dest = xasprintf("%s/%03zu.tar", IMAGES_DIR_REL, n++);
		r = imgf_tar_add_file(w, json_string_value(json_object_get(e, "tar")), dest, 0600,
				      0, 0, err);
		strbuf_addf(&expect, " %s", json_string_value(json_object_get(e, "name")));
	}
	if (prov_tar_put(w, path, t, r, err) < 0) {
		strbuf_release(&expect);
		return -1;
	}

	/* The names are checked by str_is_shell_word, so they can stand unquoted. */
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb,
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
		    "for f in %s/*.tar; do\n"
		    "  c images import --no-unpack --all-platforms \"$f\"\n"
		    "done\n"
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
		    "done\n",
		    RUN_DIR, ns, arch_of(s), expect.buf + (expect.len ? 1 : 0), IMAGES_DIR,
		    IMAGES_DIR);
	if (imgf_step_bool(s, "pin", true))
		strbuf_addstr(&sb, "for name in $names; do\n"
				   "  c images label \"$name\" io.cri-containerd.pinned=pinned "
				   ">/dev/null\n"
				   "done\n");
	strbuf_addstr(&sb, "c images ls\n");
	r = imgf_target_sh(t, s->label, sb.buf, NULL, err);
	strbuf_release(&sb);
	strbuf_release(&expect);
	return r;
}

const struct imgf_provisioner_ops imgf_images_provisioner = {
	.name = "images",
	.keys = images_keys,
	.validate = images_validate,
	.inputs = images_inputs,
	.stage = images_stage,
	.run = images_run,
};
