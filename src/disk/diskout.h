/*
 * What the post-processors that write the build's disk in another format (raw, vhd, gce)
 * share: a private work directory in the output directory, the disk as a sparse raw file
 * there, and putting the result in place as OUTPUT/NAME.EXT with NAME.EXT.sha256, both
 * listed in the artifact's files. NAME is BUILD_NAME+kube-KUBERNETES_VERSION, as for the ova.
 *
 * A failure anywhere leaves nothing in the output directory but what was there: the work
 * directory goes with imgf_disk_out_release, and NAME.EXT arrives by rename, a stale
 * NAME.EXT.sha256 removed first and the new one written after it.
 */
#ifndef IMGF_DISKOUT_H
#define IMGF_DISKOUT_H

#include <stdint.h>
#include <sys/stat.h>

struct imgf_error;
struct imgf_pp_ctx;

struct imgf_disk_out {
	const char *pp;	       /* the post-processor, for messages */
	char *file;	       /* NAME.EXT */
	char *work;	       /* OUTPUT/.NAME.EXT.XXXXXX, 0700 */
	char *tmp;	       /* work/NAME.EXT: write the output here */
	char *final;	       /* OUTPUT/NAME.EXT */
	const char *disk;      /* the artifact's disk */
	const char *format;    /* its format: qcow2 or raw */
	uint64_t virtual_size; /* its virtual size in bytes */
};

/* Name the output for c's image, make the work directory and read the disk's format and
 * virtual size. On failure nothing is left; release o all the same. */
int imgf_disk_out_begin(struct imgf_pp_ctx *c, const char *pp, const char *ext,
			struct imgf_disk_out *o, struct imgf_error **err);

/*
 * The disk as a sparse raw file at `path` (qemu-img convert), extended with a hole to a
 * multiple of `align` bytes (1: as it is); an extended disk with a GPT gets its backup header
 * and array moved to the new end (gpt.h). *size gets its size.
 */
int imgf_disk_out_raw(const struct imgf_disk_out *o, const char *path, uint64_t align,
		      uint64_t *size, struct imgf_error **err);

/*
 * Put o->tmp in place as o->final with its sidecar and list both in c->art->files. With hex
 * (the sha256 the caller computed while writing, `hashed` the file's stat after its last
 * write) the file is not read again; with NULL it is hashed here.
 */
int imgf_disk_out_publish(struct imgf_pp_ctx *c, const struct imgf_disk_out *o, const char *hex,
			  const struct stat *hashed, struct imgf_error **err);

/* Remove the work directory (whatever is left in it) and free o. */
void imgf_disk_out_release(struct imgf_disk_out *o);

#endif
