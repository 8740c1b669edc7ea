/*
 * What the parts of the qemu builder share: qemu.c (its options, commit and ops),
 * qemu-guest.c (the build disk, the appliance over it and the target ops), qemu-cache.c (the
 * step cache) and qemu-boot.c (the boot check); and the pieces tests/unit/test-qemu.c tests
 * without an appliance or libvirt. Not for other users.
 */
#ifndef IMGF_QEMU_INTERNAL_H
#define IMGF_QEMU_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "target.h"

struct guestfs_h;
struct imgf_artifact;
struct imgf_build;
struct imgf_builder_cache_ops;
struct imgf_error;
struct imgf_input;

/* UEFI for the boot check: Debian's ovmf package (4 MiB flash, no Secure Boot, so it runs on
 * the i440fx machine without SMM). */
#define OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"
#define OVMF_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"

struct qemu_target {
	struct imgf_target t;
	struct guestfs_h *g;
	char *work_dir; /* overlay and outputs: 0700, 0711 only while libvirt boots from it */
	char *overlay;
};

/* ---- the guest (qemu-guest.c) ------------------------------------------------------------ */

/* The prepare hook: the overlay on the base image (fetched and verified) or on the deepest
 * cached step's disk, and the appliance over it. */
int imgf_qemu_prepare(struct imgf_build *b, struct imgf_target **out, struct imgf_error **err);

/* The appliance over qt's overlay, the guest's filesystems mounted (the root grown to
 * disk_size first with `grow`). */
int imgf_qemu_launch(struct imgf_build *b, struct qemu_target *qt, bool grow,
		     struct imgf_error **err);

/* The base image as an input: fetched, verified and cached like any other. */
void imgf_qemu_base_input(struct imgf_build *b, struct imgf_input *in);

/* Whether the builder runs guests under KVM: the accelerator key, auto by default. */
bool imgf_qemu_use_kvm(const struct imgf_build *b);

/* qemu-img creates files 0644 (umask 022): a disk of the work directory is 0600. */
int imgf_qemu_disk_private(const char *path, struct imgf_error **err);

/* A libguestfs call failed: err says what, with libguestfs's last error. Returns -1. */
int imgf_qemu_guestfs_fail(struct guestfs_h *g, struct imgf_error **err, const char *what);

/*
 * A fresh work directory under $TMPDIR (else /var/tmp), often a shared one: 0700, so no
 * other user reads the disk being built; the boot check opens it to 0711 (search only)
 * while libvirt's qemu user runs from it. *out is set either way (free it).
 */
int imgf_qemu_work_dir_make(char **out, struct imgf_error **err);

/* A partition as libguestfs lists it: its number and its extent in bytes (end inclusive). */
struct imgf_qemu_part {
	int num;
	uint64_t start, end;
};

/* How the root partition grows: its number and its new last sector. */
struct imgf_qemu_grow {
	int partnum;
	uint64_t end_sector;
};

/*
 * Whether the root partition (number `root` among parts[0..n)) can grow into a disk of
 * disk_bytes with sector_size-byte sectors and partition table `table` ("gpt" or "msdos"):
 * only the last partition on the disk BY POSITION (start) can, up to the last usable sector
 * (before GPT's backup header; within MBR's 32-bit sizes). 1 with *out set when it grows,
 * 0 when it ends at that sector already, < 0 with err naming the layout when it cannot grow
 * (another partition after it, an MBR logical partition, an unknown table).
 */
int imgf_qemu_grow_plan(const struct imgf_qemu_part *parts, size_t n, int root, const char *table,
			uint64_t disk_bytes, uint64_t sector_size, struct imgf_qemu_grow *out,
			struct imgf_error **err);

/* ---- the step cache (qemu-cache.c) ------------------------------------------------------- */

extern const struct imgf_builder_cache_ops imgf_qemu_cache;

/* ---- the boot check (qemu-boot.c) -------------------------------------------------------- */

enum boot_mode {
	BOOT_NONE,
	BOOT_RUNTIME,
	BOOT_KUBEADM
};

/* boot_check: true/false (JSON or string) or "kubeadm"; -1 for anything else. */
int imgf_qemu_boot_mode(const struct imgf_build *b);

/* firmware: "bios" or "uefi" (NULL for anything else). */
const char *imgf_qemu_firmware(const struct imgf_build *b);

/*
 * Boot `image` (the compressed image in qt's work directory) once on an overlay, with the
 * boot script of `mode` on a NoCloud seed, the serial console written to `console`; fails
 * when a check fails, the guest stops or boot_timeout passes.
 */
int imgf_qemu_boot_check(struct imgf_build *b, struct qemu_target *qt, const char *image,
			 const char *console, enum boot_mode mode, struct imgf_error **err);

/* The boot check's libvirt domain. loader and nvram are NULL for BIOS (SeaBIOS); for UEFI
 * the read-only OVMF code and the domain's own copy of the OVMF variables. */
struct imgf_qemu_domain {
	bool kvm;
	const char *name;
	long memory_mb, cpus;
	const char *disk, *seed, *console;
	const char *loader, *nvram;
};

/* The domain XML for d; names and paths are escaped as XML text. */
char *imgf_qemu_domain_xml(const struct imgf_qemu_domain *d);

#endif
