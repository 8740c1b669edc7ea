#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
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
	strbuf_addf(&sb,
		    "pkgs='%s'\n"
		    "manager='%s'\n"
		    "if [ \"$manager\" = auto ]; then\n"
		    "  if command -v apt-get >/dev/null 2>&1; then manager=apt\n"
		    "  elif command -v dnf >/dev/null 2>&1; then manager=dnf\n"
		    "  else echo 'no apt-get or dnf in the target' >&2; exit 1; fi\n"
		    "fi\n"
		    "missing=\n"
		    "for p in $pkgs; do\n"
		    "  case $manager in\n"
		    "  apt) dpkg-query -W -f='${Status}' \"${p%%%%=*}\" 2>/dev/null | grep -q "
		    "'install ok installed' || missing=\"$missing $p\" ;;\n"
		    "  dnf) rpm -q \"$p\" >/dev/null 2>&1 || missing=\"$missing $p\" ;;\n"
		    "  esac\n"
		    "done\n"
		    "if [ -n \"$missing\" ]; then\n"
		    "  echo \"installing:$missing\"\n"
		    "  case $manager in\n"
		    "  apt) export DEBIAN_FRONTEND=noninteractive\n"
		    "       %s"
		    "       apt-get install -y -q --no-install-recommends $missing ;;\n"
		    "  dnf) dnf install -y -q $missing ;;\n"
		    "  esac\n"
		    "else\n"
		    "  echo 'all packages already installed'\n"
		    "fi\n",
		    list.buf + (list.len ? 1 : 0), manager, update ? "apt-get update -q\n" : "");
	if (clean)
		strbuf_addstr(&sb, "case $manager in\n"
				   "apt) apt-get clean; rm -rf /var/lib/apt/lists/* ;;\n"
				   "dnf) dnf clean all ;;\n"
				   "esac\n");
	strbuf_release(&list);
	*out = strbuf_detach(&sb, NULL);
	return 0;
}
