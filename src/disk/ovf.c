/*
 * The OVA's inputs (name, timestamp, properties, hardware variables), checked before anything
 * runs, and the OVF descriptor they make.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "error.h"
#include "ova-internal.h"
#include "util.h"

/* vSphere 6.5 and later (ESXi 6.5 runs vmx-13 virtual hardware). */
#define OVA_VMX_VERSION "vmx-13"
#define OVA_DISK_FORMAT "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
#define OVA_DEFAULT_CPUS 2
#define OVA_DEFAULT_MEMORY_MB 2048
#define OVA_DEFAULT_NETWORK "VM Network"
#define OVA_DEFAULT_OS_TYPE "otherLinux64Guest"

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

void imgf_ova_spec_release(struct ova_spec *s)
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
		const char *v = imgf_cfg_str(o->vars, builtin_props[i].var, NULL);
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
	s->network = imgf_cfg_str(o->vars, "ova_nic_network", NULL);
	if (!s->network || !*s->network)
		s->network = OVA_DEFAULT_NETWORK;
	s->os_type = imgf_cfg_str(o->vars, "ova_os_type", NULL);
	if (!s->os_type || !*s->os_type) {
		const char *distro = imgf_cfg_str(o->vars, "distro_name", NULL);
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

int imgf_ova_spec_gather(const struct imgf_ova_opts *o, struct ova_spec *s, struct imgf_error **err)
{
	if (check_name(o->name, err) < 0)
		return -1;
	if (o->build_timestamp < 0 || o->build_timestamp > USTAR_TIME_MAX)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "build timestamp %" PRId64 " does not fit a USTAR header",
				      o->build_timestamp);
	if (gather_props(o, s, err) < 0 || gather_hardware(o, s, err) < 0)
		return -1;
	if (o->firmware && strcmp(o->firmware, "bios") && strcmp(o->firmware, "uefi"))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "firmware '%s': expected bios or uefi",
				      o->firmware);
	s->efi = o->firmware && !strcmp(o->firmware, "uefi");
	return 0;
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
void imgf_ovf_build(const struct ova_spec *s, struct strbuf *sb)
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
			  "      </Item>\n");
	/* As vSphere exports a UEFI VM (and virt-v2v -i ova reads it); BIOS is the default. */
	if (s->efi)
		strbuf_addstr(sb, "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" "
				  "vmw:value=\"efi\"/>\n");
	strbuf_addstr(sb, "    </VirtualHardwareSection>\n");

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
