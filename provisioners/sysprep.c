/*
 * sysprep: make the image generic: empty machine-id, no SSH host keys, no containerd
 * instance UUID, no package or ldconfig caches, logs or shell history, an empty /tmp
 * (image-builder's sysprep role, builder-agnostic). What it removes differs between two
 * builds of the same config, so it is also what keeps a squashed image reproducible.
 */
#include "error.h"
#include "provisioner.h"
#include "target.h"

static const struct imgf_key sysprep_keys[] = {
	{NULL, 0, false},
};

static const char sysprep_script[] =
	"if [ -e /etc/machine-id ]; then : > /etc/machine-id; fi\n"
	"rm -f /var/lib/dbus/machine-id\n"
	/* containerd makes one at start; a copy in the image would give every node the same */
	"rm -f /var/lib/containerd/io.containerd.grpc.v1.introspection/uuid\n"
	/* ldconfig's record of inodes and ctimes, rebuilt when missing */
	"rm -f /var/cache/ldconfig/aux-cache\n"
	"rm -f /etc/ssh/ssh_host_*\n"
	"rm -rf /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/*\n"
	"rm -rf /var/cache/dnf/* /var/cache/yum/*\n"
	/* -exec rm, not GNU's -delete: busybox's find has no -delete. */
	"find /var/log -type f \\( -name '*.log' -o -name '*.gz' -o -name '*.[0-9]' \\) "
	"-exec rm -f {} + 2>/dev/null || true\n"
	"for f in /var/log/wtmp /var/log/btmp /var/log/lastlog; do [ -e $f ] && : > $f; done\n"
	"rm -rf /var/log/journal/*\n"
	"rm -f /root/.bash_history /home/*/.bash_history /root/.wget-hsts /root/.lesshst\n"
	"rm -rf /tmp/* /var/tmp/* 2>/dev/null || true\n"
	"rm -rf /var/lib/cloud/instances /var/lib/cloud/instance\n"
	"echo 'sysprep done'\n";

static int sysprep_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	return imgf_target_sh(t, s->label, sysprep_script, NULL, err);
}

const struct imgf_provisioner_ops imgf_sysprep_provisioner = {
	.name = "sysprep",
	.keys = sysprep_keys,
	.run = sysprep_run,
};
