/*
 * Squashed, reproducible image layers. A container's exported filesystem is rewritten as
 * one layer tar whose bytes depend only on the files: members in name order (each
 * directory's entries sorted, as `tar --sort=name`), numeric owners and no user or group
 * names, mtimes clamped to SOURCE_DATE_EPOCH (whole seconds, no atime/ctime), no
 * whiteouts, xattrs sorted (security.selinux dropped). The docker-archive that
 * POST /images/load takes (manifest.json, the config, the layer) is produced in pieces, so
 * nothing is held in memory but a block at a time.
 */
#ifndef IMGF_SQUASH_H
#define IMGF_SQUASH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "digest.h"

/* "sha256:HEX" and its NUL */
#define IMGF_DIGEST_ID_MAX (sizeof("sha256:") + IMGF_DIGEST_HEX_MAX)

struct imgf_error;

struct imgf_squash_opts {
	int64_t epoch; /* mtimes later than this become this */
	/* Paths ("etc/x", no leading '/') left out of the layer: what the engine adds to every
	 * container (/.dockerenv) rather than what the build made. NULL-terminated; may be NULL. */
	const char *const *drop;
	/* Bolt databases (containerd's meta.db) rewritten by imgf_bolt_normalize with `epoch`;
	 * one that cannot be is kept as it is, with a warning. NULL-terminated; may be NULL. */
	const char *const *bolt;
};

struct imgf_layer {
	char diff_id[IMGF_DIGEST_ID_MAX]; /* "sha256:HEX" of the layer tar */
	uint64_t size;			  /* bytes */
	size_t entries;			  /* members written */
	size_t dropped;			  /* whiteouts and `drop` paths left out */
	size_t rewritten;		  /* `bolt` databases rewritten */
};

/*
 * Rewrite the tar at in_path (a container export: any member order, hard links to earlier
 * or later names) as a reproducible layer at out_path, hashing it as it is written. The
 * input is read twice (names, then data) and never held in memory; out_path is removed on
 * failure. Errors name the member.
 */
int imgf_squash_layer(const char *in_path, const char *out_path, const struct imgf_squash_opts *o,
		      struct imgf_layer *out, struct imgf_error **err);

/*
 * An image config (the JSON whose sha256 is the image ID) for one layer: `container_config`
 * (Env, Entrypoint, Cmd, Labels, ...; copied) under "config", architecture/os, `created` and
 * one history entry at `created` (RFC 3339, UTC), author and created_by `created_by`,
 * rootfs.diff_ids = [diff_id]. Keys sorted,
 * compact: the same inputs give the same bytes. Newly allocated; *id gets "sha256:HEX".
 */
char *imgf_image_config(json_t *container_config, const char *arch, const char *variant,
			const char *os, int64_t created, const char *created_by,
			const char *diff_id, char id[IMGF_DIGEST_ID_MAX]);

/*
 * A docker-archive ("docker save" layout) of one image, read in pieces: manifest.json
 * (RepoTags [repo_tag] when repo_tag is non-NULL), the config as HEX.json, and the layer as
 * HEX/layer.tar. The layer file is read while the archive is.
 */
struct imgf_image_archive;
struct imgf_image_archive *imgf_image_archive_open(const char *config_json, const char *layer_path,
						   const char *repo_tag, struct imgf_error **err);
/* Up to len bytes of the archive into buf; 0 at the end, -1 on error. */
ssize_t imgf_image_archive_read(struct imgf_image_archive *ia, char *buf, size_t len,
				struct imgf_error **err);
void imgf_image_archive_free(struct imgf_image_archive *ia);

#endif
