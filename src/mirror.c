/* imgforge mirror (mirror.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aptlock.h"
#include "build.h"
#include "checksum.h"
#include "config.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "lock.h"
#include "log.h"
#include "mirror.h"
#include "provisioner.h"
#include "registry.h"
#include "strbuf.h"
#include "util.h"

#define LIST_MAX (16u << 20) /* a checksum list larger than this is refused */

struct mirror {
	const struct imgf_config *config;
	char *dir;     /* absolute */
	json_t *index; /* key (URL or reference) -> sha256 of the mirrored file */
	json_t *vars;  /* the var file's variables */
	json_t *regs;  /* registry -> file:// mirror */
	json_t *lock;  /* the lock of the mirrored packages: {"imgforge_lock", "images"} */
	size_t fetched, kept;
};

/*
 * Where "SCHEME://" is in s (*scheme: the scheme's first letter) and what follows it,
 * slashes and userinfo skipped: "file:///srv/x" -> "srv/x", "https://u:tok@h/x" -> "h/x"
 * (credentials become no directory name, no vars.json value). NULL when s holds no "://".
 */
static const char *after_scheme(const char *s, const char **scheme)
{
	const char *p = strstr(s, "://");
	if (!p)
		return NULL;
	const char *start = p;
	while (start > s &&
	       ((start[-1] >= 'a' && start[-1] <= 'z') || (start[-1] >= 'A' && start[-1] <= 'Z')))
		start--;
	if (scheme)
		*scheme = start;
	p += 3;
	while (*p == '/')
		p++;
	const char *at = memrchr(p, '@', strcspn(p, "/?#"));
	return at ? at + 1 : p;
}

/* A URL as index.json knows it: without its userinfo. */
static char *index_key(const char *url)
{
	const char *p = strstr(url, "://");
	const char *at = p ? memrchr(p + 3, '@', strcspn(p + 3, "/?#")) : NULL;
	return at ? xasprintf("%.*s%s", (int)(p + 3 - url), url, at + 1) : xstrdup(url);
}

static void index_set(json_t *index, const char *url, const char *sha256)
{
	_cleanup_free_ char *key = index_key(url);
	json_object_set_new(index, key, json_string(sha256));
}

/* The part of a URL after "SCHEME://", refused when it could leave DIR/files. */
static int url_rest(const char *url, const char **rest, struct imgf_error **err)
{
	const char *p = after_scheme(url, NULL);
	if (!p)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is not a URL", url);
	if (!*p || strpbrk(p, "?#") || strstr(p, "/../") || str_has_prefix(p, "../") ||
	    str_has_suffix(p, "/..") || strstr(p, "//"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s' cannot be mirrored as a file (a query, '..' or an "
				      "empty path)",
				      url);
	*rest = p;
	return 0;
}

static char *mirror_path(const struct mirror *m, const char *rest)
{
	return xasprintf("%s/files/%s", m->dir, rest);
}

/* A variable's value with its URL (after any "file:" list prefix) pointed at the mirror. */
static char *mapped_value(const struct mirror *m, const char *value)
{
	const char *start;
	const char *rest = after_scheme(value, &start);
	if (!rest)
		return NULL;
	return xasprintf("%.*sfile://%s/files/%s", (int)(start - value), value, m->dir, rest);
}

/* "variable 'NAME'" -> NAME (newly allocated), else NULL. */
static char *origin_var(const char *origin)
{
	if (!origin || !str_has_prefix(origin, "variable '"))
		return NULL;
	const char *n = origin + strlen("variable '");
	return xstrndup(n, strcspn(n, "'"));
}

/* Point the variable an input's URL (or checksum list) came from at the mirror. */
static void point_var(struct mirror *m, const char *origin)
{
	_cleanup_free_ char *var = origin_var(origin);
	const char *value = var ? imgf_config_var(m->config, var) : NULL;
	_cleanup_free_ char *mapped = value ? mapped_value(m, value) : NULL;
	if (mapped)
		json_object_set_new(m->vars, var, json_string(mapped));
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t k = write(fd, buf, len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		buf += k;
		len -= (size_t)k;
	}
	return 0;
}

static int copy_file(const char *from, const char *to, struct imgf_error **err)
{
	_cleanup_free_ char *parent = path_dirname(to);
	if (mkdir_p(parent, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *tmp = NULL;
	int out = make_temp_file(parent, path_basename(to), &tmp, err);
	if (out < 0)
		return -1;
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int r = in < 0 ? imgf_error_errno(err, errno, "open '%s'", from) : 0;
	char buf[1 << 16];
	ssize_t k;
	while (r == 0 && (k = read(in, buf, sizeof(buf))) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 || write_all(out, buf, (size_t)k) < 0)
			r = imgf_error_errno(err, errno, "copy '%s' to '%s'", from, tmp);
	}
	if (in >= 0)
		close(in);
	if (close(out) < 0 && r == 0)
		r = imgf_error_errno(err, errno, "close '%s'", tmp);
	if (r == 0 && chmod(tmp, 0644) < 0)
		r = imgf_error_errno(err, errno, "chmod '%s'", tmp);
	if (r == 0 && rename(tmp, to) < 0)
		r = imgf_error_errno(err, errno, "rename '%s' to '%s'", tmp, to);
	if (r < 0)
		unlink(tmp);
	return r;
}

/* Whether the index says `key` is at `path` and the file still hashes the same. */
static bool present(struct mirror *m, const char *url, const char *path)
{
	_cleanup_free_ char *key = index_key(url);
	const char *want = json_string_value(json_object_get(m->index, key));
	char hex[IMGF_DIGEST_HEX_MAX];
	struct imgf_error *e = NULL;
	if (!want || imgf_digest_file(path, IMGF_SHA256, hex, &e) < 0) {
		imgf_error_free(e);
		return false;
	}
	return !strcmp(hex, want);
}

static int record(struct mirror *m, const char *key, const char *path, struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	if (imgf_digest_file(path, IMGF_SHA256, hex, err) < 0)
		return -1;
	index_set(m->index, key, hex);
	return 0;
}

/* A checksum list the input's checksum names, copied beside the mirrored file. */
static int mirror_list(struct mirror *m, struct imgf_build *b, const struct imgf_input *in,
		       struct imgf_error **err)
{
	struct imgf_checksum ck;
	if (imgf_checksum_parse(in->checksum, &ck, err) < 0)
		return -1;
	int r = 0;
	const char *rest;
	if (ck.is_list && (r = url_rest(ck.url, &rest, err)) == 0) {
		_cleanup_free_ char *path = mirror_path(m, rest);
		if (!present(m, ck.url, path)) {
			struct strbuf sb = STRBUF_INIT;
			_cleanup_free_ char *parent = path_dirname(path);
			r = imgf_fetch_to_buffer(ck.url, LIST_MAX, &b->fetch, &sb, err);
			if (r == 0)
				r = mkdir_p(parent, 0755, err);
			if (r == 0)
				r = write_file_atomic(path, sb.buf, sb.len, 0644, err);
			if (r == 0)
				r = record(m, ck.url, path, err);
			strbuf_release(&sb);
		}
	}
	imgf_checksum_release(&ck);
	return r;
}

static int mirror_inputs(struct mirror *m, struct imgf_build *b, struct imgf_input *ins, size_t n,
			 struct imgf_error **err)
{
	for (size_t i = 0; i < n; i++) {
		struct imgf_input *in = &ins[i];
		if (in->own_record)
			continue; /* a locked .deb: mirror_debs */
		const char *rest;
		if (url_rest(in->url, &rest, err) < 0)
			return imgf_error_prefix(err, "input '%s'", in->name);
		_cleanup_free_ char *path = mirror_path(m, rest);
		point_var(m, in->origin);
		point_var(m, in->checksum_origin);
		if (present(m, in->url, path)) {
			m->kept++;
			/* Verified where it lies (a later step may read it: the images step's
			 * kubeadm). */
			if (!in->path)
				in->path = xstrdup(path);
			if (mirror_list(m, b, in, err) < 0)
				return imgf_error_prefix(err, "input '%s'", in->name);
			continue;
		}
		if (imgf_fetch_all(in, 1, &b->fetch, err) < 0 ||
		    copy_file(in->path, path, err) < 0 || mirror_list(m, b, in, err) < 0)
			return imgf_error_prefix(err, "input '%s'", in->name);
		index_set(m->index, in->url, in->sha256);
		m->fetched++;
		log_info("mirror: %s -> %s", in->url, path);
	}
	return 0;
}

/* The builder's own download (the qemu builder's base image), as an input. */
static int mirror_builder(struct mirror *m, struct imgf_build *b, struct imgf_error **err)
{
	const char *url = imgf_cfg_str(b->builder_cfg, "base_image_url", NULL);
	const char *ck = imgf_cfg_str(b->builder_cfg, "base_image_checksum", NULL);
	if (!url || !ck || url[0] == '/' || str_has_prefix(url, "file://"))
		return 0;
	json_t *raw = json_object_get(b->def->raw, "builder");
	_cleanup_free_ char *uvar = imgf_template_first_var(
		json_string_value(json_object_get(raw, "base_image_url")) ?: "");
	_cleanup_free_ char *cvar = imgf_template_first_var(
		json_string_value(json_object_get(raw, "base_image_checksum")) ?: "");
	struct imgf_input in = {
		.name = xstrdup("base image"),
		.url = xstrdup(url),
		.checksum = xstrdup(ck),
		.origin = uvar ? xasprintf("variable '%s'", uvar) : NULL,
		.checksum_origin = cvar ? xasprintf("variable '%s'", cvar) : NULL,
	};
	int r = mirror_inputs(m, b, &in, 1, err);
	imgf_input_release(&in);
	return r;
}

static int mirror_images(struct mirror *m, struct imgf_build *b, struct imgf_step *s,
			 struct imgf_error **err)
{
	if (!s->ops->pulls)
		return 0;
	json_t *mirrors = NULL;
	char **refs = s->ops->pulls(s, &mirrors, err);
	if (!refs)
		return -1;
	const char *arch = imgf_cfg_str(s->cfg, "arch", NULL);
	if (!arch)
		arch = b->contract->arch;
	int r = 0;
	for (size_t i = 0; refs[i] && r == 0; i++) {
		struct imgf_image_ref ref;
		if ((r = imgf_image_ref_parse(refs[i], &ref, err)) < 0)
			break;
		_cleanup_free_ char *path =
			ref.tag ? xasprintf("%s/images/%s/%s/%s.tar", m->dir, ref.registry,
					    ref.repository, ref.tag)
				: NULL;
		_cleanup_free_ char *local = xasprintf("file://%s/images/%s", m->dir, ref.registry);
		json_object_set_new(m->regs, ref.registry, json_string(local));
		if (!path) {
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "image '%s': a reference without a tag cannot be "
					   "mirrored",
					   refs[i]);
		} else if (present(m, ref.full, path)) {
			m->kept++;
		} else {
			_cleanup_free_ char *parent = path_dirname(path);
			const char *via = json_string_value(json_object_get(mirrors, ref.registry));
			char digest[72] = "";
			r = mkdir_p(parent, 0755, err);
			if (r == 0)
				r = imgf_registry_pull_oci(refs[i], via, arch ? arch : "amd64",
							   &b->fetch, path, digest, err);
			if (r == 0)
				r = record(m, ref.full, path, err);
			if (r == 0) {
				m->fetched++;
				log_info("mirror: %s (%s) -> %s", ref.full, digest, path);
			}
		}
		imgf_image_ref_release(&ref);
	}
	strv_free(refs);
	json_decref(mirrors);
	return r;
}

/*
 * The distro packages of a build: the lock's entries for its steps (the lock given, or one
 * resolved now as `imgforge lock` does), each .deb fetched from the archive, verified by
 * sha256 and kept in DIR/debs at its archive path.
 */
static int mirror_debs(struct mirror *m, struct imgf_build *b, struct imgf_error **err)
{
	bool locking = false;
	const char *locked = NULL; /* the lock given */
	for (size_t k = 0; k < b->nsteps; k++) {
		locking = locking || b->steps[k].ops->lock;
		if (json_object_get(b->steps[k].staged, "entry"))
			locked = json_string_value(json_object_get(b->steps[k].staged, "lock"));
	}
	if (!locking)
		return 0;
	json_t *img;
	if (locked) {
		img = json_pack("{s:[],s:[]}", "archives", "steps");
		for (size_t k = 0; k < b->nsteps; k++) {
			json_t *st = b->steps[k].staged;
			if (!json_object_get(st, "entry"))
				continue;
			json_array_append(json_object_get(img, "steps"),
					  json_object_get(st, "entry"));
			json_object_set(img, "archives", json_object_get(st, "archives"));
		}
		log_info("mirror: %s: the packages of the lock '%s'", b->def->name, locked);
	} else {
		json_t *doc = json_pack("{s:i,s:{}}", "imgforge_lock", IMGF_LOCK_VERSION, "images");
		if (imgf_lock_builds(b, 1, doc, err) < 0) {
			json_decref(doc);
			return -1;
		}
		img = json_incref(json_object_get(json_object_get(doc, "images"), b->def->name));
		json_decref(doc);
		if (!img)
			return 0;
	}
	json_object_set_new(json_object_get(m->lock, "images"), b->def->name, img);
	/* what is not there yet, fetched at once */
	size_t cap = 0, n = 0;
	struct imgf_input *ins = NULL;
	char **paths = NULL;
	size_t i, j;
	json_t *step, *p;
	json_array_foreach(json_object_get(img, "steps"), i, step)
	{
		json_array_foreach(json_object_get(step, "packages"), j, p)
		{
			const char *url = json_string_value(json_object_get(p, "url"));
			char *path = xasprintf("%s/debs/%s", m->dir,
					       json_string_value(json_object_get(p, "filename")));
			if (present(m, url, path)) {
				m->kept++;
				free(path);
				continue;
			}
			ALLOC_GROW(ins, n + 1, cap);
			paths = xrealloc(paths, (n + 1) * sizeof(*paths));
			ins[n] = (struct imgf_input){
				.name = xasprintf(
					"deb:%s:%s",
					json_string_value(json_object_get(p, "package")),
					json_string_value(json_object_get(p, "architecture"))),
				.url = xstrdup(url),
				.checksum =
					xasprintf("sha256:%s",
						  json_string_value(json_object_get(p, "sha256"))),
			};
			paths[n++] = path;
		}
	}
	int r = n ? imgf_fetch_all(ins, n, &b->fetch, err) : 0;
	for (size_t k = 0; k < n; k++) {
		if (r == 0 && (r = copy_file(ins[k].path, paths[k], err)) == 0) {
			index_set(m->index, ins[k].url, ins[k].sha256);
			m->fetched++;
			log_info("mirror: %s -> %s", ins[k].url, paths[k]);
		}
		imgf_input_release(&ins[k]);
		free(paths[k]);
	}
	free(ins);
	free(paths);
	return r < 0 ? imgf_error_prefix(err, "%s: distro packages", b->def->name) : 0;
}

/*
 * DIR/imgforge.lock (the images mirrored now over those of earlier runs) and DIR/debs as an
 * apt repository of every .deb it names, each checked against its sha256 and control.
 */
static int write_debs(struct mirror *m, struct imgf_error **err)
{
	_cleanup_free_ char *lpath = path_join(m->dir, "imgforge.lock");
	json_t *old = NULL;
	struct imgf_error *e = NULL;
	if (access(lpath, F_OK) == 0 && imgf_aptlock_load(lpath, &old, &e) < 0) {
		log_warn("mirror: the earlier '%s' is replaced: %s", lpath, e->msg);
		imgf_error_free(e);
	}
	json_t *images = json_object_get(old, "images");
	if (images)
		json_object_update(images, json_object_get(m->lock, "images"));
	json_t *doc = old ? old : json_incref(m->lock);
	json_t *debs = json_array(), *seen = json_object();
	const char *name;
	json_t *img;
	json_object_foreach(json_object_get(doc, "images"), name, img)
	{
		size_t i, j;
		json_t *step, *p;
		json_array_foreach(json_object_get(img, "steps"), i, step)
		{
			json_array_foreach(json_object_get(step, "packages"), j, p)
			{
				const char *fn = json_string_value(json_object_get(p, "filename"));
				if (json_object_get(seen, fn))
					continue;
				json_object_set_new(seen, fn, json_true());
				json_t *d = json_deep_copy(p);
				json_object_set_new(d, "path", json_string(fn));
				json_array_append_new(debs, d);
			}
		}
	}
	_cleanup_free_ char *dir = path_join(m->dir, "debs");
	_cleanup_free_ char *text = imgf_aptlock_dump(doc);
	int r = mkdir_p(dir, 0755, err);
	if (r == 0)
		r = imgf_aptrepo_write(dir, debs, true, err);
	if (r == 0)
		r = write_file_atomic(lpath, text, strlen(text), 0644, err);
	if (r == 0) {
		_cleanup_free_ char *url = xasprintf("file://%s", dir);
		json_object_set_new(m->vars, "packages_lock", json_string(lpath));
		json_object_set_new(m->vars, "packages_mirror", json_string(url));
		/* nothing a build does needs the network now: the build containers and the
		 * libguestfs appliance get none */
		json_object_set_new(m->vars, "docker_network", json_string("none"));
		json_object_set_new(m->vars, "qemu_network", json_string("false"));
		log_info("mirror: %zu package(s) in the apt repository %s (lock %s)",
			 json_array_size(debs), dir, lpath);
	}
	json_decref(debs);
	json_decref(seen);
	json_decref(doc);
	return r < 0 ? imgf_error_prefix(err, "mirror: distro packages") : 0;
}

int imgf_mirror_builds(const struct imgf_config *c, struct imgf_build *builds, size_t n,
		       const char *dir, struct imgf_error **err)
{
	char abs[PATH_MAX];
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	if (!realpath(dir, abs))
		return imgf_error_errno(err, errno, "mirror directory '%s'", dir);
	struct mirror m = {
		.config = c,
		.dir = abs,
		.regs = json_object(),
		.lock = json_pack("{s:i,s:{}}", "imgforge_lock", IMGF_LOCK_VERSION, "images"),
	};
	/* Several configs (or runs) into one directory: their variables add up. */
	_cleanup_free_ char *vpath = path_join(abs, "vars.json");
	json_error_t verr;
	json_t *old = json_load_file(vpath, 0, &verr);
	m.vars = json_deep_copy(json_object_get(old, "variables"));
	json_decref(old);
	if (!json_is_object(m.vars)) {
		json_decref(m.vars);
		m.vars = json_object();
	}
	_cleanup_free_ char *index_path = path_join(abs, "index.json");
	json_error_t jerr;
	json_t *old_index = json_load_file(index_path, 0, &jerr);
	m.index = json_object();
	const char *url;
	json_t *sha;
	/* an older imgforge kept the userinfo in its keys */
	json_object_foreach(old_index, url, sha)
	{
		if (json_is_string(sha))
			index_set(m.index, url, json_string_value(sha));
	}
	json_decref(old_index);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		struct imgf_build *b = &builds[i];
		r = mirror_builder(&m, b, err);
		for (size_t k = 0; k < b->nsteps && r == 0; k++) {
			r = mirror_inputs(&m, b, b->steps[k].inputs, b->steps[k].ninputs, err);
			if (r == 0)
				r = mirror_images(&m, b, &b->steps[k], err);
			if (r < 0)
				imgf_error_prefix(err, "%s: %s", b->def->name, b->steps[k].where);
		}
		/* last: resolving may start a target, after every cheaper check has passed */
		if (r == 0)
			r = mirror_debs(&m, b, err);
	}
	/* The index is written even after a failure: what was mirrored stays known. */
	_cleanup_free_ char *itext = json_dumps(m.index, JSON_INDENT(2) | JSON_SORT_KEYS);
	struct imgf_error *e = NULL;
	if (write_file_atomic(index_path, itext, strlen(itext), 0644, r == 0 ? err : &e) < 0 &&
	    r == 0)
		r = -1;
	imgf_error_free(e);
	if (r == 0 && json_object_size(json_object_get(m.lock, "images")))
		r = write_debs(&m, err);
	if (r == 0 && json_object_size(m.regs)) {
		json_t *all = json_loads(
			json_string_value(json_object_get(m.vars, "registry_mirrors")) ?: "{}", 0,
			&verr);
		if (!json_is_object(all)) {
			json_decref(all);
			all = json_object();
		}
		json_object_update(all, m.regs);
		_cleanup_free_ char *regs = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(all);
		json_object_set_new(m.vars, "registry_mirrors", json_string(regs));
	}
	if (r == 0) {
		json_t *doc = json_pack("{s:O}", "variables", m.vars);
		_cleanup_free_ char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
		json_decref(doc);
		r = write_file_atomic(vpath, text, strlen(text), 0644, err);
		if (r == 0) {
			log_info("mirror: %zu fetched, %zu already there; use --var-file %s",
				 m.fetched, m.kept, vpath);
			imgf_event("mirror",
				   json_pack("{s:s,s:I,s:I}", "vars", vpath, "fetched",
					     (json_int_t)m.fetched, "kept", (json_int_t)m.kept),
				   NULL);
		}
	}
	json_decref(m.index);
	json_decref(m.vars);
	json_decref(m.regs);
	json_decref(m.lock);
	return r;
}
