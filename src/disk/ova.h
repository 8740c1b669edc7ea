/*
 * The OVA post-processor: a streamOptimized VMDK from the build's disk, an OVF descriptor,
 * a SHA256 manifest (NAME.mf) and the OVA itself, a USTAR tar holding .ovf, .mf and .vmdk in
 * that order, plus NAME.ova.sha256 (bare hex, stamped: see sidecar.h). The work beyond
 * `qemu-img convert` runs beside it or on a second core (see ova.c).
 */
#ifndef IMGF_OVA_H
#define IMGF_OVA_H

#include <stdint.h>

#include <jansson.h>

struct imgf_error;

struct imgf_ova_opts {
	const char *disk;	   /* the build's disk image (qcow2 or raw) */
	const char *out_dir;	   /* where NAME.ova, NAME.ova.sha256 go */
	const char *name;	   /* BUILD_NAME+kube-KUBERNETES_VERSION */
	json_t *vars;		   /* the build's variables: distro_name, distro_version,
				      kubernetes_semver, containerd_version, kubernetes_cni_semver,
				      and the hardware: ova_cpus, ova_memory_mb, ova_nic_network,
				      ova_os_type (defaults when absent) */
	json_t *custom_properties; /* ovf_custom_properties: object key -> string, or NULL */
	int64_t build_timestamp;   /* BUILD_TIMESTAMP (SOURCE_DATE_EPOCH when set) */
	const char *firmware;	   /* "bios" (or NULL) or "uefi": the OVF says efi for uefi */
};

/* Write NAME.ova and NAME.ova.sha256 into out_dir; the intermediate .vmdk/.ovf/.mf are
 * removed afterwards. `files` receives the names written (NULL-terminated, caller frees). */
int imgf_ova_write(const struct imgf_ova_opts *o, char ***files, struct imgf_error **err);

/* Check everything imgf_ova_write checks before it reads the disk (disk and out_dir may be
 * NULL): the name, the timestamp, the properties and the hardware variables. */
int imgf_ova_validate(const struct imgf_ova_opts *o, struct imgf_error **err);

/*
 * Set the CID (content id) in the embedded descriptor of a monolithic sparse or
 * streamOptimized vmdk, as eight hex digits. Returns 0 when set, 1 (with a warning logged)
 * when the file is not laid out that way and was left alone, < 0 on I/O errors.
 */
int imgf_vmdk_set_cid(const char *path, uint32_t cid, struct imgf_error **err);

#endif
