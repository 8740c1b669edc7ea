#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptlock.h"
#include "archive.h"
#include "build.h"
#include "common.h"
#include "error.h"
#include "log.h"
#include "provisioner.h"
#include "strbuf.h"
#include "target.h"
#include "util.h"

struct imgf_tar *prov_tar_new(struct imgf_step *s, struct imgf_target *t, char **path,
			      struct imgf_error **err)
{
	*path = imgf_target_stage_path(t, s->ops->name);
	struct imgf_tar *w = imgf_tar_open(*path, err);
	if (!w) {
		free(*path);
		*path = NULL;
	}
	return w;
}

int prov_tar_put(struct imgf_tar *w, char *path, struct imgf_target *t, int r,
		 struct imgf_error **err)
{
	if (r == 0)
		r = imgf_tar_close(w, err);
	imgf_tar_free(w);
	if (r == 0)
		r = imgf_target_put_root_tar(t, path, err);
	unlink(path);
	free(path);
	return r;
}

int prov_tar_add_data_file(struct imgf_step *s, struct imgf_tar *w, const char *data_path,
			   const char *dest, mode_t mode, struct imgf_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (imgf_step_data(s, data_path, &text, &len, err) < 0)
		return -1;
	return imgf_tar_add_data(w, text, len, dest + (dest[0] == '/'), mode, 0, 0, err);
}

int prov_tar_enable_unit(struct imgf_tar *w, const char *unit, const char *unit_path,
			 const char *target_wants, struct imgf_error **err)
{
	_cleanup_free_ char *link = xasprintf("etc/systemd/system/%s.wants/%s", target_wants, unit);
	return imgf_tar_add_symlink(w, link, unit_path, err);
}

int prov_check_version(struct imgf_step *s, struct imgf_target *t, char *const *argv,
		       const char *want, struct imgf_error **err)
{
	_cleanup_free_ char *out = NULL;
	if (imgf_target_capture(t, s->label, argv, &out, err) < 0)
		return -1;
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, out);
	strbuf_trim_trailing_newline(&sb);
	int r = 0;
	if (want && !strstr(sb.buf, want))
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'%s %s' says '%s', which is not version '%s'", argv[0],
				   argv[1] ? argv[1] : "", sb.buf, want);
	else
		log_info("%s: %s", s->label, sb.buf);
	strbuf_release(&sb);
	return r;
}

/*
 * apt downloads into a directory of its own (so the Debian images' docker-clean hook, which
 * empties /var/cache/apt/archives after each dpkg run, leaves the files) and each downloaded
 * .deb is recorded, before it goes, as a line of PRV_RECORD: package, version, architecture
 * (from apt's name for the file), the file's sha256 (apt checked it against the signed
 * index), its URL and the archive (URL and suite/component, from apt-cache madison).
 */
#define PRV_DEBS "/var/cache/imgforge-debs"
#define PRV_RECORD PRV_DEBS "/record.tsv"

static const char apt_install_fn[] =
	"apt_install() {\n"
	"  export DEBIAN_FRONTEND=noninteractive\n"
	"  if [ \"$update\" = 1 ]; then apt-get update -q; fi\n"
	"  d=" PRV_DEBS "\n"
	"  rm -rf $d; mkdir -p $d/partial\n"
	"  o=\"-y -q --no-install-recommends -o Dir::Cache::Archives=$d/\"\n"
	"  apt-get install $o --print-uris $missing >$d/uris.all\n"
	"  grep \"^'\" $d/uris.all >$d/uris || true\n"
	"  apt-get install $o $missing\n"
	"  : >$d/record.tsv\n"
	"  while read -r url file size hash; do\n"
	"    url=${url#\\'}; url=${url%\\'}\n"
	"    if [ ! -f \"$d/$file\" ]; then\n"
	"      echo \"apt downloaded '$file' but it is not in $d\" >&2; exit 1\n"
	"    fi\n"
	/* apt names the file PACKAGE_VERSION_ARCH.deb, the epoch's ':' as %3a */
	"    b=${file%.deb}; v=${b#*_}; a=${v##*_}; v=$(echo \"${v%_*}\" | sed 's/%3a/:/g')\n"
	"    set -- \"${b%%_*}\" \"$v\" \"$a\"\n"
	"    sum=$(sha256sum \"$d/$file\"); sum=${sum%% *}\n"
	"    src=$(apt-cache madison \"$1\" | awk -F' [|] ' -v v=\"$2\" "
	"'{ gsub(/^ +| +$/, \"\", $2) } $2 == v && / Packages$/ "
	"{ sub(/ [^ ]+ Packages$/, \"\", $3); print $3; exit }')\n"
	"    printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"$1\" \"$2\" \"$3\" \"$sum\" \"$url\" "
	"\"$src\" >>$d/record.tsv\n"
	"  done <$d/uris\n"
	"  rm -f $d/*.deb $d/uris.all $d/uris\n"
	"}\n";

int prov_packages_script(char *const *pkgs, bool update, bool clean, const char *manager,
			 char **out, struct imgf_error **err)
{
	struct strbuf list = STRBUF_INIT;
	for (size_t i = 0; pkgs[i]; i++) {
		if (!str_is_shell_word(pkgs[i])) {
			strbuf_release(&list);
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "packages: '%s' is not a package name", pkgs[i]);
		}
		strbuf_addf(&list, " %s", pkgs[i]);
	}
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "pkgs='%s'\nmanager='%s'\nupdate=%d\n", list.buf + (list.len ? 1 : 0),
		    manager, update ? 1 : 0);
	strbuf_addstr(&sb, apt_install_fn);
	strbuf_addstr(&sb, "if [ \"$manager\" = auto ]; then\n"
			   "  if command -v apt-get >/dev/null 2>&1; then manager=apt\n"
			   "  elif command -v dnf >/dev/null 2>&1; then manager=dnf\n"
			   "  else echo 'no apt-get or dnf in the target' >&2; exit 1; fi\n"
			   "fi\n"
			   "missing=\n"
			   "for p in $pkgs; do\n"
			   "  case $manager in\n"
			   "  apt) dpkg-query -W -f='${Status}' \"${p%%=*}\" 2>/dev/null | grep -q "
			   "'install ok installed' || missing=\"$missing $p\" ;;\n"
			   "  dnf) rpm -q \"$p\" >/dev/null 2>&1 || missing=\"$missing $p\" ;;\n"
			   "  esac\n"
			   "done\n"
			   "if [ -n \"$missing\" ]; then\n"
			   "  echo \"installing:$missing\"\n"
			   "  case $manager in\n"
			   "  apt) apt_install ;;\n"
			   "  dnf) dnf install -y -q $missing ;;\n"
			   "  esac\n"
			   "else\n"
			   "  echo 'all packages already installed'\n"
			   "fi\n");
	if (clean)
		strbuf_addstr(&sb, "case $manager in\n"
				   "apt) apt-get clean; rm -rf /var/lib/apt/lists/* ;;\n"
				   "dnf) dnf clean all ;;\n"
				   "esac\n");
	strbuf_release(&list);
	*out = strbuf_detach(&sb, NULL);
	return 0;
}

static bool field_ok(const char *f)
{
	return *f && !strpbrk(f, " \t\r\n");
}

int prov_packages_parse(const char *text, json_t **out, struct imgf_error **err)
{
	json_t *list = json_array();
	size_t lineno = 0;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		_cleanup_free_ char *line = xstrndup(p, len);
		p += len + (nl ? 1 : 0);
		lineno++;
		if (!*line)
			continue;
		char *f[6] = {0};
		size_t n = 0;
		char *save = line;
		for (char *tab; n < 6; n++) {
			f[n] = save;
			if (!(tab = strchr(save, '\t'))) {
				n++;
				break;
			}
			*tab = '\0';
			save = tab + 1;
		}
		/* the archive is the one field that may hold a space ("URL suite/component") */
		if (n != 6 || strchr(f[5], '\t'))
			goto bad;
		for (size_t k = 0; k < 5; k++)
			if (!field_ok(f[k]))
				goto bad;
		if (strlen(f[3]) != 64 || !str_is_hex(f[3], 64)) {
			json_decref(list);
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "package record line %zu: '%s': not a sha256", lineno,
					      f[3]);
		}
		json_t *e = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kind", "deb", "package",
				      f[0], "version", f[1], "architecture", f[2], "sha256", f[3],
				      "url", f[4], "archive", f[5]);
		json_object_set_new(e, "name", json_sprintf("deb:%s:%s", f[0], f[2]));
		json_array_append_new(list, e);
		continue;
	bad:
		json_decref(list);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "package record line %zu: expected package, version, "
				      "architecture, sha256, URL and archive separated by tabs",
				      lineno);
	}
	*out = list;
	return 0;
}

int prov_packages_install(struct imgf_step *s, struct imgf_target *t, char *const *pkgs,
			  bool update, bool clean, const char *manager, struct imgf_error **err)
{
	_cleanup_free_ char *script = NULL;
	if (prov_packages_script(pkgs, update, clean, manager, &script, err) < 0 ||
	    imgf_target_sh(t, s->label, script, NULL, err) < 0)
		return -1;
	char *argv[] = {"/bin/sh", "-c",
			"if [ -f " PRV_RECORD " ]; then cat " PRV_RECORD "; fi; rm -rf " PRV_DEBS,
			NULL};
	_cleanup_free_ char *text = NULL;
	json_t *list = NULL;
	if (imgf_target_capture(t, s->label, argv, &text, err) < 0 ||
	    prov_packages_parse(text, &list, err) < 0)
		return imgf_error_prefix(err, "record the installed packages");
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		imgf_build_record_package(s->build, json_incref(e));
	}
	if (json_array_size(list))
		log_info("%s: %zu package file(s) recorded with their sha256", s->label,
			 json_array_size(list));
	json_decref(list);
	return 0;
}

int prov_packages_resolve_script(char *const *pkgs, bool install, char **out,
				 struct imgf_error **err)
{
	struct strbuf list = STRBUF_INIT;
	for (size_t i = 0; pkgs[i]; i++) {
		if (!str_is_shell_word(pkgs[i])) {
			strbuf_release(&list);
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "packages: '%s' is not a package name", pkgs[i]);
		}
		strbuf_addf(&list, " %s", pkgs[i]);
	}
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "pkgs='%s'\ninstall=%d\n", list.buf + (list.len ? 1 : 0), install ? 1 : 0);
	strbuf_addstr(
		&sb,
		"export DEBIAN_FRONTEND=noninteractive\n"
		"if ! command -v apt-get >/dev/null 2>&1; then\n"
		"  echo 'no apt-get in the target: only apt packages can be locked' >&2; exit 1\n"
		"fi\n"
		"apt-get update -q -o Acquire::Languages=none >&2\n"
		"missing=\n"
		"for p in $pkgs; do\n"
		"  dpkg-query -W -f='${Status}' \"${p%%=*}\" 2>/dev/null | grep -q "
		"'install ok installed' || missing=\"$missing $p\"\n"
		"done\n"
		"d=$(mktemp -d)\n"
		": >$d/uris\n"
		"if [ -n \"$missing\" ]; then\n"
		"  apt-get install -y -q --no-install-recommends --print-uris "
		"-o Dir::Cache::Archives=$d/ $missing >$d/uris.all\n"
		"  grep \"^'\" $d/uris.all >$d/uris || true\n"
		"fi\n"
		"while read -r url file size hash; do\n"
		"  url=${url#\\'}; url=${url%\\'}\n"
		"  b=${file%.deb}; v=${b#*_}; a=${v##*_}; v=$(echo \"${v%_*}\" | sed 's/%3a/:/g')\n"
		"  set -- \"${b%%_*}\" \"$v\" \"$a\"\n"
		/* the archive's index entry of that version and architecture: Filename, SHA256 */
		"  fs=$(apt-cache show \"$1=$2\" | awk -v a=\"$3\" 'BEGIN { RS = \"\" } "
		"{ f = \"\"; h = \"\"; r = \"\"; n = split($0, l, \"\\n\"); "
		"for (i = 1; i <= n; i++) { if (l[i] ~ /^Filename: /) f = substr(l[i], 11); "
		"else if (l[i] ~ /^SHA256: /) h = substr(l[i], 9); "
		"else if (l[i] ~ /^Architecture: /) r = substr(l[i], 15) } "
		"if (r == a && f != \"\" && h != \"\") { print f \"\\t\" h; exit } }')\n"
		"  src=$(apt-cache madison \"$1\" | awk -F' [|] ' -v v=\"$2\" "
		"'{ gsub(/^ +| +$/, \"\", $2) } $2 == v && / Packages$/ "
		"{ sub(/ [^ ]+ Packages$/, \"\", $3); print $3; exit }')\n"
		"  printf 'P\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"$1\" \"$2\" \"$3\" \"$size\" "
		"\"$url\" \"$src\" \"$fs\"\n"
		"done <$d/uris\n"
		"for f in /var/lib/apt/lists/*Release; do\n"
		"  [ -f \"$f\" ] || continue\n"
		"  s=$(sha256sum \"$f\"); printf 'R\\t%s\\t%s\\n' \"${f##*/}\" \"${s%% *}\"\n"
		"done\n"
		"if [ \"$install\" = 1 ] && [ -n \"$missing\" ]; then\n"
		"  apt-get install -y -q --no-install-recommends $missing >&2\n"
		"fi\n"
		"rm -rf $d\n");
	strbuf_release(&list);
	*out = strbuf_detach(&sb, NULL);
	return 0;
}

static int cmp_json_str(const void *a, const void *b)
{
	return strcmp(json_string_value(*(json_t *const *)a),
		      json_string_value(*(json_t *const *)b));
}

static int cmp_pkg(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int c = strcmp(json_string_value(json_object_get(x, "package")),
		       json_string_value(json_object_get(y, "package")));
	return c ? c
		 : strcmp(json_string_value(json_object_get(x, "architecture")),
			  json_string_value(json_object_get(y, "architecture")));
}

/* A sorted copy of an array (of strings, or of packages with cmp_pkg). */
static json_t *sorted(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr);
	json_t **v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), cmp);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append(out, v[i]);
	free(v);
	return out;
}

int prov_packages_resolve_parse(const char *text, char *const *pkgs, json_t **out,
				struct imgf_error **err)
{
	json_t *list = json_array(), *archives = json_array(), *req = json_object();
	size_t lineno = 0;
	int r = 0;
	for (const char *p = text; *p && r == 0;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		_cleanup_free_ char *line = xstrndup(p, len);
		p += len + (nl ? 1 : 0);
		lineno++;
		if (!*line)
			continue;
		char *f[10] = {0};
		size_t n = 0;
		for (char *q = line; q && n < 10; n++) {
			f[n] = q;
			q = strchr(q, '\t');
			if (q)
				*q++ = '\0';
		}
		if (!strcmp(f[0], "R") && n == 3) {
			json_array_append_new(
				archives, json_pack("{s:s,s:s}", "release", f[1], "sha256", f[2]));
			continue;
		}
		if (strcmp(f[0], "P") || n != 9) {
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "resolution line %zu: '%s': expected P and 8 fields, or "
					   "R and 2, separated by tabs",
					   lineno, line);
			break;
		}
		if (!*f[7] || !*f[8])
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "package '%s' %s (%s): the archive's index gives no "
					   "Filename and SHA256 for it",
					   f[1], f[2], f[3]);
		char *end = NULL;
		long long size = strtoll(f[4], &end, 10);
		if (r == 0 && (!*f[4] || *end || size < 0))
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "package '%s': size '%s' is not a number", f[1], f[4]);
		if (r == 0)
			json_array_append_new(
				list, json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "package",
						f[1], "version", f[2], "architecture", f[3], "size",
						(json_int_t)size, "url", f[5], "archive", f[6],
						"filename", f[7], "sha256", f[8]));
	}
	for (size_t i = 0; pkgs[i]; i++) {
		_cleanup_free_ char *name = xstrndup(pkgs[i], strcspn(pkgs[i], "="));
		json_object_set_new(req, name, json_true());
	}
	json_t *reqs = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(req, k, v)
	{
		json_array_append_new(reqs, json_string(k));
	}
	json_t *e = json_pack("{s:o,s:o,s:o}", "requested", sorted(reqs, cmp_json_str), "packages",
			      sorted(list, cmp_pkg), "archives", archives);
	json_decref(reqs);
	json_decref(list);
	json_decref(req);
	if (r == 0) {
		/* the entry as a lock will hold it, checked as a lock is when read */
		json_t *doc = json_pack("{s:i,s:{s:{s:O,s:[{s:i,s:O,s:O}]}}}", "imgforge_lock",
					IMGF_LOCK_VERSION, "images", "x", "archives",
					json_object_get(e, "archives"), "steps", "step", 0,
					"requested", json_object_get(e, "requested"), "packages",
					json_object_get(e, "packages"));
		r = imgf_aptlock_check(doc, "the resolution", err);
		json_decref(doc);
	}
	if (r < 0) {
		json_decref(e);
		return -1;
	}
	*out = e;
	return 0;
}
