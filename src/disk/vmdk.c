/*
 * The OVA's disk: the CID in the embedded descriptor of the vmdk qemu-img wrote (qemuimg.h
 * runs qemu-img).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "log.h"
#include "ova-internal.h"
#include "util.h"

#define VMDK_SECTOR 512
#define VMDK_DESC_MAX (1024 * 1024)

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
