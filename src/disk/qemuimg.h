/*
 * qemu-img, for the post-processors that turn the build's disk into another format (ova,
 * raw, vhd, gce): the one place they run it, through imgf_run (run.h), which logs the argv
 * and ends a failure's message with what the tool said. A disk whose name starts with '-' is
 * passed as "./NAME", so qemu-img never takes it for an option.
 */
#ifndef IMGF_QEMUIMG_H
#define IMGF_QEMUIMG_H

#include <stdint.h>

struct imgf_error;

/*
 * The disk's format and virtual size (`qemu-img info`). The format is the one its name says
 * (.qcow2, .raw: a raw disk is never probed, its guest wrote its first sector), else what
 * qemu-img probes, which must be qcow2 or raw. *format is static text.
 */
int imgf_qemu_img_info(const char *disk, const char **format, uint64_t *virtual_size,
		       struct imgf_error **err);

/* The bytes of the disk that hold data (`qemu-img map`, backing files included), at most its
 * virtual size. */
int imgf_qemu_img_populated(const char *disk, const char *format, uint64_t virtual_size,
			    uint64_t *populated, struct imgf_error **err);

/*
 * `qemu-img convert -f FORMAT -O OUT_FORMAT [-o OPTIONS] disk out`. A raw output is sparse:
 * qemu-img leaves holes where the disk reads as zeros.
 */
int imgf_qemu_img_convert(const char *disk, const char *format, const char *out_format,
			  const char *options, const char *out, struct imgf_error **err);

#endif
