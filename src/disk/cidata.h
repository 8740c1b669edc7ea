/*
 * NoCloud seeds for cloud-init: user-data written with libyaml, meta-data, and the ISO
 * (volume id "cidata") that carries them. The boot check and `make -C cloudinit` share it.
 */
#ifndef IMGF_CIDATA_H
#define IMGF_CIDATA_H

struct imgf_error;
struct strbuf;

struct imgf_cidata {
	const char *instance_id;
	const char *hostname;
	const char *user;	 /* a login user with sudo, for SSH keys; NULL = none */
	char *const *ssh_keys;	 /* authorized keys for `user` (NULL-terminated or NULL) */
	const char *boot_script; /* a shell script cloud-init runs once at boot, or NULL */
};

/* "#cloud-config" and the YAML document. */
int imgf_cidata_user_data(const struct imgf_cidata *c, struct strbuf *out, struct imgf_error **err);
/* Write user-data, meta-data and the seed ISO (genisoimage) at iso_path. */
int imgf_cidata_write_iso(const struct imgf_cidata *c, const char *iso_path,
			  struct imgf_error **err);
/* SSH_PUBLIC_KEY, else ~/.ssh/id_*.pub (all of them); NULL-terminated, maybe empty. */
char **imgf_cidata_default_keys(void);

#endif
