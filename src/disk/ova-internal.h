/*
 * What the parts of the OVA post-processor share: ova.c (the tar, the work on a second core,
 * putting it together), ovf.c (the inputs and the OVF descriptor), vmdk.c (the vmdk's CID;
 * qemu-img runs through qemuimg.h). Not for other users.
 */
#ifndef IMGF_OVA_INTERNAL_H
#define IMGF_OVA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ova.h"
#include "strbuf.h"

/* A USTAR header holds a 100-byte name (with no '/' there is no prefix to spill into) and
 * an 11-digit octal size. Bigger disks would need OVF chunked files. */
#define USTAR_NAME_MAX 100
#define USTAR_SIZE_MAX 077777777777ULL
#define USTAR_TIME_MAX 077777777777LL

struct ova_prop {
	const char *key;
	char *value;
};

/* Everything the descriptor says, gathered and checked before anything is run. */
struct ova_spec {
	const char *name;
	long long cpus, memory_mb;
	const char *network;
	const char *os_type;
	int os_id;
	bool efi;
	struct ova_prop *props;
	size_t nprops;
	int64_t timestamp;
	/* from qemu-img */
	const char *disk_format;
	uint64_t capacity, populated, vmdk_size;
};

void imgf_ova_spec_release(struct ova_spec *s);
/* Check the name, the timestamp, the properties and the hardware variables into s. */
int imgf_ova_spec_gather(const struct imgf_ova_opts *o, struct ova_spec *s,
			 struct imgf_error **err);
/* The OVF descriptor for s (its disk fields filled from qemu-img) into sb. */
void imgf_ovf_build(const struct ova_spec *s, struct strbuf *sb);

/* Replace the vmdk's random CID by one derived from the name and timestamp. */
int imgf_vmdk_fix_cid(const char *vmdk, const struct ova_spec *s, struct imgf_error **err);

#endif
