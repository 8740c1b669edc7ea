/* Kubernetes files from a release tree, a server tarball or a local build (kubesrc.h): what
 * the sources share, and the table that picks one (kubesrc-internal.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "common.h"
#include "config.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "gobuildinfo.h"
#include "kubesrc-internal.h"
#include "kubesrc.h"
#include "log.h"
#include "provisioner.h"
#include "strbuf.h"
#include "util.h"

static const struct kubesrc_ops *const sources[] = {
	&kubesrc_release,
	&kubesrc_tarball,
	&kubesrc_local,
};

static const char *source_name(const struct imgf_step *s)
{
	return imgf_cfg_str(s->cfg, "kubernetes_source", "release");
}

/* The step's source (release when the name is unknown: validate refuses that first). */
static const struct kubesrc_ops *source_of(const struct imgf_step *s)
{
	const char *t = source_name(s);
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (!strcmp(sources[i]->name, t))
			return sources[i];
	return &kubesrc_release;
}

enum kubesrc_type kubesrc_type_of(const struct imgf_step *s)
{
	return source_of(s)->type;
}

bool kubesrc_reads_host(const struct imgf_step *s, const char *key)
{
	const struct kubesrc_ops *own = source_of(s);
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (sources[i]->host_key && !strcmp(sources[i]->host_key, key))
			return sources[i] == own;
	return true;
}

int kubesrc_validate(struct imgf_step *s, const char *const *need, const char *const *may,
		     struct imgf_error **err)
{
	const char *t = source_name(s);
	const struct kubesrc_ops *ops = source_of(s);
	if (strcmp(ops->name, t)) {
		struct strbuf known = STRBUF_INIT;
		for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
			strbuf_addf(&known, "%s'%s'", i ? ", " : "", sources[i]->name);
		imgf_error_set(err, IMGF_EXIT_FAIL,
			       "kubernetes_source: unknown source '%s' (known: %s)", t, known.buf);
		strbuf_release(&known);
		return -1;
	}
	if (!str_is_shell_word(kubesrc_arch(s)))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "arch: '%s' is not valid",
				      kubesrc_arch(s));
	(void)may;
	return ops->validate(s, need, err);
}

void kubesrc_inputs(struct imgf_step *s, const char *const *names)
{
	source_of(s)->inputs(s, names);
}

json_t *kubesrc_stage(struct imgf_step *s, const char *const *need, const char *const *may,
		      struct imgf_error **err)
{
	json_t *out = json_object();
	if (source_of(s)->stage(s, need, may, out, err) == 0)
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
