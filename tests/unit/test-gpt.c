/*
 * The backup GPT moved to the new end of an extended disk (src/disk/gpt.c), on small disks laid
 * out by sgdisk (gdisk): both headers and both arrays are read back here field by field with
 * their CRC32s recomputed, and sgdisk itself verifies the result. A disk without a GPT and a
 * GPT that fails its checksum are not touched.
 *
 * Without sgdisk the tests are reported as skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "error.h"
#include "fsutil.h"
#include "gpt.h"
#include "run.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

#define SS 512
#define OLD_SIZE (4 * 1024 * 1024 + 7 * SS) /* a disk whose end is not a whole MiB */
#define NEW_SIZE (6 * 1024 * 1024)
#define ARRAY_SECTORS 32 /* sgdisk's default: 128 entries of 128 bytes */

static bool have_sgdisk(void)
{
	return access("/usr/sbin/sgdisk", X_OK) == 0 || access("/sbin/sgdisk", X_OK) == 0;
}

static char *sgdisk(char **argv, int *status)
{
	struct strbuf out = STRBUF_INIT;
	struct imgf_error *err = NULL;
	*status = imgf_run(argv, &out, &err) < 0 ? 1 : 0;
	if (err && *status)
		strbuf_addf(&out, "%s", err->msg);
	imgf_error_free(err);
	return strbuf_detach(&out, NULL);
}

/* dir/disk.raw of OLD_SIZE bytes: GPT, p1 1 MiB at 1 MiB, p2 from 2 MiB to the end. */
static char *make_disk(const char *dir)
{
	char *path = path_join(dir, "disk.raw");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, OLD_SIZE) == 0);
	if (fd >= 0)
		close(fd);
	char *argv[] = {"sgdisk",   "-o", "-n",	    "1:2048:4095", "-t",     "1:ef00", "-n",
			"2:4096:0", "-t", "2:8300", "-c",	   "2:root", path,     NULL};
	int st;
	_cleanup_free_ char *out = sgdisk(argv, &st);
	CHECK(st == 0);
	if (st)
		fprintf(stderr, "  %s\n", out);
	return path;
}

static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void read_at(const char *path, void *buf, size_t len, uint64_t off)
{
	memset(buf, 0, len);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && pread(fd, buf, len, (off_t)off) == (ssize_t)len);
	if (fd >= 0)
		close(fd);
}

static uint32_t crc(const unsigned char *p, size_t n)
{
	return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* The header at `lba` says MyLBA lba, AlternateLBA alt, and both CRC32s hold; its array. */
static void check_header(const char *path, uint64_t lba, uint64_t alt, uint64_t entries,
			 unsigned char *array)
{
	unsigned char h[SS];
	read_at(path, h, SS, lba * SS);
	CHECK(memcmp(h, "EFI PART", 8) == 0);
	uint32_t hsize = (uint32_t)le(h + 12, 4);
	CHECK(hsize == 92);
	uint32_t want = (uint32_t)le(h + 16, 4);
	memset(h + 16, 0, 4);
	CHECK(crc(h, hsize) == want);
	CHECK(le(h + 24, 8) == lba);
	CHECK(le(h + 32, 8) == alt);
	CHECK(le(h + 72, 8) == entries);
	CHECK(le(h + 80, 4) * le(h + 84, 4) == ARRAY_SECTORS * SS);
	read_at(path, array, ARRAY_SECTORS * SS, entries * SS);
	CHECK(crc(array, ARRAY_SECTORS * SS) == (uint32_t)le(h + 88, 4));
}

TEST(the_backup_gpt_moves_to_the_last_sector_of_the_extended_disk)
{
	if (!have_sgdisk())
		SKIP("needs 'sgdisk' (Debian package gdisk)");
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-gpt", &dir, NULL) == 0);
	_cleanup_free_ char *disk = make_disk(dir);
	unsigned char before[ARRAY_SECTORS * SS], primary[ARRAY_SECTORS * SS],
		backup[ARRAY_SECTORS * SS];
	uint64_t old_last = OLD_SIZE / SS - 1, last = NEW_SIZE / SS - 1;
	check_header(disk, 1, old_last, 2, before);

	CHECK(truncate(disk, NEW_SIZE) == 0);
	bool moved = false;
	struct imgf_error *err = NULL;
	CHECK(imgf_gpt_relocate_backup(disk, NEW_SIZE, &moved, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	CHECK(moved);

	/* the primary points at the new last sector; the backup is there, its array before it,
	 * the same entries as before */
	check_header(disk, 1, last, 2, primary);
	check_header(disk, last, 1, last - ARRAY_SECTORS, backup);
	CHECK(memcmp(before, primary, sizeof(before)) == 0);
	CHECK(memcmp(primary, backup, sizeof(primary)) == 0);
	unsigned char h[SS];
	read_at(disk, h, SS, SS);
	CHECK(le(h + 48, 8) == last - ARRAY_SECTORS - 1); /* last usable LBA */
	/* the old backup header is gone */
	read_at(disk, h, SS, old_last * SS);
	CHECK(memcmp(h, "EFI PART", 8) != 0);
	/* the protective MBR covers the new disk */
	unsigned char mbr[SS];
	read_at(disk, mbr, SS, 0);
	CHECK(mbr[446 + 4] == 0xee && le(mbr + 446 + 12, 4) == last);

	/* gdisk's own verdict */
	char *verify[] = {"sgdisk", "-v", disk, NULL};
	int st;
	_cleanup_free_ char *out = sgdisk(verify, &st);
	CHECK(st == 0);
	if (!strstr(out, "No problems found"))
		fprintf(stderr, "  sgdisk -v: %s\n", out);
	CHECK(strstr(out, "No problems found") != NULL);
	/* a second call finds it in place */
	CHECK(imgf_gpt_relocate_backup(disk, NEW_SIZE, &moved, NULL) == 0);
	CHECK(!moved);
	CHECK(rm_rf(dir, NULL) == 0);
}

/* The file's bytes. */
static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL;
	CHECK(read_file(path, 64 << 20, &buf, len, NULL) == 0);
	return buf;
}

TEST(a_disk_without_a_gpt_is_left_as_it_is)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-gpt", &dir, NULL) == 0);
	_cleanup_free_ char *disk = path_join(dir, "disk.raw");
	/* an MBR disk: a boot signature and one Linux partition, no GPT at LBA 1 */
	static unsigned char mbr[SS];
	mbr[446 + 4] = 0x83;
	mbr[446 + 8] = 1;
	mbr[510] = 0x55;
	mbr[511] = 0xaa;
	CHECK(write_file_atomic(disk, (char *)mbr, sizeof(mbr), 0644, NULL) == 0);
	CHECK(truncate(disk, NEW_SIZE) == 0);
	size_t n1, n2;
	_cleanup_free_ char *a = slurp(disk, &n1);
	bool moved = true;
	CHECK(imgf_gpt_relocate_backup(disk, NEW_SIZE, &moved, NULL) == 0);
	CHECK(!moved);
	_cleanup_free_ char *b = slurp(disk, &n2);
	CHECK(n1 == n2 && a && b && memcmp(a, b, n1) == 0);
	CHECK(rm_rf(dir, NULL) == 0);
}

TEST(a_gpt_that_fails_its_crc_is_refused_and_not_touched)
{
	if (!have_sgdisk())
		SKIP("needs 'sgdisk' (Debian package gdisk)");
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-gpt", &dir, NULL) == 0);
	_cleanup_free_ char *disk = make_disk(dir);
	for (int which = 0; which < 2; which++) {
		/* 0: a byte of the primary header (its disk GUID), 1: one of the array */
		int fd = open(disk, O_RDWR | O_CLOEXEC);
		unsigned char x = 0;
		off_t off = which == 0 ? SS + 60 : 2 * SS + 200;
		CHECK(fd >= 0 && pread(fd, &x, 1, off) == 1);
		x ^= 0x5a;
		CHECK(pwrite(fd, &x, 1, off) == 1);
		if (fd >= 0)
			close(fd);
		CHECK(truncate(disk, NEW_SIZE) == 0);
		size_t n1, n2;
		_cleanup_free_ char *a = slurp(disk, &n1);
		bool moved = true;
		struct imgf_error *err = NULL;
		CHECK(imgf_gpt_relocate_backup(disk, NEW_SIZE, &moved, &err) < 0);
		_cleanup_free_ char *want =
			xasprintf("'%s': %s", disk,
				  which == 0 ? "the primary GPT header's CRC32 is "
					     : "the GPT partition array's CRC32 is ");
		CHECK_ERR(err, want);
		imgf_error_free(err);
		CHECK(!moved);
		_cleanup_free_ char *b = slurp(disk, &n2);
		CHECK(n1 == n2 && a && b && memcmp(a, b, n1) == 0);
		/* undo, for the next */
		fd = open(disk, O_RDWR | O_CLOEXEC);
		x ^= 0x5a;
		CHECK(fd >= 0 && pwrite(fd, &x, 1, off) == 1);
		if (fd >= 0)
			close(fd);
	}
	CHECK(rm_rf(dir, NULL) == 0);
}
