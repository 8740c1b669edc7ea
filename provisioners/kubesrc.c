/* Kubernetes files from a release tree, a server tarball or a local build (kubesrc.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "build.h"
#include "common.h"
#include "config.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "gobuildinfo.h"
#include "kubesrc.h"
#include "log.h"
#include "provisioner.h"
#include "strbuf.h"
#include "util.h"

#define TARBALL_INPUT "kubernetes-server"
#define TARBALL_DIR "kubernetes/server/bin" /* where the server tarball keeps its files */

static const char *source_name(const struct imgf_step *s)
{
	return imgf_cfg_str(s->cfg, "kubernetes_source", "release");
}

enum kubesrc_type kubesrc_type_of(const struct imgf_step *s)
{
	const char *t = source_name(s);
	if (!strcmp(t, "tarball"))
		return KUBESRC_TARBALL;
	if (!strcmp(t, "local"))
		return KUBESRC_LOCAL;
	return KUBESRC_RELEASE;
}

const char *kubesrc_arch(const struct imgf_step *s)
{
	const char *a = imgf_cfg_str(s->cfg, "arch", NULL);
	if (!a)
		a = s->build->contract->arch;
	return a && *a ? a : "amd64";
}

static bool is_url(const char *s)
{
	return str_has_prefix(s, "http://") || str_has_prefix(s, "https://") ||
	       str_has_prefix(s, "file://");
}

/* An absolute form of a local path (relative ones are taken from the working directory). */
static char *abs_path(const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(p);
	return path_join(cwd, p);
}

static bool is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directories of a local build that may hold binaries, newest-first order decided later. */
static char **local_bin_dirs(const char *dir, const char *arch)
{
	char **v = NULL;
	v = strv_push(v, xasprintf("%s/_output/local/bin/linux/%s", dir, arch));
	v = strv_push(v, xasprintf("%s/_output/bin", dir));
	v = strv_push(v, xasprintf("%s/_output/dockerized/bin/linux/%s", dir, arch));
	v = strv_push(v, xasprintf("%s/_output/release-images/%s", dir, arch));
	v = strv_push(v, xstrdup(dir));
	return v;
}

/* The newest regular file called `name` among a local build's directories (NULL if none). */
static char *local_find(const char *dir, const char *arch, const char *name)
{
	_cleanup_strv_ char **dirs = local_bin_dirs(dir, arch);
	char *best = NULL;
	struct timespec best_t = {0, 0};
	for (size_t i = 0; dirs[i]; i++) {
		_cleanup_free_ char *p = path_join(dirs[i], name);
		struct stat st;
		if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (!best || st.st_mtim.tv_sec > best_t.tv_sec ||
		    (st.st_mtim.tv_sec == best_t.tv_sec && st.st_mtim.tv_nsec > best_t.tv_nsec)) {
			free(best);
			best = xstrdup(p);
			best_t = st.st_mtim;
		}
	}
	return best;
}

bool kubesrc_reads_host(const struct imgf_step *s, const char *key)
{
	if (!strcmp(key, "tarball"))
		return kubesrc_type_of(s) == KUBESRC_TARBALL;
	if (!strcmp(key, "local_dir"))
		return kubesrc_type_of(s) == KUBESRC_LOCAL;
	return true;
}

char *kubesrc_local_find(const struct imgf_step *s, const char *name)
{
	_cleanup_free_ char *dir = abs_path(imgf_cfg_str(s->cfg, "local_dir", ""));
	return local_find(dir, kubesrc_arch(s), name);
}

static bool in_list(const char *const *v, const char *s)
{
	for (size_t i = 0; v && v[i]; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

int kubesrc_validate(struct imgf_step *s, const char *const *need, const char *const *may,
		     struct imgf_error **err)
{
	const char *t = source_name(s);
	if (strcmp(t, "release") && strcmp(t, "tarball") && strcmp(t, "local"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "kubernetes_source: unknown source '%s' (known: 'release', "
				      "'tarball', 'local')",
				      t);
	if (!str_is_shell_word(kubesrc_arch(s)))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "arch: '%s' is not valid",
				      kubesrc_arch(s));
	const char *src = imgf_cfg_str(s->cfg, "source", "");
	const char *tarball = imgf_cfg_str(s->cfg, "tarball", "");
	const char *dir = imgf_cfg_str(s->cfg, "local_dir", "");
	switch (kubesrc_type_of(s)) {
	case KUBESRC_RELEASE:
		if (!*src)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"source: kubernetes_source 'release' needs the release "
				"tree's URL (.../release/VERSION/bin/linux/ARCH)");
		return 0;
	case KUBESRC_TARBALL:
		if (!*tarball)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"tarball: kubernetes_source 'tarball' needs the URL or path of a "
				"kubernetes-server-linux-%s.tar.gz",
				kubesrc_arch(s));
		if (!is_url(tarball) && !is_file(tarball))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "tarball: '%s' is neither a URL nor an existing file "
					      "(expected kubernetes-server-linux-%s.tar.gz)",
					      tarball, kubesrc_arch(s));
		return 0;
	case KUBESRC_LOCAL:
		break;
	}
	struct stat st;
	if (!*dir)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "local_dir: kubernetes_source 'local' needs the directory of "
				      "a Kubernetes build");
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "local_dir: '%s' is not a directory",
				      dir);
	for (size_t i = 0; need && need[i]; i++) {
		_cleanup_free_ char *p = local_find(dir, kubesrc_arch(s), need[i]);
		if (!p)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"local_dir: '%s' has no '%s' (looked in _output/local/bin/linux/%s, "
				"_output/bin, _output/dockerized/bin/linux/%s, "
				"_output/release-images/%s and the directory itself)",
				dir, need[i], kubesrc_arch(s), kubesrc_arch(s), kubesrc_arch(s));
	}
	(void)may;
	return 0;
}

void kubesrc_inputs(struct imgf_step *s, const char *const *names)
{
	const char *src = imgf_cfg_str(s->cfg, "source", "");
	switch (kubesrc_type_of(s)) {
	case KUBESRC_RELEASE:
		for (size_t i = 0; names[i]; i++) {
			_cleanup_free_ char *url = xasprintf("%s/%s", src, names[i]);
			_cleanup_free_ char *ck = xasprintf("%s.sha256", url);
			imgf_step_add_input(s, names[i], url, ck, "source", NULL);
		}
		return;
	case KUBESRC_TARBALL: {
		const char *tarball = imgf_cfg_str(s->cfg, "tarball", "");
		const char *ck = imgf_cfg_str(s->cfg, "tarball_checksum", "");
		if (!is_url(tarball) && !*ck)
			return; /* a local file: hashed at stage time */
		_cleanup_free_ char *a = is_url(tarball) ? NULL : abs_path(tarball);
		_cleanup_free_ char *url = a ? xasprintf("file://%s", a) : xstrdup(tarball);
		_cleanup_free_ char *beside = xasprintf("%s.sha256", url);
		imgf_step_add_input(s, TARBALL_INPUT, url, *ck ? ck : beside, "tarball",
				    *ck ? "tarball_checksum" : NULL);
		return;
	}
	case KUBESRC_LOCAL:
		return;
	}
}

/* Hash a local file, say that it has no upstream checksum, record it for the manifest. */
static int record_local(struct imgf_step *s, const char *name, const char *path,
			struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	if (imgf_digest_file(path, IMGF_SHA256, hex, err) < 0)
		return imgf_error_prefix(err, "%s", name);
	log_info("%s: %s: local file '%s' (no upstream checksum), sha256 %s", s->label, name, path,
		 hex);
	imgf_build_record_local_input(s->build, name, path, hex);
	return 0;
}

/* The needed members of the server tarball, copied into DIR/NAME; a missing one fails. */
static int tarball_members(struct imgf_step *s, const char *tarball, const char *const *need,
			   const char *const *may, const char *dir, json_t *out,
			   struct imgf_error **err)
{
	const char **only = NULL;
	size_t n = 0;
	for (size_t i = 0; need && need[i]; i++) {
		only = xrealloc(only, (n + 2) * sizeof(*only));
		only[n++] = need[i];
	}
	for (size_t i = 0; may && may[i]; i++)
		if (!in_list(need, may[i])) {
			only = xrealloc(only, (n + 2) * sizeof(*only));
			only[n++] = may[i];
		}
	if (!only)
		return 0;
	only[n] = NULL;
	_cleanup_free_ char *tar = xasprintf("%s.tar", dir);
	int r = -1;
	struct imgf_tar *w = imgf_tar_open(tar, err);
	if (w) {
		/* kubernetes/server/bin/NAME -> NAME */
		r = imgf_tar_add_archive(w, tarball, 3, "", only, err);
		if (r == 0)
			r = imgf_tar_close(w, err);
		imgf_tar_free(w);
	}
	if (r < 0)
		imgf_error_prefix(err,
				  "tarball '%s' (expected a kubernetes-server-linux-%s.tar.gz "
				  "with %s/NAME)",
				  tarball, kubesrc_arch(s), TARBALL_DIR);
	if (r == 0 && (r = mkdir_p(dir, 0755, err)) == 0)
		r = imgf_archive_extract(tar, dir, err);
	unlink(tar);
	for (size_t i = 0; r == 0 && only[i]; i++)
		json_object_set_new(out, only[i], json_sprintf("%s/%s", dir, only[i]));
	free(only);
	return r;
}

static int stage_tarball(struct imgf_step *s, const char *const *need, const char *const *may,
			 json_t *out, struct imgf_error **err)
{
	const struct imgf_input *in = imgf_step_input(s, TARBALL_INPUT);
	_cleanup_free_ char *path =
		in ? xstrdup(in->path) : abs_path(imgf_cfg_str(s->cfg, "tarball", ""));
	if (!in && record_local(s, path_basename(path), path, err) < 0)
		return -1;
	_cleanup_free_ char *dir = xasprintf("%s/kube-%zu", s->build->stage_dir, s->index);
	if (tarball_members(s, path, need, may, dir, out, err) < 0)
		return -1;
	log_info("%s: %zu file(s) from %s, nothing else unpacked", s->label, json_object_size(out),
		 path_basename(in ? in->url : path));
	return 0;
}

static int stage_local(struct imgf_step *s, const char *const *need, const char *const *may,
		       json_t *out, struct imgf_error **err)
{
	_cleanup_free_ char *dir = abs_path(imgf_cfg_str(s->cfg, "local_dir", ""));
	for (int pass = 0; pass < 2; pass++) {
		const char *const *names = pass ? may : need;
		for (size_t i = 0; names && names[i]; i++) {
			_cleanup_free_ char *p = local_find(dir, kubesrc_arch(s), names[i]);
			if (!p && !pass)
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "local_dir: '%s' has no '%s' any more", dir,
						      names[i]);
			if (!p || json_object_get(out, names[i]))
				continue;
			if (record_local(s, names[i], p, err) < 0)
				return -1;
			json_object_set_new(out, names[i], json_string(p));
		}
	}
	return 0;
}

json_t *kubesrc_stage(struct imgf_step *s, const char *const *need, const char *const *may,
		      struct imgf_error **err)
{
	json_t *out = json_object();
	int r = 0;
	switch (kubesrc_type_of(s)) {
	case KUBESRC_RELEASE:
		for (size_t i = 0; need && need[i]; i++) {
			const struct imgf_input *in = imgf_step_input(s, need[i]);
			if (in)
				json_object_set_new(out, need[i], json_string(in->path));
		}
		break;
	case KUBESRC_TARBALL:
		r = stage_tarball(s, need, may, out, err);
		break;
	case KUBESRC_LOCAL:
		r = stage_local(s, need, may, out, err);
		break;
	}
	if (r == 0)
		return out;
	json_decref(out);
	return NULL;
}

/* ---- Binaries that did not come from an upstream release ---- */

static const char *elf_arch(unsigned machine)
{
	switch (machine) {
	case 62:
		return "amd64";
	case 183:
		return "arm64";
	case 21:
		return "ppc64le";
	case 22:
		return "s390x";
	case 40:
		return "arm";
	case 3:
		return "386";
	case 243:
		return "riscv64";
	default:
		return NULL;
	}
}

static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The GOARCH of a little-endian ELF64 file and whether it names an interpreter. */
static int elf_info(const char *path, const char **arch, bool *dynamic, struct imgf_error **err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	unsigned char h[64];
	int r = -1;
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, "\177ELF", 4) ||
	    h[4] != 2 || h[5] != 1) {
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "'%s' is not a little-endian 64-bit ELF executable", path);
		goto out;
	}
	*arch = elf_arch((unsigned)le(h + 18, 2));
	uint64_t phoff = le(h + 32, 8);
	unsigned phentsize = (unsigned)le(h + 54, 2), phnum = (unsigned)le(h + 56, 2);
	*dynamic = false;
	for (unsigned i = 0; i < phnum && i < 256 && phentsize >= 4; i++) {
		unsigned char ph[4];
		if (pread(fd, ph, 4, (off_t)(phoff + (uint64_t)i * phentsize)) != 4)
			break;
		if (le(ph, 4) == 3) /* PT_INTERP */
			*dynamic = true;
	}
	r = 0;
out:
	close(fd);
	return r;
}

/* The variable Kubernetes' builds stamp with -X (hack/lib/version.sh, hack/kube-from-source.sh). */
#define GIT_VERSION_VAR "k8s.io/component-base/version.gitVersion"

/*
 * The version a Go binary carries, read from the file: the -X of GIT_VERSION_VAR in its build
 * information when the go command recorded -ldflags (not under -trimpath), else the -X stamps
 * found in its data. Nothing is run.
 */
static int check_version(struct imgf_step *s, const char *path, const char *version,
			 struct imgf_error **err)
{
	struct imgf_go_binary b;
	if (imgf_go_binary_read(path, &b, err) < 0)
		return -1;
	int r = 0;
	const char *arch = kubesrc_arch(s);
	_cleanup_free_ char *x =
		b.bi.ldflags ? imgf_go_ldflags_x(b.bi.ldflags, GIT_VERSION_VAR) : NULL;
	bool found = false;
	for (size_t i = 0; !x && b.stamps[i]; i++)
		found = found || !strcmp(b.stamps[i], version);
	if ((b.bi.goos && strcmp(b.bi.goos, "linux")) ||
	    (b.bi.goarch && strcmp(b.bi.goarch, arch))) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'%s' is built for GOOS=%s GOARCH=%s (its Go build "
				   "information), expected linux/%s",
				   path, b.bi.goos ? b.bi.goos : "?",
				   b.bi.goarch ? b.bi.goarch : "?", arch);
	} else if (x && strcmp(x, version)) {
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'%s' carries version '%s' (-X %s in its Go build information), "
				   "expected '%s' (kubernetes_semver)",
				   path, x, GIT_VERSION_VAR, version);
	} else if (x || found) {
		log_info("%s: %s: version %s (%s, %s; read from the file, not run)", s->label,
			 path_basename(path), version,
			 x ? "-X " GIT_VERSION_VAR " in its Go build information"
			   : "its -X version stamp",
			 b.bi.go_version);
	} else if (b.stamps[0]) {
		struct strbuf got = STRBUF_INIT;
		for (size_t i = 0; b.stamps[i]; i++)
			strbuf_addf(&got, "%s'%s'", i ? ", " : "", b.stamps[i]);
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'%s' carries version %s (its -X version stamp), expected '%s' "
				   "(kubernetes_semver)",
				   path, got.buf, version);
		strbuf_release(&got);
	} else {
		r = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"'%s' carries no version: expected '-X %s=%s' in its Go build "
			"information or a -X version stamp in its data (Kubernetes' "
			"make and hack/kube-from-source.sh set it); imgforge does not run "
			"a binary on the host to ask it",
			path, GIT_VERSION_VAR, version);
	}
	imgf_go_binary_release(&b);
	return r;
}

int kubesrc_check_binary(struct imgf_step *s, const char *path, const char *version,
			 bool want_static, struct imgf_error **err)
{
	const char *arch = NULL;
	bool dynamic = false;
	if (elf_info(path, &arch, &dynamic, err) < 0)
		return -1;
	if (!arch || strcmp(arch, kubesrc_arch(s)))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is built for %s, expected %s",
				      path, arch ? arch : "an unknown machine", kubesrc_arch(s));
	if (want_static && dynamic)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s' is dynamically linked; an image made of it alone would "
				      "not run (build it with CGO_ENABLED=0, as Kubernetes' "
				      "release does)",
				      path);
	return check_version(s, path, version, err);
}
