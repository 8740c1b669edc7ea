/* The footer of a fixed VHD (vhd.h). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "vhd.h"

#define VHD_EPOCH 946684800 /* 2000-01-01 00:00:00 UTC */

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

/* The specification's CHS calculation (Appendix: "CHS Calculation"), sectors of 512 bytes. */
struct imgf_vhd_geometry imgf_vhd_geometry(uint64_t size)
{
	uint64_t total = size / 512;
	uint64_t spt, heads, cth;
	if (total > 65535ULL * 16 * 255)
		total = 65535ULL * 16 * 255;
	if (total >= 65535ULL * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = total / spt;
	} else {
		spt = 17;
		cth = total / spt;
		heads = (cth + 1023) / 1024;
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024 || heads > 16) {
			spt = 31;
			heads = 16;
			cth = total / spt;
		}
		if (cth >= heads * 1024) {
			spt = 63;
			heads = 16;
			cth = total / spt;
		}
	}
	return (struct imgf_vhd_geometry){
		.cylinders = (uint16_t)(cth / heads),
		.heads = (uint8_t)heads,
		.sectors = (uint8_t)spt,
	};
}

uint32_t imgf_vhd_checksum(const unsigned char footer[IMGF_VHD_FOOTER_SIZE])
{
	uint32_t sum = 0;
	for (size_t i = 0; i < IMGF_VHD_FOOTER_SIZE; i++)
		if (i < IMGF_VHD_CHECKSUM || i >= IMGF_VHD_CHECKSUM + 4)
			sum += footer[i];
	return ~sum;
}

/*
 * The creator application is "qem2", the one qemu-img writes with force_size=on: it tells
 * readers that take the size from the geometry unless told otherwise (qemu, Virtual PC) to
 * take the current size, as Hyper-V and Azure do. The geometry cannot hold a whole-MiB size
 * in general, so under any other creator qemu would read a shorter disk.
 */
void imgf_vhd_footer(unsigned char out[IMGF_VHD_FOOTER_SIZE], uint64_t size, int64_t unix_time,
		     const unsigned char unique_id[16])
{
	memset(out, 0, IMGF_VHD_FOOTER_SIZE);
	memcpy(out + IMGF_VHD_COOKIE, "conectix", 8);
	put_be(out + IMGF_VHD_FEATURES, 2, 4);
	put_be(out + IMGF_VHD_VERSION, 0x00010000, 4);
	put_be(out + IMGF_VHD_DATA_OFFSET, UINT64_MAX, 8);
	int64_t t = unix_time - VHD_EPOCH;
	put_be(out + IMGF_VHD_TIMESTAMP,
	       (uint64_t)(t < 0		   ? 0
			  : t > UINT32_MAX ? UINT32_MAX
					   : t),
	       4);
	memcpy(out + IMGF_VHD_CREATOR_APP, "qem2", 4);
	put_be(out + IMGF_VHD_CREATOR_VER, 0x00010000, 4);
	memcpy(out + IMGF_VHD_CREATOR_OS, "Wi2k", 4);
	put_be(out + IMGF_VHD_ORIG_SIZE, size, 8);
	put_be(out + IMGF_VHD_CURRENT_SIZE, size, 8);
	struct imgf_vhd_geometry g = imgf_vhd_geometry(size);
	put_be(out + IMGF_VHD_GEOMETRY, g.cylinders, 2);
	out[IMGF_VHD_GEOMETRY + 2] = g.heads;
	out[IMGF_VHD_GEOMETRY + 3] = g.sectors;
	put_be(out + IMGF_VHD_DISK_TYPE, IMGF_VHD_TYPE_FIXED, 4);
	memcpy(out + IMGF_VHD_UNIQUE_ID, unique_id, 16);
	put_be(out + IMGF_VHD_CHECKSUM, imgf_vhd_checksum(out), 4);
}

int imgf_vhd_check(int fd, const char *path, struct imgf_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", path);
	if (st.st_size < IMGF_VHD_FOOTER_SIZE)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s' is too short for a vhd footer",
				      path);
	uint64_t data = (uint64_t)st.st_size - IMGF_VHD_FOOTER_SIZE;
	unsigned char f[IMGF_VHD_FOOTER_SIZE];
	ssize_t n = pread(fd, f, sizeof(f), (off_t)data);
	if (n < 0)
		return imgf_error_errno(err, errno, "read '%s'", path);
	if (n != (ssize_t)sizeof(f))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': short read", path);
	const char *bad = NULL;
	uint64_t cur = get_be(f + IMGF_VHD_CURRENT_SIZE, 8);
	struct imgf_vhd_geometry g = imgf_vhd_geometry(cur);
	if (memcmp(f + IMGF_VHD_COOKIE, "conectix", 8) != 0)
		bad = "cookie is not 'conectix'";
	else if ((get_be(f + IMGF_VHD_FEATURES, 4) & 2) == 0)
		bad = "features lack the reserved bit";
	else if (get_be(f + IMGF_VHD_VERSION, 4) != 0x00010000)
		bad = "version is not 1.0";
	else if (get_be(f + IMGF_VHD_DATA_OFFSET, 8) != UINT64_MAX)
		bad = "data offset is not that of a fixed disk";
	else if (get_be(f + IMGF_VHD_DISK_TYPE, 4) != IMGF_VHD_TYPE_FIXED)
		bad = "disk type is not 2 (fixed)";
	else if (cur != data || get_be(f + IMGF_VHD_ORIG_SIZE, 8) != data)
		bad = "sizes are not the bytes before the footer";
	else if (cur % IMGF_VHD_ALIGN != 0)
		bad = "size is not a whole MiB";
	else if (get_be(f + IMGF_VHD_GEOMETRY, 2) != g.cylinders ||
		 f[IMGF_VHD_GEOMETRY + 2] != g.heads || f[IMGF_VHD_GEOMETRY + 3] != g.sectors)
		bad = "geometry is not the one its size gives";
	else if (get_be(f + IMGF_VHD_CHECKSUM, 4) != imgf_vhd_checksum(f))
		bad = "checksum does not match";
	if (bad)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': not a fixed vhd azure takes: %s",
				      path, bad);
	return 0;
}
