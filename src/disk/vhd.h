/*
 * The footer of a fixed VHD (Microsoft's Virtual Hard Disk Image Format Specification,
 * "Hard Disk Footer Format"): a fixed VHD is the disk's bytes followed by these 512 bytes,
 * every field big-endian. Azure takes only fixed VHDs whose virtual size is a whole MiB.
 */
#ifndef IMGF_VHD_H
#define IMGF_VHD_H

#include <stdint.h>

struct imgf_error;

#define IMGF_VHD_FOOTER_SIZE 512
#define IMGF_VHD_ALIGN (1024 * 1024) /* Azure: the virtual size is a whole MiB */
#define IMGF_VHD_TYPE_FIXED 2

/* Field offsets, as the specification lists them. */
enum {
	IMGF_VHD_COOKIE = 0,	    /* "conectix" */
	IMGF_VHD_FEATURES = 8,	    /* 2: the reserved bit, always set */
	IMGF_VHD_VERSION = 12,	    /* 0x00010000 */
	IMGF_VHD_DATA_OFFSET = 16,  /* all ones for a fixed disk */
	IMGF_VHD_TIMESTAMP = 24,    /* seconds since 2000-01-01 00:00:00 UTC */
	IMGF_VHD_CREATOR_APP = 28,  /* 4 characters */
	IMGF_VHD_CREATOR_VER = 32,  /* major.minor, 16 bits each */
	IMGF_VHD_CREATOR_OS = 36,   /* "Wi2k" or "Mac " */
	IMGF_VHD_ORIG_SIZE = 40,    /* bytes */
	IMGF_VHD_CURRENT_SIZE = 48, /* bytes */
	IMGF_VHD_GEOMETRY = 56,	    /* cylinders (16 bits), heads (8), sectors per track (8) */
	IMGF_VHD_DISK_TYPE = 60,
	IMGF_VHD_CHECKSUM = 64,	 /* one's complement of the sum of the footer's bytes, itself 0 */
	IMGF_VHD_UNIQUE_ID = 68, /* 16 bytes */
	IMGF_VHD_SAVED_STATE = 84,
};

struct imgf_vhd_geometry {
	uint16_t cylinders;
	uint8_t heads, sectors;
};

/* The CHS geometry the specification's algorithm gives for a disk of `size` bytes. */
struct imgf_vhd_geometry imgf_vhd_geometry(uint64_t size);

/* The footer's checksum: the one's complement of the sum of its bytes, the checksum field
 * counted as zero. */
uint32_t imgf_vhd_checksum(const unsigned char footer[IMGF_VHD_FOOTER_SIZE]);

/*
 * A fixed disk's footer for `size` bytes (a whole MiB), made at `unix_time` (clamped to what
 * the field holds), with `unique_id`.
 */
void imgf_vhd_footer(unsigned char out[IMGF_VHD_FOOTER_SIZE], uint64_t size, int64_t unix_time,
		     const unsigned char unique_id[16]);

/*
 * Check that the last 512 bytes of the open file `fd` (`path` for messages) are the footer of
 * a fixed VHD Azure takes: cookie, features, version, data offset, fixed type, original and
 * current size equal to the bytes before the footer and a whole MiB, the geometry the
 * specification gives for that size, and the checksum.
 */
int imgf_vhd_check(int fd, const char *path, struct imgf_error **err);

#endif
