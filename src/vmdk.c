/*
 * The OVA's disk: qemu-img (info, map, convert to a streamOptimized vmdk) and the CID in the
 * vmdk's embedded descriptor.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "digest.h"
#include "error.h"
#include "log.h"
#include "ova-internal.h"
#include "run.h"
#include "util.h"

#define QEMU_INFO_MAX (1024 * 1024)
#define QEMU_MAP_MAX (64 * 1024 * 1024)
#define VMDK_SECTOR 512
#define VMDK_DESC_MAX (1024 * 1024)

/* ---- qemu-img ---- */

/*
 * The format a file's name says, or NULL to let qemu-img probe. Probing a raw disk is unsafe
 * (the guest wrote its first sector and could make it look like a qcow2 with a backing file
 * on the host), so .raw and .qcow2 are taken at their word. ".img" says nothing: cloud
 * images by that name are qcow2.
 */
static const char *disk_format_from_name(const char *path)
{
	if (str_has_suffix(path, ".qcow2"))
		return "qcow2";
	if (str_has_suffix(path, ".raw"))
		return "raw";
	return NULL;
}

static int qemu_img_json(char *const *argv, size_t max, json_t **out, struct imgf_error **err)
{
	struct strbuf sb = STRBUF_INIT;
	sb.max = max;
	int r = imgf_run(argv, &sb, err);
	if (r == 0) {
		json_error_t jerr;
		*out = json_loadb(sb.buf, sb.len, 0, &jerr);
		if (!*out)
			r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s %s' printed bad JSON: %s",
					   argv[0], argv[1], jerr.text);
	}
	strbuf_release(&sb);
	return r;
}

static int json_u64(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* Capacity and format from `qemu-img info`. */
int imgf_vmdk_disk_info(const char *disk, struct ova_spec *s, struct imgf_error **err)
{
	const char *fmt = disk_format_from_name(disk);
	char *argv[7] = {"qemu-img", "info", "--output=json"};
	size_t argc = 3;
	if (fmt) {
		argv[argc++] = "-f";
		argv[argc++] = (char *)fmt;
	}
	argv[argc++] = (char *)disk;
	argv[argc] = NULL;
	json_t *info = NULL;
	if (qemu_img_json(argv, QEMU_INFO_MAX, &info, err) < 0)
		return -1;
	const char *probed = json_string_value(json_object_get(info, "format"));
	int r = 0;
	if (json_u64(info, "virtual-size", &s->capacity) < 0 || !probed)
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'qemu-img info' gave no virtual-size or format");
	else
		s->disk_format = fmt ? fmt : (strcmp(probed, "qcow2") == 0 ? "qcow2" : "raw");
	if (r == 0 && !fmt && strcmp(probed, "qcow2") != 0 && strcmp(probed, "raw") != 0)
		r = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"format '%s' is not supported (qcow2 or raw; a name ending in .qcow2 or "
			".raw says which)",
			probed);
	json_decref(info);
	return r;
}

/* The bytes holding data, from `qemu-img map` (backing files included): the OVF's
 * populatedSize, which vSphere uses to estimate the space a thin-provisioned copy takes. */
int imgf_vmdk_disk_populated(const char *disk, struct ova_spec *s, struct imgf_error **err)
{
	char *argv[] = {"qemu-img",   "map", "--output=json", "-f", (char *)s->disk_format,
			(char *)disk, NULL};
	json_t *map = NULL;
	if (qemu_img_json(argv, QEMU_MAP_MAX, &map, err) < 0)
		return -1;
	int r = 0;
	uint64_t sum = 0;
	size_t i;
	json_t *ext;
	if (!json_is_array(map))
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "'qemu-img map' did not print a list");
	json_array_foreach(map, i, ext)
	{
		uint64_t len;
		if (r < 0)
			break;
		if (json_u64(ext, "length", &len) < 0) {
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'qemu-img map' printed an extent without a length");
			break;
		}
		if (json_is_true(json_object_get(ext, "data")) &&
		    !json_is_true(json_object_get(ext, "zero")))
			sum += len;
	}
	json_decref(map);
	s->populated = sum < s->capacity ? sum : s->capacity;
	return r;
}

int imgf_vmdk_convert(const char *disk, const struct ova_spec *s, const char *vmdk,
		      struct imgf_error **err)
{
	/* adapter_type only fills the descriptor's ddb.adapterType; lsilogic is what VMware
	 * writes for SCSI disks, pvscsi ones included. */
	char *argv[] = {
		"qemu-img",   "convert",    "-f", (char *)s->disk_format,
		"-O",	      "vmdk",	    "-o", "subformat=streamOptimized,adapter_type=lsilogic",
		(char *)disk, (char *)vmdk, NULL};
	return imgf_run(argv, NULL, err);
}

/* ---- The vmdk's descriptor CID ---- */

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/*
 * The descriptor is plain text at desc_offset (in sectors, for desc_size sectors, padded with
 * NULs) in the sparse extent's header; nothing checksums it. qemu-img writes the CID with
 * "%x", so its width varies; the new one is written with eight digits and the text after it
 * moves to match, inside the same region.
 */
int imgf_vmdk_set_cid(const char *path, uint32_t cid, struct imgf_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	struct stat st;
	unsigned char hdr[VMDK_SECTOR];
	ssize_t n = pread(fd, hdr, sizeof(hdr), 0);
	if (n < 0 || fstat(fd, &st) < 0)
		return imgf_error_errno(err, errno, "read '%s'", path);
	uint64_t off = n == (ssize_t)sizeof(hdr) ? le64(hdr + 28) : 0;
	uint64_t size = n == (ssize_t)sizeof(hdr) ? le64(hdr + 36) : 0;
	if (memcmp(hdr, "KDMV", 4) != 0 || off == 0 || size == 0 ||
	    size > VMDK_DESC_MAX / VMDK_SECTOR || off + size > (uint64_t)st.st_size / VMDK_SECTOR) {
		log_warn("'%s': not a sparse vmdk with an embedded descriptor; its CID is kept",
			 path);
		return 1;
	}
	size_t len = (size_t)size * VMDK_SECTOR;
	_cleanup_free_ char *desc = xmalloc(len + 1);
	n = pread(fd, desc, len, (off_t)(off * VMDK_SECTOR));
	if (n < 0)
		return imgf_error_errno(err, errno, "read '%s'", path);
	if ((size_t)n != len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "read '%s': short read", path);
	desc[len] = '\0';
	size_t text_len = strlen(desc);
	char *val = strstr(desc, "\nCID=");
	size_t width = 0;
	if (val) {
		val += strlen("\nCID=");
		while (width <= 8 && isxdigit((unsigned char)val[width]))
			width++;
	}
	size_t head = val ? (size_t)(val - desc) : 0;
	size_t tail = val ? text_len - head - width : 0;
	if (!val || width == 0 || width > 8 || val[width] != '\n' || head + 8 + tail >= len) {
		log_warn("'%s': no CID line in the vmdk descriptor; its CID is kept", path);
		return 1;
	}
	_cleanup_free_ char *out = xcalloc(1, len);
	char digits[9];
	snprintf(digits, sizeof(digits), "%08" PRIx32, cid);
	memcpy(out, desc, head);
	memcpy(out + head, digits, 8);
	memcpy(out + head + 8, val + width, tail);
	n = pwrite(fd, out, len, (off_t)(off * VMDK_SECTOR));
	if (n < 0)
		return imgf_error_errno(err, errno, "write '%s'", path);
	if ((size_t)n != len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': short write", path);
	return 0;
}

/* qemu-img's CID is random; one from the name and timestamp keeps the .ova reproducible. */
int imgf_vmdk_fix_cid(const char *vmdk, const struct ova_spec *s, struct imgf_error **err)
{
	char hex[IMGF_DIGEST_HEX_MAX];
	_cleanup_free_ char *seed = xasprintf("%s\n%" PRId64, s->name, s->timestamp);
	imgf_digest_buffer(IMGF_SHA256, seed, strlen(seed), hex);
	hex[8] = '\0';
	uint32_t cid = (uint32_t)strtoul(hex, NULL, 16);
	/* ffffffff is parentCID's "no parent"; fffffffe is what VMware uses for "unset". */
	if (cid >= 0xfffffffeU)
		cid = 0x7fffffffU;
	return imgf_vmdk_set_cid(vmdk, cid, err) < 0 ? -1 : 0;
}
