/* The package lock and local apt repositories (aptlock.h). */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "aptlock.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "strbuf.h"
#include "util.h"

#define LOCK_MAX (64u << 20)	    /* a lock file larger than this is refused */
#define CONTROL_TAR_MAX (64u << 20) /* a .deb's control.tar */
#define CONTROL_MAX (1u << 20)	    /* its control file */

/* Debian's package name: [a-z0-9][a-z0-9+.-]+ */
static bool package_name_ok(const char *s)
{
	if (!s[0] || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("+.-", *p)))
			return false;
	return true;
}

/* A version, an architecture: [A-Za-z0-9.+~:-]+ (nothing a shell or apt would read else). */
static bool version_ok(const char *s)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr(".+~:-", *p)))
			return false;
	return true;
}

/* An archive path: relative, no "..", no empty component, no space. */
static bool filename_ok(const char *s)
{
	if (!*s || s[0] == '/' || strstr(s, "//") || strpbrk(s, " \t\r\n\\"))
		return false;
	for (const char *p = s; p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && !strncmp(p, "..", 2))
			return false;
		if (n == 1 && p[0] == '.')
			return false;
		p = p[n] ? p + n + 1 : NULL;
	}
	return str_has_suffix(s, ".deb");
}

/* s with its %XX escapes decoded (apt's URLs escape '+' and ':' in file names). */
static char *url_unescape(const char *s)
{
	struct strbuf sb = STRBUF_INIT;
	for (const char *p = s; *p; p++) {
		unsigned v;
		if (p[0] == '%' && p[1] && p[2] && str_is_hex(p + 1, 2) &&
		    sscanf(p + 1, "%2x", &v) == 1) {
			strbuf_addch(&sb, (char)v);
			p += 2;
		} else {
			strbuf_addch(&sb, *p);
		}
	}
	return strbuf_detach(&sb, NULL);
}

static const char *get_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int check_package(json_t *p, const char *what, const char *where, struct imgf_error **err)
{
	static const char *const keys[] = {"package",  "version", "architecture", "sha256",
					   "filename", "url",	  "archive",	  NULL};
	if (!json_is_object(p))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %s: expected an object", what,
				      where);
	for (size_t k = 0; keys[k]; k++)
		if (!json_is_string(json_object_get(p, keys[k])))
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %s.%s: expected a string",
					      what, where, keys[k]);
	json_t *size = json_object_get(p, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: %s.size: expected a number of bytes", what, where);
	const char *v;
	if (!package_name_ok(v = get_str(p, "package")))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: %s.package: '%s' is not a package "
				      "name",
				      what, where, v);
	if (!version_ok(v = get_str(p, "version")))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %s.version: '%s' is not a version",
				      what, where, v);
	if (!version_ok(v = get_str(p, "architecture")))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: %s.architecture: '%s' is not an architecture", what,
				      where, v);
	v = get_str(p, "sha256");
	if (strlen(v) != 64 || !str_is_hex(v, 64))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %s.sha256: '%s' is not a sha256",
				      what, where, v);
	const char *fn = get_str(p, "filename");
	if (!filename_ok(fn))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: %s.filename: '%s' is not a relative path to a .deb",
				      what, where, fn);
	const char *url = get_str(p, "url");
	_cleanup_free_ char *plain = url_unescape(url);
	size_t ul = strlen(plain), fl = strlen(fn);
	if (ul <= fl + 1 || strcmp(plain + ul - fl, fn) || plain[ul - fl - 1] != '/' ||
	    !strstr(plain, "://"))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: %s.url: '%s' is not a URL ending in '/%s'", what, where,
				      url, fn);
	return 0;
}

int imgf_aptlock_check(json_t *doc, const char *what, struct imgf_error **err)
{
	json_t *v = json_object_get(doc, "imgforge_lock");
	if (!json_is_integer(v) || json_integer_value(v) != IMGF_LOCK_VERSION)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: imgforge_lock: expected %d (a lock `imgforge lock` "
				      "writes)",
				      what, IMGF_LOCK_VERSION);
	json_t *images = json_object_get(doc, "images");
	if (!json_is_object(images))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: images: expected an object", what);
	const char *name;
	json_t *img;
	json_object_foreach(images, name, img)
	{
		json_t *archives = json_object_get(img, "archives");
		json_t *steps = json_object_get(img, "steps");
		if (!json_is_array(archives) || !json_is_array(steps))
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"%s: images.%s: expected 'archives' and 'steps' lists", what, name);
		size_t i;
		json_t *a;
		json_array_foreach(archives, i, a)
		{
			const char *sha = get_str(a, "sha256");
			if (!get_str(a, "release") || !sha || strlen(sha) != 64 ||
			    !str_is_hex(sha, 64))
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "%s: images.%s.archives[%zu]: expected "
						      "{release, sha256}",
						      what, name, i);
		}
		json_t *s;
		json_array_foreach(steps, i, s)
		{
			json_t *idx = json_object_get(s, "step");
			json_t *req = json_object_get(s, "requested");
			json_t *pkgs = json_object_get(s, "packages");
			if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
			    !json_is_array(req) || !json_is_array(pkgs))
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "%s: images.%s.steps[%zu]: expected {step, "
						      "requested, packages}",
						      what, name, i);
			size_t j;
			json_t *r;
			json_array_foreach(req, j, r)
			{
				if (!json_is_string(r))
					return imgf_error_set(
						err, IMGF_EXIT_FAIL,
						"%s: images.%s.steps[%zu].requested[%zu]: expected "
						"a string",
						what, name, i, j);
			}
			json_t *p;
			json_array_foreach(pkgs, j, p)
			{
				_cleanup_free_ char *where =
					xasprintf("images.%s.steps[%zu].packages[%zu]", name, i, j);
				if (check_package(p, what, where, err) < 0)
					return -1;
			}
		}
	}
	return 0;
}

int imgf_aptlock_load(const char *path, json_t **out, struct imgf_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (read_file(path, LOCK_MAX, &text, &len, err) < 0)
		return imgf_error_prefix(err, "lock");
	json_error_t jerr;
	json_t *doc = json_loadb(text, len, 0, &jerr);
	if (!doc)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "lock '%s': line %d: %s", path,
				      jerr.line, jerr.text);
	_cleanup_free_ char *what = xasprintf("lock '%s'", path);
	if (imgf_aptlock_check(doc, what, err) < 0) {
		json_decref(doc);
		return -1;
	}
	*out = doc;
	return 0;
}

json_t *imgf_aptlock_step(json_t *doc, const char *image, size_t step)
{
	json_t *img = json_object_get(json_object_get(doc, "images"), image);
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(img, "steps"), i, s)
	{
		if ((size_t)json_integer_value(json_object_get(s, "step")) == step)
			return s;
	}
	return NULL;
}

json_t *imgf_aptlock_archives(json_t *doc, const char *image)
{
	static json_t *none;
	json_t *a =
		json_object_get(json_object_get(json_object_get(doc, "images"), image), "archives");
	if (a)
		return a;
	if (!none)
		none = json_array();
	return none;
}

int imgf_aptlock_covers(json_t *step, char *const *pkgs, const char *lock_path, const char *image,
			struct imgf_error **err)
{
	json_t *req = json_object_get(step, "requested");
	for (size_t i = 0; pkgs[i]; i++) {
		size_t n = strcspn(pkgs[i], "=");
		bool found = false;
		size_t j;
		json_t *r;
		json_array_foreach(req, j, r)
		{
			const char *name = json_string_value(r);
			if (strlen(name) == n && !strncmp(name, pkgs[i], n)) {
				found = true;
				break;
			}
		}
		if (!found)
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"package '%.*s' is not in the lock '%s' (image '%s'): "
				"the lock does not match the config; run `imgforge "
				"lock` again",
				(int)n, pkgs[i], lock_path, image);
	}
	return 0;
}

char *imgf_aptlock_digest(json_t *entry)
{
	_cleanup_free_ char *text = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
	char hex[IMGF_DIGEST_HEX_MAX];
	imgf_digest_buffer(IMGF_SHA256, text ? text : "", text ? strlen(text) : 0, hex);
	return xstrdup(hex);
}

char *imgf_aptlock_dump(json_t *doc)
{
	_cleanup_free_ char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	return xasprintf("%s\n", text);
}

/* The data of the current member, capped at max. */
static int read_member(struct archive *a, size_t max, const char *what, struct strbuf *out,
		       struct imgf_error **err)
{
	char buf[1 << 14];
	for (;;) {
		la_ssize_t k = archive_read_data(a, buf, sizeof(buf));
		if (k == 0)
			return 0;
		if (k < 0)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: %s", what,
					      archive_error_string(a));
		if (out->len + (size_t)k > max)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "%s: larger than %zu bytes",
					      what, max);
		strbuf_add(out, buf, (size_t)k);
	}
}

/* The control file out of control.tar(.gz|.xz|.zst) in memory. */
static int control_from_tar(const struct strbuf *tar, const char *deb_path, char **out,
			    struct imgf_error **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	int r = -1;
	if (archive_read_open_memory(a, tar->buf, tar->len) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': control.tar: %s", deb_path,
			       archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int k;
	while ((k = archive_read_next_header(a, &e)) == ARCHIVE_OK || k == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e);
		if (name && str_has_prefix(name, "./"))
			name += 2;
		if (!name || strcmp(name, "control") || archive_entry_filetype(e) != AE_IFREG)
			continue;
		struct strbuf sb = STRBUF_INIT;
		_cleanup_free_ char *what = xasprintf("'%s': control", deb_path);
		if (read_member(a, CONTROL_MAX, what, &sb, err) < 0) {
			strbuf_release(&sb);
			goto out;
		}
		*out = strbuf_detach(&sb, NULL);
		r = 0;
		goto out;
	}
	if (k == ARCHIVE_EOF)
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': control.tar holds no control file",
			       deb_path);
	else
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': control.tar: %s", deb_path,
			       archive_error_string(a));
out:
	archive_read_free(a);
	return r;
}

int imgf_deb_control(const char *deb_path, char **out, struct imgf_error **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_ar(a);
	int r = -1;
	struct strbuf tar = STRBUF_INIT;
	if (archive_read_open_filename(a, deb_path, 1 << 16) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': not a .deb: %s", deb_path,
			       archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int k;
	while ((k = archive_read_next_header(a, &e)) == ARCHIVE_OK || k == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e);
		if (!name || !str_has_prefix(name, "control.tar"))
			continue;
		_cleanup_free_ char *what = xasprintf("'%s': %s", deb_path, name);
		if (read_member(a, CONTROL_TAR_MAX, what, &tar, err) < 0)
			goto out;
		r = control_from_tar(&tar, deb_path, out, err);
		goto out;
	}
	imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': not a .deb: %s", deb_path,
		       k == ARCHIVE_EOF ? "no control.tar member" : archive_error_string(a));
out:
	strbuf_release(&tar);
	archive_read_free(a);
	return r;
}

char *imgf_control_field(const char *control, const char *field)
{
	size_t fl = strlen(field);
	for (const char *p = control; p && *p;) {
		if (!strncasecmp(p, field, fl) && p[fl] == ':') {
			const char *v = p + fl + 1;
			v += strspn(v, " \t");
			size_t n = strcspn(v, "\n");
			while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
				n--;
			return xstrndup(v, n);
		}
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	return NULL;
}

/* Packages.gz: gzip through libarchive's raw format, without a timestamp (deterministic). */
static int write_gz(const char *path, const struct strbuf *data, struct imgf_error **err)
{
	_cleanup_free_ char *parent = path_dirname(path);
	_cleanup_free_ char *tmp = NULL;
	int fd = make_temp_file(parent, path_basename(path), &tmp, err);
	if (fd < 0)
		return -1;
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "Packages");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)data->len);
	int r = 0;
	if (archive_write_set_format_raw(a) != ARCHIVE_OK ||
	    archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
	    archive_write_set_filter_option(a, "gzip", "timestamp", NULL) < ARCHIVE_WARN ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(a, fd) != ARCHIVE_OK ||
	    archive_write_header(a, e) != ARCHIVE_OK ||
	    (data->len && archive_write_data(a, data->buf, data->len) != (la_ssize_t)data->len) ||
	    archive_write_close(a) != ARCHIVE_OK)
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': %s", tmp,
				   archive_error_string(a) ?: "libarchive failed");
	archive_entry_free(e);
	archive_write_free(a);
	if (close(fd) < 0 && r == 0)
		r = imgf_error_errno(err, errno, "close '%s'", tmp);
	if (r == 0 && chmod(tmp, 0644) < 0)
		r = imgf_error_errno(err, errno, "chmod '%s'", tmp);
	if (r == 0 && rename(tmp, path) < 0)
		r = imgf_error_errno(err, errno, "rename '%s' to '%s'", tmp, path);
	if (r < 0)
		unlink(tmp);
	return r;
}

static int cmp_deb(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int c = strcmp(get_str(x, "package"), get_str(y, "package"));
	if (!c)
		c = strcmp(get_str(x, "architecture"), get_str(y, "architecture"));
	return c ? c : strcmp(get_str(x, "version"), get_str(y, "version"));
}

/* One Packages stanza: the .deb's control (checked against the entry) and where it lies. */
static int stanza(const char *dir, json_t *d, struct strbuf *out, struct imgf_error **err)
{
	const char *rel = get_str(d, "path");
	const char *pkg = get_str(d, "package");
	_cleanup_free_ char *path = path_join(dir, rel);
	char hex[IMGF_DIGEST_HEX_MAX];
	struct stat st;
	if (stat(path, &st) < 0)
		return imgf_error_errno(err, errno, "package '%s': '%s'", pkg, path);
	if (imgf_digest_file(path, IMGF_SHA256, hex, err) < 0)
		return imgf_error_prefix(err, "package '%s'", pkg);
	if (strcmp(hex, get_str(d, "sha256")))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "package '%s': '%s': sha256 mismatch: want %s, got %s", pkg,
				      path, get_str(d, "sha256"), hex);
	_cleanup_free_ char *control = NULL;
	if (imgf_deb_control(path, &control, err) < 0)
		return imgf_error_prefix(err, "package '%s'", pkg);
	static const char *const fields[][2] = {
		{"Package", "package"}, {"Version", "version"}, {"Architecture", "architecture"}};
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		_cleanup_free_ char *v = imgf_control_field(control, fields[i][0]);
		const char *want = get_str(d, fields[i][1]);
		if (!v || strcmp(v, want))
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "package '%s': '%s': its control says %s '%s', not "
					      "'%s'",
					      pkg, path, fields[i][0], v ? v : "", want);
	}
	/* the control, without its blank end, then the index's own fields */
	size_t n = strlen(control);
	while (n && (control[n - 1] == '\n' || control[n - 1] == '\r'))
		n--;
	strbuf_add(out, control, n);
	strbuf_addf(out, "\nFilename: %s\nSize: %lld\nSHA256: %s\n\n", rel, (long long)st.st_size,
		    hex);
	return 0;
}

int imgf_aptrepo_write(const char *dir, json_t *debs, bool gz, struct imgf_error **err)
{
	size_t n = json_array_size(debs);
	json_t **v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(debs, i);
	qsort(v, n, sizeof(*v), cmp_deb);
	struct strbuf pk = STRBUF_INIT, rel = STRBUF_INIT;
	json_t *archs = json_object();
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		r = stanza(dir, v[i], &pk, err);
		json_object_set_new(archs, get_str(v[i], "architecture"), json_true());
	}
	free(v);
	_cleanup_free_ char *ppath = path_join(dir, "Packages");
	_cleanup_free_ char *gzpath = path_join(dir, "Packages.gz");
	if (r == 0)
		r = write_file_atomic(ppath, pk.buf, pk.len, 0644, err);
	if (r == 0 && gz)
		r = write_gz(gzpath, &pk, err);
	if (r == 0) {
		/* A fixed Date (apt wants one): the same packages give the same Release. */
		strbuf_addstr(&rel, "Origin: imgforge\nLabel: imgforge\n"
				    "Date: Thu, 01 Jan 1970 00:00:00 UTC\nArchitectures:");
		const char *a;
		json_t *t;
		json_object_foreach(archs, a, t)
		{
			if (strcmp(a, "all"))
				strbuf_addf(&rel, " %s", a);
		}
		strbuf_addstr(&rel, "\nDescription: the packages of an imgforge lock\nSHA256:\n");
		const char *files[] = {"Packages", gz ? "Packages.gz" : NULL};
		for (size_t i = 0; i < ARRAY_SIZE(files) && files[i] && r == 0; i++) {
			_cleanup_free_ char *p = path_join(dir, files[i]);
			char hex[IMGF_DIGEST_HEX_MAX];
			struct stat st;
			if (stat(p, &st) < 0)
				r = imgf_error_errno(err, errno, "stat '%s'", p);
			else if ((r = imgf_digest_file(p, IMGF_SHA256, hex, err)) == 0)
				strbuf_addf(&rel, " %s %lld %s\n", hex, (long long)st.st_size,
					    files[i]);
		}
	}
	if (r == 0) {
		_cleanup_free_ char *rpath = path_join(dir, "Release");
		r = write_file_atomic(rpath, rel.buf, rel.len, 0644, err);
	}
	json_decref(archs);
	strbuf_release(&pk);
	strbuf_release(&rel);
	return r;
}
