/*
 * The qemu builder's pieces that need neither an appliance nor libvirt (qemu-internal.h): the
 * work directory in a shared TMPDIR is its owner's only; which root partition grows, and to where,
 * from the partition table alone; the boot check's domain under BIOS and under UEFI. (Builds and
 * boot checks are in t1255-t1290.)
 */
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "builders/qemu-internal.h"
#include "error.h"
#include "fsutil.h"
#include "test.h"
#include "util.h"

TEST(work_dir_in_a_shared_tmpdir_is_private)
{
	_cleanup_free_ char *shared = NULL;
	CHECK(make_temp_dir("test-qemu", &shared, NULL) == 0);
	CHECK(chmod(shared, 01777) == 0); /* as /tmp and /var/tmp are */
	const char *old = getenv("TMPDIR");
	_cleanup_free_ char *saved = old ? xstrdup(old) : NULL;
	setenv("TMPDIR", shared, 1);
	_cleanup_free_ char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_work_dir_make(&dir, &err) == 0);
	struct stat st;
	CHECK(dir && str_has_prefix(dir, shared) && stat(dir, &st) == 0);
	CHECK((st.st_mode & 07777) == 0700);
	imgf_error_free(err);
	if (saved)
		setenv("TMPDIR", saved, 1);
	else
		unsetenv("TMPDIR");
	rm_rf(shared, NULL);
}

#define MiB (1024ULL * 1024)
#define GiB (1024 * MiB)
/* A partition from its first and last 512-byte sector, as libguestfs gives it (bytes). */
#define PART(n, first, last)                                                      \
	{                                                                         \
		.num = (n), .start = (first)*512ULL, .end = ((last)*512ULL) + 511 \
	}

/* Debian genericcloud, grown from 3 GiB to 20 GiB: p14 BIOS boot, p15 ESP, p1 root last. */
static const struct imgf_qemu_part genericcloud[] = {
	PART(1, 262144, 6291422),
	PART(14, 2048, 4095),
	PART(15, 4096, 258047),
};

TEST(grow_plan_genericcloud_grows_partition_1_to_the_last_usable_gpt_sector)
{
	struct imgf_qemu_grow g = {0};
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_grow_plan(genericcloud, ARRAY_SIZE(genericcloud), 1, "gpt", 20 * GiB, 512,
				  &g, &err) == 1);
	CHECK(err == NULL);
	CHECK(g.partnum == 1);
	/* 41943040 sectors; the backup entries (32) and header (1) take the last 33 */
	CHECK(g.end_sector == 41943040ULL - 34);
	imgf_error_free(err);
}

/* The old rule (the highest number is last) would have refused this layout and the next. */
TEST(grow_plan_ubuntu_2404_with_boot_partition_16_before_the_root_grows_it)
{
	static const struct imgf_qemu_part ubuntu[] = {
		PART(1, 2099200, 7339998),
		PART(14, 2048, 10239),
		PART(15, 10240, 227327),
		PART(16, 227328, 2097152),
	};
	struct imgf_qemu_grow g = {0};
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_grow_plan(ubuntu, ARRAY_SIZE(ubuntu), 1, "gpt", 20 * GiB, 512, &g, &err) ==
	      1);
	CHECK(g.partnum == 1 && g.end_sector == 41943040ULL - 34);
	imgf_error_free(err);
}

TEST(grow_plan_a_root_followed_by_another_partition_is_refused_naming_the_layout)
{
	/* root p1 first, then a swap partition p2 after it; p14/p15 before */
	static const struct imgf_qemu_part layout[] = {
		PART(2, 4194304, 6291422),
		PART(1, 262144, 4194303),
		PART(15, 4096, 258047),
		PART(14, 2048, 4095),
	};
	struct imgf_qemu_grow g = {0};
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_grow_plan(layout, ARRAY_SIZE(layout), 1, "gpt", 20 * GiB, 512, &g, &err) <
	      0);
	CHECK_ERR(err, "its partition 1 is not the last on the disk, partition 2 follows it");
	CHECK_ERR(err,
		  "(gpt, by position: 14 at sector 2048, 15 at sector 4096, 1 at sector 262144 "
		  "(root), 2 at sector 4194304)");
	imgf_error_free(err);
	/* the same table with the root on p2 grows p2 */
	err = NULL;
	CHECK(imgf_qemu_grow_plan(layout, ARRAY_SIZE(layout), 2, "gpt", 20 * GiB, 512, &g, &err) ==
	      1);
	CHECK(g.partnum == 2);
	imgf_error_free(err);
}

TEST(grow_plan_mbr_grows_to_the_last_sector_and_refuses_a_logical_root)
{
	static const struct imgf_qemu_part one[] = {PART(1, 2048, 6291455)};
	struct imgf_qemu_grow g = {0};
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_grow_plan(one, 1, 1, "msdos", 4 * GiB, 512, &g, &err) == 1);
	CHECK(g.partnum == 1 && g.end_sector == 4 * GiB / 512 - 1);
	/* an MBR entry counts 2^32 - 1 sectors at most */
	CHECK(imgf_qemu_grow_plan(one, 1, 1, "msdos", 4096 * GiB, 512, &g, &err) == 1);
	CHECK(g.end_sector == 2048ULL + UINT32_MAX - 1);
	static const struct imgf_qemu_part logical[] = {
		PART(1, 2048, 1050623),
		PART(2, 1050624, 6291455), /* the extended partition */
		PART(5, 1052672, 6291455),
	};
	CHECK(imgf_qemu_grow_plan(logical, 3, 5, "msdos", 20 * GiB, 512, &g, &err) < 0);
	CHECK_ERR(err, "its partition 5 is an MBR logical partition");
	imgf_error_free(err);
}

TEST(grow_plan_nothing_to_grow_when_the_root_ends_at_the_last_usable_sector)
{
	static const struct imgf_qemu_part full[] = {
		PART(14, 2048, 4095),
		PART(1, 262144, 6291422),
	};
	struct imgf_qemu_grow g = {.partnum = -1};
	struct imgf_error *err = NULL;
	/* 3 GiB = 6291456 sectors: 6291422 is the last usable one */
	CHECK(imgf_qemu_grow_plan(full, 2, 1, "gpt", 3 * GiB, 512, &g, &err) == 0);
	CHECK(err == NULL && g.partnum == -1);
}

TEST(grow_plan_4k_sectors_keep_gpt_backup_in_six_sectors)
{
	static const struct imgf_qemu_part p[] = {{.num = 1, .start = MiB, .end = GiB - 1}};
	struct imgf_qemu_grow g = {0};
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_grow_plan(p, 1, 1, "gpt", 2 * GiB, 4096, &g, &err) == 1);
	CHECK(g.end_sector == 2 * GiB / 4096 - 6);
	imgf_error_free(err);
}

TEST(grow_plan_unknown_table_or_missing_root_is_an_error)
{
	struct imgf_qemu_grow g = {0};
	struct imgf_error *err = NULL;
	CHECK(imgf_qemu_grow_plan(genericcloud, 3, 1, "loop", 20 * GiB, 512, &g, &err) < 0);
	CHECK_ERR(err, "partition table 'loop': expected gpt or msdos");
	imgf_error_free(err);
	err = NULL;
	CHECK(imgf_qemu_grow_plan(genericcloud, 3, 3, "gpt", 20 * GiB, 512, &g, &err) < 0);
	CHECK_ERR(err, "root partition 3 is not in the gpt partition table");
	imgf_error_free(err);
}

TEST(domain_bios_has_no_loader_and_uefi_names_ovmf_and_its_own_nvram)
{
	struct imgf_qemu_domain d = {
		.name = "imgforge-boot-x-1",
		.memory_mb = 2048,
		.cpus = 2,
		.disk = "/w/boot.qcow2",
		.seed = "/w/seed.iso",
		.console = "/w/console.log",
	};
	_cleanup_free_ char *bios = imgf_qemu_domain_xml(&d);
	CHECK(strstr(bios, "<domain type='qemu'>") != NULL);
	CHECK(strstr(bios, "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"));
	CHECK(strstr(bios, "loader") == NULL && strstr(bios, "nvram") == NULL);
	/* the seed is a read-only virtio disk, not an IDE CD-ROM */
	CHECK(strstr(bios, "<source file='/w/seed.iso'/><target dev='vdb' bus='virtio'/>"
			   "<readonly/>") != NULL);
	CHECK(strstr(bios, "bus='ide'") == NULL);
	d.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd";
	d.nvram = "/w/a&b'/nvram.fd";
	d.kvm = true;
	_cleanup_free_ char *uefi = imgf_qemu_domain_xml(&d);
	CHECK(strstr(uefi, "<domain type='kvm'>") != NULL);
	CHECK(strstr(uefi, "<loader readonly='yes' secure='no' type='pflash'>"
			   "/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"));
	CHECK(strstr(uefi, "<nvram>/w/a&amp;b&apos;/nvram.fd</nvram>"));
	CHECK(strstr(uefi, "<source file='/w/boot.qcow2'/>"));
}
