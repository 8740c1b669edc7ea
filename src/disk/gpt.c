/* The backup GPT moved to the end of an extended disk (gpt.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "error.h"
#include "gpt.h"
#include "util.h"

#define GPT_SIGNATURE "EFI PART"
#define GPT_HEADER_MIN 92
#define GPT_ARRAY_MAX (4u << 20) /* entries * entry size past this is no real table */

/* Offsets in the header (UEFI 2.10, table 5.5). */
enum {
	H_SIZE = 12,
	H_CRC = 16,
	H_MY_LBA = 24,
	H_ALT_LBA = 32,
	H_LAST_USABLE = 48,
	H_ENTRIES_LBA = 72,
	H_ENTRIES = 80,
	H_ENTRY_SIZE = 84,
	H_ARRAY_CRC = 88,
};

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t gpt_crc(const unsigned char *p, size_t n)
{
	return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* The header's CRC32 over its first hsize bytes, its own CRC field taken as zero. */
static uint32_t header_crc(const unsigned char *h, uint32_t hsize)
{
	unsigned char tmp[4096];
	memcpy(tmp, h, hsize);
	put32(tmp + H_CRC, 0);
	return gpt_crc(tmp, hsize);
}

static int read_at(int fd, const char *path, void *buf, size_t len, uint64_t off,
		   struct imgf_error **err)
{
	ssize_t n = pread(fd, buf, len, (off_t)off);
	if (n < 0)
		return imgf_error_errno(err, errno, "read '%s'", path);
	if ((size_t)n != len)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "read '%s': it ends before byte %" PRIu64, path, off + len);
	return 0;
}

static int write_at(int fd, const char *path, const void *buf, size_t len, uint64_t off,
		    struct imgf_error **err)
{
	ssize_t n = pwrite(fd, buf, len, (off_t)off);
	if (n < 0)
		return imgf_error_errno(err, errno, "write '%s'", path);
	if ((size_t)n != len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': short write", path);
	return 0;
}

/* A protective MBR's 0xEE entry that covered the disk up to old_last now covers new_last. */
static int fit_protective_mbr(int fd, const char *path, uint64_t old_last, uint64_t new_last,
			      struct imgf_error **err)
{
	unsigned char mbr[512];
	if (read_at(fd, path, mbr, sizeof(mbr), 0, err) < 0)
		return -1;
	if (mbr[510] != 0x55 || mbr[511] != 0xaa)
		return 0;
	uint32_t want_old = old_last > UINT32_MAX ? UINT32_MAX : (uint32_t)old_last;
	uint32_t want_new = new_last > UINT32_MAX ? UINT32_MAX : (uint32_t)new_last;
	bool changed = false;
	for (int i = 0; i < 4; i++) {
		unsigned char *e = mbr + 446 + 16 * i;
		if (e[4] == 0xee && le32(e + 8) == 1 && le32(e + 12) == want_old) {
			put32(e + 12, want_new);
			changed = true;
		}
	}
	return changed ? write_at(fd, path, mbr, sizeof(mbr), 0, err) : 0;
}

static int relocate(int fd, const char *path, uint64_t size, bool *moved, struct imgf_error **err)
{
	unsigned char h[4096];
	uint32_t ss = 0;
	for (uint32_t try = 512; try <= 4096 && !ss; try *= 8) {
		if (size < 3 * (uint64_t)try)
			break;
		if (read_at(fd, path, h, try, try, err) < 0)
			return -1;
		if (!memcmp(h, GPT_SIGNATURE, 8))
			ss = try;
	}
	if (!ss)
		return 0; /* no GPT */
	uint32_t hsize = le32(h + H_SIZE);
	if (hsize < GPT_HEADER_MIN || hsize > ss)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': GPT header size %" PRIu32 " is not %d to %" PRIu32,
				      path, hsize, GPT_HEADER_MIN, ss);
	uint32_t crc = header_crc(h, hsize);
	if (crc != le32(h + H_CRC))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': the primary GPT header's CRC32 is %08" PRIx32
				      ", it says %08" PRIx32,
				      path, crc, le32(h + H_CRC));
	uint64_t total = size / ss, new_last = total - 1;
	uint64_t old_alt = le64(h + H_ALT_LBA), last_usable = le64(h + H_LAST_USABLE);
	uint64_t entries_lba = le64(h + H_ENTRIES_LBA);
	uint32_t n = le32(h + H_ENTRIES), esz = le32(h + H_ENTRY_SIZE);
	if (le64(h + H_MY_LBA) != 1)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': the primary GPT header's MyLBA is %" PRIu64 ", not 1",
				      path, le64(h + H_MY_LBA));
	if (esz < 128 || (esz & (esz - 1)) || n == 0 || (uint64_t)n * esz > GPT_ARRAY_MAX)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': GPT partition array of %" PRIu32 " entries of %" PRIu32
				      " bytes (want entries of 128 * 2^k bytes, at most %u in all)",
				      path, n, esz, GPT_ARRAY_MAX);
	size_t array_bytes = (size_t)n * esz;
	uint64_t array_sectors = (array_bytes + ss - 1) / ss;
	if (old_alt == new_last) {
		*moved = false;
		return 0;
	}
	/* (each bound checked so that no sum or difference wraps: the guest wrote these) */
	if (entries_lba < 2 || entries_lba > total || array_sectors > total - entries_lba ||
	    old_alt >= new_last || last_usable >= old_alt || array_sectors >= new_last ||
	    new_last - array_sectors <= last_usable)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': GPT of a disk of %" PRIu64
				      " sectors (alternate LBA %" PRIu64
				      ", last usable LBA %" PRIu64 ", entries at LBA %" PRIu64
				      ") does not fit a disk extended to %" PRIu64 " sectors",
				      path, old_alt + 1, old_alt, last_usable, entries_lba, total);
	_cleanup_free_ unsigned char *array = xmalloc(array_sectors * ss);
	memset(array, 0, array_sectors * ss);
	if (read_at(fd, path, array, array_bytes, entries_lba * ss, err) < 0)
		return -1;
	if (gpt_crc(array, array_bytes) != le32(h + H_ARRAY_CRC))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': the GPT partition array's CRC32 is %08" PRIx32
				      ", its header says %08" PRIx32,
				      path, gpt_crc(array, array_bytes), le32(h + H_ARRAY_CRC));

	/* The old backup, to be cleared when it is one: a header saying it is at old_alt, and
	 * its array where it says, between the last usable LBA and the header. Nothing else is
	 * zeroed, whatever the primary header claims. */
	unsigned char old[4096];
	if (read_at(fd, path, old, ss, old_alt * ss, err) < 0)
		return -1;
	bool old_header = !memcmp(old, GPT_SIGNATURE, 8) && le64(old + H_MY_LBA) == old_alt;
	uint64_t old_array_lba = old_header ? le64(old + H_ENTRIES_LBA) : 0;
	bool old_array = old_header && old_array_lba > last_usable && old_array_lba < old_alt &&
			 old_alt - old_array_lba >= array_sectors;

	uint64_t new_array_lba = new_last - array_sectors;
	unsigned char primary[4096] = {0}, backup[4096] = {0};
	memcpy(primary, h, ss);
	put64(primary + H_ALT_LBA, new_last);
	put64(primary + H_LAST_USABLE, new_array_lba - 1);
	put32(primary + H_CRC, header_crc(primary, hsize));
	memcpy(backup, primary, hsize);
	put64(backup + H_MY_LBA, new_last);
	put64(backup + H_ALT_LBA, 1);
	put64(backup + H_ENTRIES_LBA, new_array_lba);
	put32(backup + H_CRC, header_crc(backup, hsize));

	/* the old copies go first: the new ones may overlap them (a disk extended by less
	 * than the array) */
	_cleanup_free_ unsigned char *zeros = xcalloc(array_sectors, ss);
	if ((old_array &&
	     write_at(fd, path, zeros, array_sectors * ss, old_array_lba * ss, err) < 0) ||
	    (old_header && write_at(fd, path, zeros, ss, old_alt * ss, err) < 0) ||
	    write_at(fd, path, array, array_sectors * ss, new_array_lba * ss, err) < 0 ||
	    write_at(fd, path, backup, ss, new_last * ss, err) < 0 ||
	    write_at(fd, path, primary, ss, ss, err) < 0 ||
	    fit_protective_mbr(fd, path, old_alt, new_last, err) < 0)
		return -1;
	*moved = true;
	return 0;
}

int imgf_gpt_relocate_backup(const char *path, uint64_t size, bool *moved, struct imgf_error **err)
{
	*moved = false;
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	if (relocate(fd, path, size, moved, err) < 0)
		return -1;
	if (*moved && fdatasync(fd) < 0)
		return imgf_error_errno(err, errno, "write '%s'", path);
	return 0;
}
