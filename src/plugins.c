/* Every builder, provisioner and post-processor compiled into imgforge, one line each. */
#include <stdbool.h>
#include <stddef.h>

#include "builder.h"
#include "plugins.h"
#include "postprocessor.h"
#include "provisioner.h"
#include "util.h"

extern const struct imgf_builder_ops imgf_docker_builder, imgf_qemu_builder;
extern const struct imgf_provisioner_ops imgf_shell_provisioner, imgf_file_provisioner,
	imgf_packages_provisioner, imgf_containerd_provisioner, imgf_runc_provisioner,
	imgf_cni_provisioner, imgf_crictl_provisioner, imgf_kubernetes_provisioner,
	imgf_images_provisioner, imgf_kind_provisioner, imgf_sysprep_provisioner;
extern const struct imgf_post_processor_ops imgf_checksum_post_processor,
	imgf_manifest_post_processor, imgf_ova_post_processor, imgf_raw_post_processor,
	imgf_vhd_post_processor, imgf_gce_post_processor, imgf_containerdisk_post_processor,
	imgf_sbom_post_processor, imgf_provenance_post_processor, imgf_push_post_processor;

static const struct imgf_builder_ops *const builders[] = {
	&imgf_docker_builder,
	&imgf_qemu_builder,
};

static const struct imgf_provisioner_ops *const provisioners[] = {
	&imgf_shell_provisioner,      &imgf_file_provisioner,	    &imgf_packages_provisioner,
	&imgf_containerd_provisioner, &imgf_runc_provisioner,	    &imgf_cni_provisioner,
	&imgf_crictl_provisioner,     &imgf_kubernetes_provisioner, &imgf_images_provisioner,
	&imgf_kind_provisioner,	      &imgf_sysprep_provisioner,
};

/* In the order they run: FIRST and LAST ones in this order among themselves. */
static const struct imgf_post_processor_ops *const post_processors[] = {
	&imgf_checksum_post_processor,	    &imgf_sbom_post_processor,
	&imgf_provenance_post_processor,    &imgf_manifest_post_processor,
	&imgf_ova_post_processor,	    &imgf_raw_post_processor,
	&imgf_vhd_post_processor,	    &imgf_gce_post_processor,
	&imgf_containerdisk_post_processor, &imgf_push_post_processor,
};

void imgf_plugins_register(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	for (size_t i = 0; i < ARRAY_SIZE(builders); i++)
		imgf_builder_register(builders[i]);
	for (size_t i = 0; i < ARRAY_SIZE(provisioners); i++)
		imgf_provisioner_register(provisioners[i]);
	for (size_t i = 0; i < ARRAY_SIZE(post_processors); i++)
		imgf_post_processor_register(post_processors[i]);
}
