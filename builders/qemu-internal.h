/* Pieces of builders/qemu.c exposed for unit tests (tests/unit/test-qemu.c). */
#ifndef IMGF_QEMU_INTERNAL_H
#define IMGF_QEMU_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imgf_error;

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
