/*
 * packages: install distro packages with apt or dnf (detected), record each .deb (name,
 * version, architecture, sha256, archive) in the manifest's inputs, then clean the lists.
 *
 * With a lock (key `lock`, else variable packages_lock; see src/aptlock.h) the step installs
 * exactly what the lock says for it: every locked .deb is an input, fetched and verified
 * against the locked sha256 on the host before the target exists (from the archive's URL, or
 * from `mirror` / packages_mirror, a directory `imgforge mirror` filled), then put into the
 * target as a local apt repository that apt installs from, with no network. Without a lock,
 * the step's cache key holds the sha256 of the archive's Release files (`release_urls`, else
 * variable apt_release_urls), fetched each build: a changed archive runs the step again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aptlock.h"
#include "archive.h"
#include "build.h"
#include "common.h"
#include "config.h"
#include "digest.h"
#include "error.h"
#include "fetch.h"
#include "fsutil.h"
#include "log.h"
#include "provisioner.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

static const struct imgf_key packages_keys[] = {
	{"packages", IMGF_KEY_STRING_LIST, true},
	{"manager", IMGF_KEY_STRING, false}, /* auto (default), apt, dnf */
	{"update", IMGF_KEY_BOOL, false},    /* refresh lists before installing (default true) */
	{"clean", IMGF_KEY_BOOL, false},     /* remove caches and lists afterwards (default true) */
	{"lock", IMGF_KEY_STRING, false},    /* a lock file (default: variable packages_lock) */
	{"mirror", IMGF_KEY_STRING, false},  /* where the locked .debs are (packages_mirror) */
	{"release_urls", IMGF_KEY_STRING, false}, /* Release files for the cache key */
	{NULL, 0, false},
};

#define RELEASE_MAX (64u << 20)
#define RELEASE_TIMEOUT_S 30L
#define REPO_REL "var/lib/imgforge-repo"
#define REPO "/" REPO_REL

/* Entries may hold several names separated by spaces, so one variable can carry a list. */
static char **words(char **raw)
{
	char **v = xcalloc(1, sizeof(*v));
	for (size_t i = 0; raw && raw[i]; i++) {
		char *save = NULL;
		for (char *w = strtok_r(raw[i], " \t\n", &save); w;
		     w = strtok_r(NULL, " \t\n", &save))
			v = strv_push(v, xstrdup(w));
	}
	return v;
}

static char **package_list(const struct imgf_step *s)
{
	_cleanup_strv_ char **raw = imgf_cfg_strv(s->cfg, "packages");
	return words(raw);
}

/* The step's key, else the variable; NULL when neither is set or it is empty. */
static const char *key_or_var(const struct imgf_step *s, const char *key, const char *var)
{
	const char *v = imgf_cfg_str(s->cfg, key, NULL);
	if (!v)
		v = imgf_step_var(s, var);
	return v && *v ? v : NULL;
}

static const char *lock_file(const struct imgf_step *s)
{
	return key_or_var(s, "lock", "packages_lock");
}

static int packages_validate(struct imgf_step *s, struct imgf_error **err)
{
	const char *m = imgf_cfg_str(s->cfg, "manager", "auto");
	if (strcmp(m, "auto") && strcmp(m, "apt") && strcmp(m, "dnf"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "manager: '%s' is not one of 'auto', 'apt', 'dnf'", m);
	if (lock_file(s) && !strcmp(m, "dnf"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "lock: only apt packages can be locked (manager is 'dnf')");
	_cleanup_strv_ char **pkgs = package_list(s);
	_cleanup_free_ char *script = NULL;
	return prov_packages_script(pkgs, true, true, m, &script, err);
}

static const char *str_of(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static char *input_name(json_t *p)
{
	return xasprintf("deb:%s:%s", str_of(p, "package"), str_of(p, "architecture"));
}

/*
 * With a lock: the lock's entry for this step (kept in s->staged) and every locked .deb as
 * an input. A package of the config that the lock does not know fails here, before anything
 * is fetched or built.
 */
static int packages_inputs(struct imgf_step *s, struct imgf_error **err)
{
	const char *path = lock_file(s);
	if (!path)
		return 0;
	json_t *doc = NULL;
	if (imgf_aptlock_load(path, &doc, err) < 0)
		return -1;
	const char *image = s->build->def->name;
	json_t *entry = imgf_aptlock_step(doc, image, s->index);
	if (!entry) {
		json_decref(doc);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "lock '%s' has no entry for image '%s' step %zu: the lock "
				      "does not match the config; run `imgforge lock` again",
				      path, image, s->index);
	}
	_cleanup_strv_ char **pkgs = package_list(s);
	if (imgf_aptlock_covers(entry, pkgs, path, image, err) < 0) {
		json_decref(doc);
		return -1;
	}
	const char *mirror = key_or_var(s, "mirror", "packages_mirror");
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(entry, "packages"), i, p)
	{
		_cleanup_free_ char *name = input_name(p);
		_cleanup_free_ char *url =
			mirror ? xasprintf("%.*s/%s",
					   (int)(strlen(mirror) - str_has_suffix(mirror, "/")),
					   mirror, str_of(p, "filename"))
			       : xstrdup(str_of(p, "url"));
		_cleanup_free_ char *ck = xasprintf("sha256:%s", str_of(p, "sha256"));
		struct imgf_input *in = imgf_step_add_input(s, name, url, ck, NULL, NULL);
		in->own_record = true;
		in->origin = mirror ? xstrdup(imgf_cfg_str(s->cfg, "mirror", NULL)
						      ? "key 'mirror'"
						      : "variable 'packages_mirror'")
				    : xasprintf("lock '%s'", path);
	}
	json_decref(s->staged);
	s->staged = json_pack("{s:s,s:O,s:O}", "lock", path, "entry", entry, "archives",
			      imgf_aptlock_archives(doc, image));
	json_decref(doc);
	return 0;
}

/* Without a lock: the archive's Release files, fetched now, by sha256. */
static int packages_cache_key(const struct imgf_step *s, json_t **extra, struct imgf_error **err)
{
	json_t *entry = json_object_get(s->staged, "entry");
	if (entry) {
		_cleanup_free_ char *e = imgf_aptlock_digest(entry);
		_cleanup_free_ char *a =
			imgf_aptlock_digest(json_object_get(s->staged, "archives"));
		*extra = json_pack("{s:s,s:s}", "lock", e, "archives", a);
		return 0;
	}
	const char *urls = key_or_var(s, "release_urls", "apt_release_urls");
	if (!urls)
		return 0;
	_cleanup_free_ char *copy = xstrdup(urls);
	char *raw[] = {copy, NULL};
	_cleanup_strv_ char **list = words(raw);
	/* one attempt, a short wait: an archive that does not answer only costs the cache */
	struct imgf_fetch_opts o = s->build->fetch;
	o.max_attempts = 1;
	o.timeout_s = RELEASE_TIMEOUT_S;
	json_t *rel = json_object();
	for (size_t i = 0; list[i]; i++) {
		struct strbuf sb = STRBUF_INIT;
		struct imgf_error *e = NULL;
		if (imgf_fetch_to_buffer(list[i], RELEASE_MAX, &o, &sb, &e) < 0) {
			/* Not known: the step is not taken from the cache (it runs, and says
			 * what apt makes of the archive). */
			log_warn("%s: the archive's Release '%s' cannot be fetched (%s): the step "
				 "runs again",
				 s->label, list[i], e->msg);
			imgf_error_free(e);
			static unsigned seq;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			json_object_set_new(rel, list[i],
					    json_sprintf("unknown:%lld.%09ld:%d:%u",
							 (long long)ts.tv_sec, ts.tv_nsec,
							 (int)getpid(), ++seq));
		} else {
			char hex[IMGF_DIGEST_HEX_MAX];
			imgf_digest_buffer(IMGF_SHA256, sb.buf, sb.len, hex);
			log_debug("%s: Release '%s' is sha256:%s", s->label, list[i], hex);
			json_object_set_new(rel, list[i], json_string(hex));
		}
		strbuf_release(&sb);
	}
	(void)err;
	*extra = json_pack("{s:o}", "release", rel);
	return 0;
}

/* Put the verified .debs and their index into the target as a flat apt repository. */
static int put_repo(struct imgf_step *s, struct imgf_target *t, json_t *pkgs,
		    struct imgf_error **err)
{
	_cleanup_free_ char *dir = xasprintf("%s/aptrepo-%zu", s->build->stage_dir, s->index);
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	json_t *debs = json_array();
	int r = 0;
	size_t i;
	json_t *p;
	json_array_foreach(pkgs, i, p)
	{
		_cleanup_free_ char *name = input_name(p);
		const struct imgf_input *in = imgf_step_input(s, name);
		const char *base = path_basename(str_of(p, "filename"));
		_cleanup_free_ char *link = path_join(dir, base);
		if (!in || !in->path) {
			r = imgf_error_set(err, IMGF_EXIT_FAIL, "package '%s': not fetched",
					   str_of(p, "package"));
			break;
		}
		unlink(link);
		if (symlink(in->path, link) < 0) {
			r = imgf_error_errno(err, errno, "symlink '%s'", link);
			break;
		}
		json_array_append_new(debs, json_pack("{s:s,s:s,s:s,s:s,s:s}", "package",
						      str_of(p, "package"), "version",
						      str_of(p, "version"), "architecture",
						      str_of(p, "architecture"), "sha256",
						      str_of(p, "sha256"), "path", base));
	}
	if (r == 0)
		r = imgf_aptrepo_write(dir, debs, false, err);
	char *path = NULL;
	struct imgf_tar *w = r == 0 ? prov_tar_new(s, t, &path, err) : NULL;
	if (!w) {
		json_decref(debs);
		rm_rf(dir, NULL);
		return -1;
	}
	static const char sources[] = "deb [trusted=yes] file:" REPO " ./\n";
	r = imgf_tar_add_dir(w, REPO_REL, 0755, 0, 0, err);
	if (r == 0)
		r = imgf_tar_add_data(w, sources, strlen(sources), REPO_REL "/sources.list", 0644,
				      0, 0, err);
	static const char *const index[] = {"Packages", "Release"};
	for (size_t k = 0; k < ARRAY_SIZE(index) && r == 0; k++) {
		_cleanup_free_ char *from = path_join(dir, index[k]);
		_cleanup_free_ char *to = xasprintf("%s/%s", REPO_REL, index[k]);
		r = imgf_tar_add_file(w, from, to, 0644, 0, 0, err);
	}
	json_array_foreach(debs, i, p)
	{
		if (r < 0)
			break;
		_cleanup_free_ char *from = path_join(dir, str_of(p, "path"));
		_cleanup_free_ char *to = xasprintf("%s/%s", REPO_REL, str_of(p, "path"));
		r = imgf_tar_add_file(w, from, to, 0644, 0, 0, err);
	}
	json_decref(debs);
	r = prov_tar_put(w, path, t, r, err);
	rm_rf(dir, NULL);
	return r;
}

/* The lock's packages, installed from the repository put_repo made, then checked. */
static int locked_install(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	json_t *entry = json_object_get(s->staged, "entry");
	json_t *pkgs = json_object_get(entry, "packages");
	const char *lock = str_of(s->staged, "lock");
	if (!json_array_size(pkgs)) {
		log_info("%s: the lock '%s' installs nothing here (the base has every package)",
			 s->label, lock);
		return 0;
	}
	if (put_repo(s, t, pkgs, err) < 0)
		return imgf_error_prefix(err, "the locked packages' repository");
	struct strbuf want = STRBUF_INIT, autos = STRBUF_INIT, names = STRBUF_INIT;
	_cleanup_strv_ char **requested = package_list(s);
	size_t i;
	json_t *p;
	json_array_foreach(pkgs, i, p)
	{
		const char *name = str_of(p, "package");
		strbuf_addf(&want, " %s=%s", name, str_of(p, "version"));
		strbuf_addf(&names, " %s", name);
		bool req = false;
		for (size_t k = 0; requested[k] && !req; k++)
			req = !strncmp(requested[k], name, strcspn(requested[k], "=")) &&
			      strlen(name) == strcspn(requested[k], "=");
		if (!req)
			strbuf_addf(&autos, " %s", name);
	}
	/* Lock entries are checked (package names, versions: no shell syntax). */
	_cleanup_free_ char *script = xasprintf(
		"export DEBIAN_FRONTEND=noninteractive\n"
		"r=" REPO "\n"
		"o=\"-o Dir::Etc::SourceList=$r/sources.list -o Dir::Etc::SourceParts=$r/parts "
		"-o Dir::State::Lists=$r/lists -o Dir::Cache::Archives=$r/archives/ "
		"-o APT::Get::List-Cleanup=0\"\n"
		"mkdir -p $r/parts $r/lists/partial $r/archives/partial\n"
		"apt-get $o update -q\n"
		"echo 'installing the locked packages:%s'\n"
		"apt-get $o install -y -q --no-install-recommends --allow-downgrades%s\n"
		"%s%s%s"
		"rm -rf $r\n"
		"%s",
		want.buf, want.buf, autos.len ? "apt-mark auto" : "", autos.buf,
		autos.len ? " >/dev/null\n" : "",
		imgf_cfg_bool(s->cfg, "clean", true)
			? "apt-get clean; rm -rf /var/lib/apt/lists/*\n"
			: "rm -f /var/cache/apt/*.bin\n");
	int r = imgf_target_sh(t, s->label, script, NULL, err);
	_cleanup_free_ char *q = xasprintf(
		"dpkg-query -W -f='${Package}\\t${Version}\\t${Architecture}\\n'%s", names.buf);
	char *argv[] = {"/bin/sh", "-c", q, NULL};
	_cleanup_free_ char *out = NULL;
	if (r == 0)
		r = imgf_target_capture(t, s->label, argv, &out, err);
	strbuf_release(&want);
	strbuf_release(&autos);
	strbuf_release(&names);
	if (r < 0)
		return -1;
	/* What dpkg says is installed must be what the lock says, to the version. */
	json_array_foreach(pkgs, i, p)
	{
		_cleanup_free_ char *line =
			xasprintf("%s\t%s\t", str_of(p, "package"), str_of(p, "version"));
		bool ok = false;
		for (const char *l = out; l && *l && !ok;) {
			ok = str_has_prefix(l, line);
			l = strchr(l, '\n');
			l = l ? l + 1 : NULL;
		}
		if (!ok)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "package '%s': the lock '%s' says version '%s', dpkg "
					      "does not have it installed",
					      str_of(p, "package"), lock, str_of(p, "version"));
	}
	json_array_foreach(pkgs, i, p)
	{
		_cleanup_free_ char *name = input_name(p);
		json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kind", "deb", "name",
					name, "package", str_of(p, "package"), "version",
					str_of(p, "version"), "architecture",
					str_of(p, "architecture"), "sha256", str_of(p, "sha256"),
					"url", str_of(p, "url"), "archive", str_of(p, "archive"));
		imgf_build_record_package(s->build, rec);
	}
	log_info("%s: %zu locked package(s) installed, each verified by sha256 before", s->label,
		 json_array_size(pkgs));
	return 0;
}

static int packages_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	if (json_object_get(s->staged, "entry"))
		return locked_install(s, t, err);
	_cleanup_strv_ char **pkgs = package_list(s);
	return prov_packages_install(s, t, pkgs, imgf_cfg_bool(s->cfg, "update", true),
				     imgf_cfg_bool(s->cfg, "clean", true),
				     imgf_cfg_str(s->cfg, "manager", "auto"), err);
}

static int packages_lock(struct imgf_step *s, struct imgf_target *t, bool install, json_t **entry,
			 struct imgf_error **err)
{
	if (!strcmp(imgf_cfg_str(s->cfg, "manager", "auto"), "dnf"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "only apt packages can be locked (manager is 'dnf')");
	_cleanup_strv_ char **pkgs = package_list(s);
	_cleanup_free_ char *script = NULL;
	if (prov_packages_resolve_script(pkgs, install, &script, err) < 0)
		return -1;
	char *argv[] = {"/bin/sh", "-ec", script, NULL};
	_cleanup_free_ char *out = NULL;
	if (imgf_target_capture(t, s->label, argv, &out, err) < 0)
		return -1;
	json_t *e = NULL;
	if (prov_packages_resolve_parse(out, pkgs, &e, err) < 0)
		return -1;
	json_object_set_new(e, "step", json_integer((json_int_t)s->index));
	*entry = e;
	return 0;
}

const struct imgf_provisioner_ops imgf_packages_provisioner = {
	.name = "packages",
	.keys = packages_keys,
	.validate = packages_validate,
	.inputs = packages_inputs,
	.run = packages_run,
	.cache_key = packages_cache_key,
	.lock = packages_lock,
};
