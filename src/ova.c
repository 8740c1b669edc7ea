/*
 * The OVA post-processor (see ova.h): qemu-img makes the streamOptimized VMDK, everything
 * else is written here, the tar through libarchive.
 *
 * Work happens in a private directory inside out_dir (".NAME.ova.XXXXXX"): the vmdk in it can
 * be called NAME.vmdk (qemu-img writes the file's own name into the vmdk's descriptor), a
 * failure anywhere is cleaned up by removing that one directory, and only NAME.ova and then
 * NAME.ova.sha256 reach out_dir, each by rename.
 *
 * What is read how often, and what runs at once. The .ovf and .mf are built in memory; they
 * never exist as files. Two SHA-256 passes over the vmdk's bytes cannot be avoided: the .mf
 * carries the vmdk's digest and comes before the vmdk in the tar, so the .ova's digest, which
 * runs over the tar's bytes in order, can only start once the vmdk's is final. Nor can the
 * vmdk be hashed while qemu-img writes it: a digest starts at byte 0, and qemu-img updates
 * the grain tables near the start of the file with every grain it appends (strace shows
 * it), until it exits; we then set the CID there too. So the passes overlap instead, on a
 * second core:
 *   - `qemu-img map` (the populated size) runs while `qemu-img convert` does;
 *   - the vmdk is read once, to copy it into the tar, and hashed on another thread from the
 *     same buffers: the tar's layout does not depend on the digest, so the .mf goes in with
 *     a placeholder of the same length, patched once the digest is known (the bytes under it
 *     are checked to be the placeholder first);
 *   - the finished .ova is then hashed from the page cache while it is flushed to disk.
 * The vmdk and the .ova are each still in the page cache when read (qemu-img, then we, have
 * just written them); memory stays a few buffers of 1 MiB whatever the disk's size.
 *
 * Reproducible: tar members carry the build timestamp, owner root and mode 0644, and the one
 * random field qemu-img writes (the vmdk descriptor's CID) is replaced by one derived from
 * the name and timestamp, so the same disk and variables give the same .ova bytes.
 */
/* <archive.h> is libarchive's: src/ is on the quote path only (-iquote src). */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "log.h"
#include "ova.h"
#include "run.h"
#include "sidecar.h"
#include "strbuf.h"
#include "util.h"

/* vSphere 6.5 and later (ESXi 6.5 runs vmx-13 virtual hardware). */
#define OVA_VMX_VERSION "vmx-13"
#define OVA_DISK_FORMAT "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
#define OVA_DEFAULT_CPUS 2
#define OVA_DEFAULT_MEMORY_MB 2048
#define OVA_DEFAULT_NETWORK "VM Network"
#define OVA_DEFAULT_OS_TYPE "otherLinux64Guest"

/* A USTAR header holds a 100-byte name (with no '/' there is no prefix to spill into) and
 * an 11-digit octal size. Bigger disks would need OVF chunked files. */
#define USTAR_NAME_MAX 100
#define USTAR_SIZE_MAX 077777777777ULL
#define USTAR_TIME_MAX 077777777777LL

#define QEMU_INFO_MAX (1024 * 1024)
#define QEMU_MAP_MAX (64 * 1024 * 1024)
#define COPY_BUF_SIZE (1024 * 1024)
#define VMDK_SECTOR 512
#define VMDK_DESC_MAX (1024 * 1024)

/* The ProductSection's fixed properties and the variables that fill them. */
static const struct {
	const char *key;
	const char *var; /* NULL: the build timestamp */
} builtin_props[] = {
	{"DISTRO_NAME", "distro_name"},
	{"DISTRO_VERSION", "distro_version"},
	{"KUBERNETES_SEMVER", "kubernetes_semver"},
	{"CONTAINERD_VERSION", "containerd_version"},
	{"CNI_VERSION", "kubernetes_cni_semver"},
	{"BUILD_TIMESTAMP", NULL},
};
#define N_BUILTIN_PROPS ARRAY_SIZE(builtin_props)

/* ova_os_type when it is not set, from distro_name. */
static const struct {
	const char *distro;
	const char *os_type;
} default_os_types[] = {
	{"ubuntu", "ubuntu64Guest"},
	{"debian", "debian11_64Guest"},
};

/* OperatingSystemSection's ovf:id is a CIM_OperatingSystem.OsType number; from vmw:osType. */
static const struct {
	const char *prefix;
	int id;
} cim_os_ids[] = {
	{"ubuntu", 94}, /* Ubuntu 64-Bit */
	{"debian", 96}, /* Debian 64-Bit */
	{"", 101},	/* Linux 64-Bit */
};

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
	struct ova_prop *props;
	size_t nprops;
	int64_t timestamp;
	/* from qemu-img */
	const char *disk_format;
	uint64_t capacity, populated, vmdk_size;
};

static void ova_spec_release(struct ova_spec *s)
{
	for (size_t i = 0; i < s->nprops; i++)
		free(s->props[i].value);
	free(s->props);
	s->props = NULL;
	s->nprops = 0;
}

/* ---- Checking the inputs ---- */

/* A string that can go into XML 1.0: no control characters but tab, newline and return. */
static int xml_check(const char *s, const char *what, struct imgf_error **err)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
			return imgf_error_set(
				err, IMGF_EXIT_FAIL,
				"%s: control character 0x%02x cannot be written to the OVF", what,
				*p);
	}
	return 0;
}

static int check_name(const char *name, struct imgf_error **err)
{
	if (!name || !*name)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "the OVA needs a name");
	if (strchr(name, '/') || name[0] == '.')
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "name '%s' must be a file name (no '/', no leading '.')",
				      name);
	if (strlen(name) + strlen(".vmdk") > USTAR_NAME_MAX)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "name '%s' is too long: a USTAR member name holds %d bytes, "
				      "'%s.vmdk' needs %zu",
				      name, USTAR_NAME_MAX, name, strlen(name) + strlen(".vmdk"));
	return xml_check(name, "name", err);
}

static const char *var_str(json_t *vars, const char *name)
{
	json_t *v = vars ? json_object_get(vars, name) : NULL;
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A whole number in [1, max] from a variable (a string of digits or a JSON integer). */
static int var_count(json_t *vars, const char *name, long long def, long long max, long long *out,
		     struct imgf_error **err)
{
	json_t *v = vars ? json_object_get(vars, name) : NULL;
	long long n = def;
	if (json_is_integer(v)) {
		n = json_integer_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end = NULL;
		errno = 0;
		n = *s >= '0' && *s <= '9' ? strtoll(s, &end, 10) : -1;
		if (n < 0 || errno || *end)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "variable '%s': '%s' is not a whole number", name, s);
	} else if (v) {
		return imgf_error_set(err, IMGF_EXIT_FAIL, "variable '%s' must be a whole number",
				      name);
	}
	if (n < 1 || n > max)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "variable '%s': %lld is out of range (1 to %lld)", name, n,
				      max);
	*out = n;
	return 0;
}

static int cmp_props(const void *a, const void *b)
{
	return strcmp(((const struct ova_prop *)a)->key, ((const struct ova_prop *)b)->key);
}

/* The built-in properties in their order, then the custom ones sorted by key. */
static int gather_props(const struct imgf_ova_opts *o, struct ova_spec *s, struct imgf_error **err)
{
	size_t ncustom = o->custom_properties ? json_object_size(o->custom_properties) : 0;
	if (o->custom_properties && !json_is_object(o->custom_properties))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "ovf_custom_properties must be an object of strings");
	s->props = xcalloc(N_BUILTIN_PROPS + ncustom, sizeof(*s->props));
	for (size_t i = 0; i < N_BUILTIN_PROPS; i++) {
		struct ova_prop *p = &s->props[s->nprops++];
		p->key = builtin_props[i].key;
		if (!builtin_props[i].var) {
			p->value = xasprintf("%" PRId64, o->build_timestamp);
			continue;
		}
		const char *v = var_str(o->vars, builtin_props[i].var);
		if (!v)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "variable '%s' is not set (the OVF's %s property)",
					      builtin_props[i].var, p->key);
		p->value = xstrdup(v);
	}
	const char *key;
	json_t *v;
	size_t first_custom = s->nprops;
	json_object_foreach(o->custom_properties, key, v)
	{
		if (!*key)
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "ovf_custom_properties: a key is empty");
		for (size_t i = 0; i < N_BUILTIN_PROPS; i++) {
			if (strcmp(key, builtin_props[i].key) == 0)
				return imgf_error_set(err, IMGF_EXIT_FAIL,
						      "ovf_custom_properties: '%s' is a built-in "
						      "property",
						      key);
		}
		struct ova_prop *p = &s->props[s->nprops++];
		p->key = key;
		if (json_is_string(v))
			p->value = xstrdup(json_string_value(v));
		else if (json_is_integer(v))
			p->value = xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
		else if (json_is_boolean(v))
			p->value = xstrdup(json_is_true(v) ? "true" : "false");
		else
			return imgf_error_set(err, IMGF_EXIT_FAIL,
					      "ovf_custom_properties: '%s' must be a string", key);
	}
	qsort(s->props + first_custom, s->nprops - first_custom, sizeof(*s->props), cmp_props);
	for (size_t i = 0; i < s->nprops; i++) {
		_cleanup_free_ char *what = xasprintf("property '%s'", s->props[i].key);
		if (xml_check(s->props[i].key, what, err) < 0 ||
		    xml_check(s->props[i].value, what, err) < 0)
			return -1;
	}
	return 0;
}

static int gather_hardware(const struct imgf_ova_opts *o, struct ova_spec *s,
			   struct imgf_error **err)
{
	if (var_count(o->vars, "ova_cpus", OVA_DEFAULT_CPUS, 1024, &s->cpus, err) < 0 ||
	    var_count(o->vars, "ova_memory_mb", OVA_DEFAULT_MEMORY_MB, INT32_MAX, &s->memory_mb,
		      err) < 0)
		return -1;
	s->network = var_str(o->vars, "ova_nic_network");
	if (!s->network || !*s->network)
		s->network = OVA_DEFAULT_NETWORK;
	s->os_type = var_str(o->vars, "ova_os_type");
	if (!s->os_type || !*s->os_type) {
		const char *distro = var_str(o->vars, "distro_name");
		s->os_type = OVA_DEFAULT_OS_TYPE;
		for (size_t i = 0; distro && i < ARRAY_SIZE(default_os_types); i++) {
			if (strcmp(distro, default_os_types[i].distro) == 0)
				s->os_type = default_os_types[i].os_type;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(cim_os_ids); i++) {
		if (str_has_prefix(s->os_type, cim_os_ids[i].prefix)) {
			s->os_id = cim_os_ids[i].id;
			break;
		}
	}
	if (xml_check(s->network, "variable 'ova_nic_network'", err) < 0 ||
	    xml_check(s->os_type, "variable 'ova_os_type'", err) < 0)
		return -1;
	return 0;
}

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
static int disk_info(const char *disk, struct ova_spec *s, struct imgf_error **err)
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
static int disk_populated(const char *disk, struct ova_spec *s, struct imgf_error **err)
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

static int disk_convert(const char *disk, const struct ova_spec *s, const char *vmdk,
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
static int vmdk_fix_cid(const char *vmdk, const struct ova_spec *s, struct imgf_error **err)
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

/* ---- The descriptor and manifest ---- */

/* <tag>text</tag> on a line of its own, text escaped. */
static void xml_elem(struct strbuf *sb, const char *indent, const char *tag, const char *text)
{
	strbuf_addf(sb, "%s<%s>", indent, tag);
	strbuf_add_xml(sb, text);
	strbuf_addf(sb, "</%s>\n", tag);
}

/*
 * An OVF 1.0 envelope with VMware's extensions, as vSphere imports it. Element order inside
 * each rasd Item and vssd System follows the CIM schemas (alphabetical), which ovftool and
 * vCenter validate.
 */
static void ovf_build(const struct ova_spec *s, struct strbuf *sb)
{
	strbuf_addstr(sb, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			  "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\""
			  " xmlns:cim=\"http://schemas.dmtf.org/wbem/wscim/1/common\""
			  " xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\""
			  " xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
			  "CIM_ResourceAllocationSettingData\""
			  " xmlns:vmw=\"http://www.vmware.com/schema/ovf\""
			  " xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
			  "CIM_VirtualSystemSettingData\""
			  " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n");

	strbuf_addstr(sb, "  <References>\n    <File ovf:href=\"");
	strbuf_add_xml(sb, s->name);
	strbuf_addf(sb, ".vmdk\" ovf:id=\"file1\" ovf:size=\"%" PRIu64 "\"/>\n  </References>\n",
		    s->vmdk_size);

	strbuf_addf(sb,
		    "  <DiskSection>\n"
		    "    <Info>Virtual disk information</Info>\n"
		    "    <Disk ovf:capacity=\"%" PRIu64 "\" ovf:capacityAllocationUnits=\"byte\""
		    " ovf:diskId=\"vmdisk1\" ovf:fileRef=\"file1\" ovf:format=\"" OVA_DISK_FORMAT
		    "\" ovf:populatedSize=\"%" PRIu64 "\"/>\n"
		    "  </DiskSection>\n",
		    s->capacity, s->populated);

	strbuf_addstr(sb, "  <NetworkSection>\n"
			  "    <Info>The list of logical networks</Info>\n"
			  "    <Network ovf:name=\"");
	strbuf_add_xml(sb, s->network);
	strbuf_addstr(sb, "\">\n      <Description>The ");
	strbuf_add_xml(sb, s->network);
	strbuf_addstr(sb, " network</Description>\n    </Network>\n  </NetworkSection>\n");

	strbuf_addstr(sb, "  <VirtualSystem ovf:id=\"");
	strbuf_add_xml(sb, s->name);
	strbuf_addstr(sb, "\">\n    <Info>A virtual machine</Info>\n");
	xml_elem(sb, "    ", "Name", s->name);

	strbuf_addf(sb, "    <OperatingSystemSection ovf:id=\"%d\" vmw:osType=\"", s->os_id);
	strbuf_add_xml(sb, s->os_type);
	strbuf_addstr(sb, "\">\n      <Info>The kind of installed guest operating system</Info>\n"
			  "    </OperatingSystemSection>\n");

	strbuf_addstr(sb, "    <VirtualHardwareSection>\n"
			  "      <Info>Virtual hardware requirements</Info>\n"
			  "      <System>\n"
			  "        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n"
			  "        <vssd:InstanceID>0</vssd:InstanceID>\n");
	xml_elem(sb, "        ", "vssd:VirtualSystemIdentifier", s->name);
	strbuf_addstr(sb, "        <vssd:VirtualSystemType>" OVA_VMX_VERSION
			  "</vssd:VirtualSystemType>\n"
			  "      </System>\n");

	strbuf_addf(sb,
		    "      <Item>\n"
		    "        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>\n"
		    "        <rasd:Description>Number of Virtual CPUs</rasd:Description>\n"
		    "        <rasd:ElementName>%lld virtual CPU(s)</rasd:ElementName>\n"
		    "        <rasd:InstanceID>1</rasd:InstanceID>\n"
		    "        <rasd:ResourceType>3</rasd:ResourceType>\n"
		    "        <rasd:VirtualQuantity>%lld</rasd:VirtualQuantity>\n"
		    "      </Item>\n",
		    s->cpus, s->cpus);
	strbuf_addf(sb,
		    "      <Item>\n"
		    "        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>\n"
		    "        <rasd:Description>Memory Size</rasd:Description>\n"
		    "        <rasd:ElementName>%lldMB of memory</rasd:ElementName>\n"
		    "        <rasd:InstanceID>2</rasd:InstanceID>\n"
		    "        <rasd:ResourceType>4</rasd:ResourceType>\n"
		    "        <rasd:VirtualQuantity>%lld</rasd:VirtualQuantity>\n"
		    "      </Item>\n",
		    s->memory_mb, s->memory_mb);
	strbuf_addstr(sb, "      <Item>\n"
			  "        <rasd:Address>0</rasd:Address>\n"
			  "        <rasd:Description>SCSI Controller</rasd:Description>\n"
			  "        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>\n"
			  "        <rasd:InstanceID>3</rasd:InstanceID>\n"
			  "        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>\n"
			  "        <rasd:ResourceType>6</rasd:ResourceType>\n"
			  "      </Item>\n"
			  "      <Item>\n"
			  "        <rasd:AddressOnParent>0</rasd:AddressOnParent>\n"
			  "        <rasd:ElementName>Hard Disk 1</rasd:ElementName>\n"
			  "        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>\n"
			  "        <rasd:InstanceID>4</rasd:InstanceID>\n"
			  "        <rasd:Parent>3</rasd:Parent>\n"
			  "        <rasd:ResourceType>17</rasd:ResourceType>\n"
			  "      </Item>\n"
			  "      <Item>\n"
			  "        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>\n");
	xml_elem(sb, "        ", "rasd:Connection", s->network);
	strbuf_addstr(sb, "        <rasd:Description>VmxNet3 ethernet adapter on &quot;");
	strbuf_add_xml(sb, s->network);
	strbuf_addstr(sb, "&quot;</rasd:Description>\n"
			  "        <rasd:ElementName>Network adapter 1</rasd:ElementName>\n"
			  "        <rasd:InstanceID>5</rasd:InstanceID>\n"
			  "        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>\n"
			  "        <rasd:ResourceType>10</rasd:ResourceType>\n"
			  "      </Item>\n"
			  "    </VirtualHardwareSection>\n");

	strbuf_addstr(sb, "    <ProductSection ovf:required=\"false\">\n"
			  "      <Info>Kubernetes node image</Info>\n");
	xml_elem(sb, "      ", "Product", s->name);
	xml_elem(sb, "      ", "Version", s->props[2].value); /* KUBERNETES_SEMVER */
	for (size_t i = 0; i < s->nprops; i++) {
		strbuf_addstr(sb, "      <Property ovf:key=\"");
		strbuf_add_xml(sb, s->props[i].key);
		strbuf_addstr(sb, "\" ovf:type=\"string\" ovf:userConfigurable=\"false\" "
				  "ovf:value=\"");
		strbuf_add_xml(sb, s->props[i].value);
		strbuf_addstr(sb, "\"/>\n");
	}
	strbuf_addstr(sb, "    </ProductSection>\n  </VirtualSystem>\n</Envelope>\n");
}

/* ---- Work on a second core ---- */

/* Run fn(arg) on a thread; where none can be started, right here. Returns whether to join. */
static bool job_start(pthread_t *tid, void *(*fn)(void *), void *arg)
{
	if (pthread_create(tid, NULL, fn, arg) == 0)
		return true;
	fn(arg);
	return false;
}

static void job_join(bool started, pthread_t tid)
{
	if (started)
		pthread_join(tid, NULL);
}

/* Hand a job's error to the caller's (a job cannot fill *err: the caller may fill it too). */
static int job_error(struct imgf_error *job_err, struct imgf_error **err)
{
	if (err && !*err)
		*err = job_err;
	else
		imgf_error_free(job_err);
	return -1;
}

struct map_job {
	const char *disk;
	struct ova_spec *s; /* sets s->populated only */
	struct imgf_error *err;
	int r;
};

static void *map_job_run(void *arg)
{
	struct map_job *j = arg;
	j->r = disk_populated(j->disk, j->s, &j->err);
	return NULL;
}

/*
 * The vmdk's sha256, computed on another thread from the very buffers the copy into the tar
 * reads: the copy fills a slot, hands it to libarchive and to the hasher, and takes a slot
 * again only once the hasher is done with it. The vmdk is read once.
 */
#define HASH_SLOTS 4

struct vmdk_hasher {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool threaded;	     /* else the copy hashes each buffer itself */
	bool done;	     /* the copy is over (or failed) */
	uint64_t head, tail; /* slots [tail, head) wait to be hashed, in order */
	char *buf[HASH_SLOTS];
	size_t len[HASH_SLOTS];
	struct imgf_digest d;
};

static void *vmdk_hasher_run(void *arg)
{
	struct vmdk_hasher *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->tail == h->head && !h->done)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->tail == h->head)
			break;
		size_t slot = (size_t)(h->tail % HASH_SLOTS);
		pthread_mutex_unlock(&h->mu);
		imgf_digest_update(&h->d, h->buf[slot], h->len[slot]);
		pthread_mutex_lock(&h->mu);
		h->tail++;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void vmdk_hasher_start(struct vmdk_hasher *h, pthread_t *tid)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	for (size_t i = 0; i < HASH_SLOTS; i++)
		h->buf[i] = xmalloc(COPY_BUF_SIZE);
	imgf_digest_init(&h->d, IMGF_SHA256);
	h->threaded = pthread_create(tid, NULL, vmdk_hasher_run, h) == 0;
}

/* A slot the copy may read into. */
static char *vmdk_hasher_slot(struct vmdk_hasher *h)
{
	if (!h->threaded)
		return h->buf[0];
	pthread_mutex_lock(&h->mu);
	while (h->head - h->tail == HASH_SLOTS)
		pthread_cond_wait(&h->cv, &h->mu);
	size_t slot = (size_t)(h->head % HASH_SLOTS);
	pthread_mutex_unlock(&h->mu);
	return h->buf[slot];
}

/* The slot vmdk_hasher_slot gave holds n bytes, next in the file: hash them. */
static void vmdk_hasher_push(struct vmdk_hasher *h, size_t n)
{
	if (!h->threaded) {
		imgf_digest_update(&h->d, h->buf[0], n);
		return;
	}
	pthread_mutex_lock(&h->mu);
	h->len[h->head % HASH_SLOTS] = n;
	h->head++;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* Wait for the hasher, and the digest into hex (NULL: the copy failed, drop it). */
static void vmdk_hasher_finish(struct vmdk_hasher *h, pthread_t tid, char *hex)
{
	if (h->threaded) {
		pthread_mutex_lock(&h->mu);
		h->done = true;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
		pthread_join(tid, NULL);
	}
	if (hex)
		imgf_digest_final_hex(&h->d, hex);
	else
		imgf_digest_release(&h->d);
	for (size_t i = 0; i < HASH_SLOTS; i++)
		free(h->buf[i]);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
}

struct sync_job {
	int fd;
	int sync_errno;
};

static void *sync_job_run(void *arg)
{
	struct sync_job *j = arg;
	j->sync_errno = fsync(j->fd) < 0 ? errno : 0;
	return NULL;
}

/* ---- The tar ---- */

/* Where libarchive's output goes: the .ova's file. */
static la_ssize_t sink_write(struct archive *a, void *data, const void *buf, size_t len)
{
	int fd = *(const int *)data;
	const char *p = buf;
	size_t left = len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			archive_set_error(a, errno, "%s", strerror(errno));
			return -1;
		}
		p += w;
		left -= (size_t)w;
	}
	return (la_ssize_t)len;
}

static int tar_header(struct archive *a, const char *name, uint64_t size, int64_t mtime,
		      struct imgf_error **err)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_uname(e, "root");
	archive_entry_set_gname(e, "root");
	archive_entry_set_mtime(e, (time_t)mtime, 0);
	archive_entry_set_size(e, (la_int64_t)size);
	int r = archive_write_header(a, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar member '%s': %s", name,
				      archive_error_string(a));
	return 0;
}

static int tar_add_buffer(struct archive *a, const char *name, const struct strbuf *data,
			  int64_t mtime, struct imgf_error **err)
{
	if (tar_header(a, name, data->len, mtime, err) < 0)
		return -1;
	if (archive_write_data(a, data->buf, data->len) != (la_ssize_t)data->len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "tar member '%s': %s", name,
				      archive_error_string(a));
	return 0;
}

static int tar_add_vmdk(struct archive *a, const char *name, const char *path, uint64_t size,
			int64_t mtime, struct vmdk_hasher *h, struct imgf_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return imgf_error_errno(err, errno, "open '%s'", path);
	if (tar_header(a, name, size, mtime, err) < 0)
		return -1;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint64_t done = 0;
	for (unsigned chunk = 0;; chunk++) {
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
		char *buf = vmdk_hasher_slot(h);
		ssize_t n = read(fd, buf, COPY_BUF_SIZE);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return imgf_error_errno(err, errno, "read '%s'", path);
		}
		if (n == 0)
			break;
		if (done + (uint64_t)n > size)
			break;
		if (archive_write_data(a, buf, (size_t)n) != n)
			return imgf_error_set(err, IMGF_EXIT_FAIL, "tar member '%s': %s", name,
					      archive_error_string(a));
		vmdk_hasher_push(h, (size_t)n);
		done += (uint64_t)n;
		if (chunk % 16 == 0)
			imgf_progress(name, done, size);
	}
	imgf_progress_done();
	if (done != size)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s' changed size while being copied (%" PRIu64
				      " bytes, then more or fewer)",
				      path, size);
	return 0;
}

/* Write the tar (ovf, mf, vmdk, in that order) to fd, the .mf as it is given. */
static int ova_write_tar(int fd, const char *ova_path, const struct ova_spec *s,
			 const struct strbuf *ovf, const struct strbuf *mf, const char *vmdk_path,
			 struct vmdk_hasher *h, struct imgf_error **err)
{
	_cleanup_free_ char *ovf_name = xasprintf("%s.ovf", s->name);
	_cleanup_free_ char *mf_name = xasprintf("%s.mf", s->name);
	_cleanup_free_ char *vmdk_name = xasprintf("%s.vmdk", s->name);
	struct archive *a = archive_write_new();
	int r = -1;
	if (archive_write_set_format_ustar(a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(a) != ARCHIVE_OK ||
	    archive_write_open(a, &fd, NULL, sink_write, NULL) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': %s", ova_path,
			       archive_error_string(a));
		goto out;
	}
	if (tar_add_buffer(a, ovf_name, ovf, s->timestamp, err) < 0 ||
	    tar_add_buffer(a, mf_name, mf, s->timestamp, err) < 0 ||
	    tar_add_vmdk(a, vmdk_name, vmdk_path, s->vmdk_size, s->timestamp, h, err) < 0) {
		imgf_error_prefix(err, "write '%s'", ova_path);
		goto out;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': %s", ova_path,
			       archive_error_string(a));
		goto out;
	}
	r = 0;
out:
	archive_write_free(a);
	return r;
}

/*
 * Put the .mf's final text over its placeholder: the member's data starts after the .ovf's
 * header and data (padded to 512) and its own header. Whatever is there must be the
 * placeholder, byte for byte, or the layout is not what this expects.
 */
static int ova_patch_mf(int fd, const char *ova_path, size_t ovf_len, const struct strbuf *old,
			const struct strbuf *mf, struct imgf_error **err)
{
	off_t at = (off_t)(512 + (ovf_len + 511) / 512 * 512 + 512);
	_cleanup_free_ char *have = xmalloc(old->len);
	ssize_t n = pread(fd, have, old->len, at);
	if (n < 0)
		return imgf_error_errno(err, errno, "read '%s'", ova_path);
	if ((size_t)n != old->len || memcmp(have, old->buf, old->len) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s': the .mf is not at byte %lld of the tar", ova_path,
				      (long long)at);
	n = pwrite(fd, mf->buf, mf->len, at);
	if (n < 0)
		return imgf_error_errno(err, errno, "write '%s'", ova_path);
	if ((size_t)n != mf->len)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "write '%s': short write", ova_path);
	return 0;
}

/* The .ova's sha256 from its bytes (just written: in the page cache) while they are flushed
 * to disk; *st is its stat afterwards. */
static int ova_hash_and_flush(int fd, const char *ova_path, char *hex, struct stat *st,
			      struct imgf_error **err)
{
	struct sync_job sj = {.fd = fd};
	pthread_t tid;
	bool started = job_start(&tid, sync_job_run, &sj);
	_cleanup_free_ char *buf = xmalloc(COPY_BUF_SIZE);
	struct imgf_digest d;
	imgf_digest_init(&d, IMGF_SHA256);
	int r = 0;
	for (off_t at = 0;;) {
		ssize_t n = pread(fd, buf, COPY_BUF_SIZE, at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = imgf_error_errno(err, errno, "read '%s'", ova_path);
			break;
		}
		if (n == 0)
			break;
		imgf_digest_update(&d, buf, (size_t)n);
		at += n;
	}
	job_join(started, tid);
	if (r == 0 && sj.sync_errno)
		r = imgf_error_errno(err, sj.sync_errno, "write '%s'", ova_path);
	if (r == 0 && fstat(fd, st) < 0)
		r = imgf_error_errno(err, errno, "stat '%s'", ova_path);
	if (r == 0)
		imgf_digest_final_hex(&d, hex);
	else
		imgf_digest_release(&d);
	return r;
}

/* ---- Putting it together ---- */

/* The vmdk from the disk (with `qemu-img map` running beside `qemu-img convert`), its CID set. */
static int vmdk_make(const struct imgf_ova_opts *o, struct ova_spec *s, const char *disk,
		     const char *vmdk, struct imgf_error **err)
{
	if (disk_info(disk, s, err) < 0)
		return imgf_error_prefix(err, "disk '%s'", o->disk);
	struct map_job mj = {.disk = disk, .s = s};
	pthread_t tid;
	bool started = job_start(&tid, map_job_run, &mj);
	int r = disk_convert(disk, s, vmdk, err);
	job_join(started, tid);
	if (r == 0 && mj.r < 0)
		r = job_error(mj.err, err);
	else
		imgf_error_free(mj.err);
	if (r < 0)
		return imgf_error_prefix(err, "disk '%s'", o->disk);
	struct stat st;
	if (stat(vmdk, &st) < 0)
		return imgf_error_errno(err, errno, "stat '%s'", vmdk);
	s->vmdk_size = (uint64_t)st.st_size;
	if (s->vmdk_size > USTAR_SIZE_MAX)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "the vmdk of '%s' is %" PRIu64 " bytes; a USTAR member holds "
				      "at most %llu (8 GiB - 1)",
				      o->disk, s->vmdk_size, USTAR_SIZE_MAX);
	return vmdk_fix_cid(vmdk, s, err);
}

/* disk is o->disk, with "./" in front when it starts with '-' (qemu-img would see an option). */
static int ova_build(const struct imgf_ova_opts *o, struct ova_spec *s, const char *disk,
		     const char *work, struct imgf_error **err)
{
	_cleanup_free_ char *vmdk = xasprintf("%s/%s.vmdk", work, s->name);
	_cleanup_free_ char *ova = xasprintf("%s/%s.ova", work, s->name);
	_cleanup_free_ char *final = xasprintf("%s/%s.ova", o->out_dir, s->name);
	_cleanup_free_ char *final_sum = xasprintf("%s.sha256", final);
	struct strbuf ovf = STRBUF_INIT, mf = STRBUF_INIT, mf_draft = STRBUF_INIT;
	char ovf_hex[IMGF_DIGEST_HEX_MAX], ova_hex[IMGF_DIGEST_HEX_MAX];
	struct stat st;
	int r = -1, fd = -1;

	if (vmdk_make(o, s, disk, vmdk, err) < 0)
		goto out;
	ovf_build(s, &ovf);
	imgf_digest_buffer(IMGF_SHA256, ovf.buf, ovf.len, ovf_hex);
	strbuf_addf(&mf, "SHA256(%s.ovf)= %s\nSHA256(%s.vmdk)= ", s->name, ovf_hex, s->name);
	strbuf_add(&mf_draft, mf.buf, mf.len);
	strbuf_addf(&mf_draft, "%064d\n", 0); /* as long as the digest it stands for */

	fd = open(ova, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		imgf_error_errno(err, errno, "create '%s'", ova);
		goto out;
	}
	/* the vmdk's digest on a second core, from the buffers the copy into the tar reads */
	struct vmdk_hasher h;
	pthread_t tid;
	char vmdk_hex[IMGF_DIGEST_HEX_MAX];
	vmdk_hasher_start(&h, &tid);
	int tr = ova_write_tar(fd, ova, s, &ovf, &mf_draft, vmdk, &h, err);
	vmdk_hasher_finish(&h, tid, tr == 0 ? vmdk_hex : NULL);
	if (tr < 0)
		goto out;
	strbuf_addf(&mf, "%s\n", vmdk_hex);
	if (ova_patch_mf(fd, ova, ovf.len, &mf_draft, &mf, err) < 0 ||
	    ova_hash_and_flush(fd, ova, ova_hex, &st, err) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		imgf_error_errno(err, errno, "write '%s'", ova);
		goto out;
	}
	fd = -1;

	/* A stale .sha256 must never sit beside a new .ova, so it goes first and comes last. */
	if (unlink(final_sum) < 0 && errno != ENOENT) {
		imgf_error_errno(err, errno, "remove '%s'", final_sum);
		goto out;
	}
	if (rename(ova, final) < 0) {
		imgf_error_errno(err, errno, "rename to '%s'", final);
		goto out;
	}
	if (imgf_sidecar_write_hex(final, ova_hex, &st, err) < 0) {
		unlink(final);
		goto out;
	}
	log_info("ova: wrote '%s' (sha256 %s)", final, ova_hex);
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	strbuf_release(&ovf);
	strbuf_release(&mf);
	strbuf_release(&mf_draft);
	return r;
}

/* Everything about the OVA that does not need the disk: name, timestamp, properties, hardware. */
static int ova_spec_gather(const struct imgf_ova_opts *o, struct ova_spec *s,
			   struct imgf_error **err)
{
	if (check_name(o->name, err) < 0)
		return -1;
	if (o->build_timestamp < 0 || o->build_timestamp > USTAR_TIME_MAX)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "build timestamp %" PRId64 " does not fit a USTAR header",
				      o->build_timestamp);
	if (gather_props(o, s, err) < 0 || gather_hardware(o, s, err) < 0)
		return -1;
	return 0;
}

int imgf_ova_validate(const struct imgf_ova_opts *o, struct imgf_error **err)
{
	struct ova_spec s = {.name = o->name, .timestamp = o->build_timestamp};
	int r = ova_spec_gather(o, &s, err);
	ova_spec_release(&s);
	if (r < 0)
		imgf_error_prefix(err, "ova '%s'", o->name ? o->name : "");
	return r;
}

int imgf_ova_write(const struct imgf_ova_opts *o, char ***files, struct imgf_error **err)
{
	struct ova_spec s = {.name = o->name, .timestamp = o->build_timestamp};
	int r = -1;
	_cleanup_free_ char *work = NULL, *disk = NULL;

	if (ova_spec_gather(o, &s, err) < 0)
		goto out;
	if (!o->disk || !*o->disk || !o->out_dir || !*o->out_dir) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "the OVA needs a disk and an output directory");
		goto out;
	}
	/* qemu-img would say so too, but after the command line; this names the input. */
	struct stat st;
	if (stat(o->disk, &st) < 0) {
		imgf_error_errno(err, errno, "disk '%s'", o->disk);
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		imgf_error_set(err, IMGF_EXIT_FAIL, "disk '%s' is not a file", o->disk);
		goto out;
	}
	work = xasprintf("%s/.%s.ova.XXXXXX", o->out_dir, o->name);
	if (!mkdtemp(work)) {
		imgf_error_errno(err, errno, "create a work directory in '%s'", o->out_dir);
		free(work);
		work = NULL;
		goto out;
	}
	disk = xasprintf("%s%s", o->disk[0] == '-' ? "./" : "", o->disk);
	r = ova_build(o, &s, disk, work, err);
	struct imgf_error *rm_err = NULL;
	if (rm_rf(work, &rm_err) < 0) {
		log_warn("%s", rm_err->msg);
		imgf_error_free(rm_err);
	}
	if (r == 0 && files) {
		char **v = strv_push(NULL, xasprintf("%s.ova", o->name));
		*files = strv_push(v, xasprintf("%s.ova.sha256", o->name));
	}
out:
	ova_spec_release(&s);
	if (r < 0)
		imgf_error_prefix(err, "ova '%s'", o->name ? o->name : "");
	return r;
}
