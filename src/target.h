/*
 * A target is the thing being built: a container, a disk image, a directory. Provisioners
 * act on it only through these operations, so the same provisioner works under every
 * builder. All three operations MUST be set.
 */
#ifndef IMGF_TARGET_H
#define IMGF_TARGET_H

#include <stddef.h>
#include <sys/types.h>

struct imgf_error;

struct imgf_exec {
	char *const *argv;   /* argv[0] is looked up in the target's PATH */
	char *const *env;    /* "K=V" added to the target's environment; may be NULL */
	const char *workdir; /* NULL = "/" */
	const char *label;   /* prefix for streamed output */
	/* Receives output as it arrives (stream 1 = stdout, 2 = stderr); NULL = log it. */
	void (*on_output)(void *opaque, int stream, const char *data, size_t len);
	void *opaque;
};

struct imgf_target;

struct imgf_target_ops {
	/* Run a command to completion; *status receives its exit status. < 0 only when the
	 * command could not be run or output could not be read. */
	int (*exec)(struct imgf_target *t, const struct imgf_exec *x, int *status,
		    struct imgf_error **err);
	/* Unpack the (uncompressed) tar file at tar_path into dest_dir, an existing absolute
	 * directory in the target, keeping the members' modes and owners. */
	int (*put_tar)(struct imgf_target *t, const char *tar_path, const char *dest_dir,
		       struct imgf_error **err);
	/* Write a tar of `path` (file or directory) in the target to the host file out_tar. */
	int (*get_tar)(struct imgf_target *t, const char *path, const char *out_tar,
		       struct imgf_error **err);
};

struct imgf_target {
	const struct imgf_target_ops *ops;
	void *priv;	 /* the builder's */
	char *name;	 /* for messages: "container 'imgforge-…'" */
	char *stage_dir; /* host directory for temporary tars, owned by the engine */
};

/* Run argv; a non-zero exit is an error naming the command and status. */
int imgf_target_run(struct imgf_target *t, const char *label, char *const *argv, char *const *env,
		    struct imgf_error **err);
/* Run a shell script with `/bin/sh -ec`. */
int imgf_target_sh(struct imgf_target *t, const char *label, const char *script, char *const *env,
		   struct imgf_error **err);
/* Like imgf_target_run, capturing stdout (capped) instead of logging it. */
int imgf_target_capture(struct imgf_target *t, const char *label, char *const *argv, char **out,
			struct imgf_error **err);
/* Write data as a file at an absolute path in the target, owned by root. */
int imgf_target_put_data(struct imgf_target *t, const char *path, const void *data, size_t len,
			 mode_t mode, struct imgf_error **err);
/* Copy a host file to an absolute path in the target (mode 0 = the host file's). */
int imgf_target_put_file(struct imgf_target *t, const char *host_path, const char *path,
			 mode_t mode, struct imgf_error **err);
/* Put a tar file built by the caller (names relative to "/") into the target's root. */
int imgf_target_put_root_tar(struct imgf_target *t, const char *tar_path, struct imgf_error **err);
/* A fresh path for a staging tar in t->stage_dir (newly allocated; caller unlinks). */
char *imgf_target_stage_path(struct imgf_target *t, const char *name);

#endif
