/* Helpers the provisioners share; none of them knows which builder runs the target. */
#ifndef IMGF_PROVISIONERS_COMMON_H
#define IMGF_PROVISIONERS_COMMON_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

struct imgf_error;
struct imgf_step;
struct imgf_target;
struct imgf_tar;

/* Start a staging tar for this step; put it into the target's root with prov_tar_put. */
struct imgf_tar *prov_tar_new(struct imgf_step *s, struct imgf_target *t, char **path,
			      struct imgf_error **err);
/*
 * Finish a staging tar: when r (the result of filling it) is 0, close it and put it into
 * "/"; in every case free it and remove the file. Returns < 0 when r was or putting fails.
 */
int prov_tar_put(struct imgf_tar *w, char *path, struct imgf_target *t, int r,
		 struct imgf_error **err);
/* Add a provisioner data file (interpolated) to a staging tar at `dest` (absolute). */
int prov_tar_add_data_file(struct imgf_step *s, struct imgf_tar *w, const char *data_path,
			   const char *dest, mode_t mode, struct imgf_error **err);
/* Enable a systemd unit offline: the wants/ symlink, no systemctl needed. */
int prov_tar_enable_unit(struct imgf_tar *w, const char *unit, const char *unit_path,
			 const char *target_wants, struct imgf_error **err);
/* Run `prog ARGS` in the target and fail unless its output contains `want`. */
int prov_check_version(struct imgf_step *s, struct imgf_target *t, char *const *argv,
		       const char *want, struct imgf_error **err);
/* A shell script that installs packages with apt or dnf, whichever the target has, only
 * when missing, and cleans the package lists afterwards. Names are checked first. With apt
 * it keeps a record of every .deb it downloaded (see prov_packages_install). */
int prov_packages_script(char *const *pkgs, bool update, bool clean, const char *manager,
			 char **out, struct imgf_error **err);
/*
 * Install with that script and record each .deb apt downloaded in the build's inputs
 * (imgf_build_record_package): {name "deb:PKG:ARCH", kind "deb", package, version,
 * architecture, sha256 of the file, url, archive}. dnf's packages are not recorded.
 */
int prov_packages_install(struct imgf_step *s, struct imgf_target *t, char *const *pkgs,
			  bool update, bool clean, const char *manager, struct imgf_error **err);
/* The record's lines (PKG VERSION ARCH SHA256 URL ARCHIVE, tab-separated) as that list. */
int prov_packages_parse(const char *text, json_t **out, struct imgf_error **err);

/*
 * `imgforge lock`: a script that resolves what apt would download to install `pkgs` (those
 * the target lacks; lists refreshed first) and prints it, with the digests of the archive's
 * Release files apt fetched; with `install` it then installs them (a later step resolves
 * against the result). Its output lines, tab-separated:
 *   P PACKAGE VERSION ARCH SIZE URL ARCHIVE FILENAME SHA256   (SHA256 from the archive's index)
 *   R RELEASE-FILE SHA256
 */
int prov_packages_resolve_script(char *const *pkgs, bool install, char **out,
				 struct imgf_error **err);
/* That output as a lock's step entry {requested, packages, archives} (aptlock.h), checked. */
int prov_packages_resolve_parse(const char *text, char *const *pkgs, json_t **out,
				struct imgf_error **err);

#endif
