/*
 * The GUID partition table of a raw disk file, as the UEFI specification (chapter 5) lays it
 * out: a primary header at LBA 1 and its partition entry array, a backup header in the last
 * sector with its own copy of the array just before it, each header and array guarded by a
 * CRC32 (zlib's, the IEEE polynomial the specification names).
 */
#ifndef IMGF_GPT_H
#define IMGF_GPT_H

#include <stdbool.h>
#include <stdint.h>

struct imgf_error;

/*
 * After a raw disk file was extended to `size` bytes (vhd and gce round the disk up): when
 * it has a GPT (512- or 4096-byte sectors), move the backup header to the new last sector and
 * the backup array just before it, extend the last usable LBA to the sector before that array,
 * point the primary header's alternate LBA there, recompute both headers' CRC32s, zero the old
 * backup header and array (beyond the old last usable LBA, so in no partition) and fit a
 * protective MBR's 0xEE entry that covered the old disk to the new one: what `sgdisk -e`
 * does. A disk without a GPT signature at LBA 1 is left as it is (*moved false). A GPT whose
 * primary header or array fails its CRC32, or whose fields are out of range, is an error
 * naming the file and the field, and nothing is written.
 */
int imgf_gpt_relocate_backup(const char *path, uint64_t size, bool *moved, struct imgf_error **err);

#endif
