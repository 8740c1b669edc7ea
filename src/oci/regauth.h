/*
 * Registry authentication shared by the pull client (registry.h) and the push client
 * (regpush.h): WWW-Authenticate challenges as registries send them, and the credentials a
 * docker-style config.json holds for a registry, and what an error reply says.
 */
#ifndef IMGF_REGAUTH_H
#define IMGF_REGAUTH_H

struct imgf_error;
struct strbuf;

/* A WWW-Authenticate challenge (RFC 7235): its scheme and the parameters a registry uses. */
struct imgf_reg_challenge {
	char *scheme; /* "Bearer", "Basic" */
	char *realm, *service, *scope;
};
int imgf_reg_challenge_parse(const char *header, struct imgf_reg_challenge *ch);
void imgf_reg_challenge_release(struct imgf_reg_challenge *ch);

/*
 * The credentials for `registry` ("HOST[:PORT]") in a docker config.json: auths[KEY].auth
 * (base64 "user:password") or .username/.password, KEY the host, or with an http(s):// prefix
 * and any path (docker.io: "https://index.docker.io/v1/"). 1 and *user, *password (newly
 * allocated) when found; 0 when the file has no entry for it; < 0 when the file or the entry
 * is unreadable, or the credentials are left to a helper or store (not supported).
 */
int imgf_reg_auth_lookup(const char *config_path, const char *registry, char **user,
			 char **password, struct imgf_error **err);
/* The docker config read by default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json,
 * when it is there; else NULL. */
char *imgf_reg_auth_file_default(void);

/* The registry's own words from an error body {"errors":[{"code":..,"message":..}]}: "CODE:
 * MESSAGE", either alone, or NULL. */
char *imgf_reg_error_text(const struct strbuf *body);

/* Say (once per run: a build's registry cache makes many clients) that `registry` is spoken
 * to over TLS without verifying its certificate. */
void imgf_reg_tls_unverified_warn(const char *registry);

#endif
