/*
 * sysprep: make the image generic: no per-machine identity (machine-id emptied; no SSH host
 * keys, containerd instance UUID, systemd random seed or credential secret, NVMe host NQN,
 * DHCP leases or cloud-init instance state; the iSCSI initiator name left for iscsid to
 * make), no package or ldconfig caches, logs or shell history, an empty /tmp
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
	/* systemd's entropy carried across boots and the key of its encrypted credentials:
	 * each machine makes its own when missing */
	"rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret\n"
	/*
	 * open-iscsi's postinst writes a random IQN; two nodes with one name break iSCSI
	 * storage. Debian's and Ubuntu's iscsid (startup-checks.sh, before it starts) replace a
	 * file that says GenerateName=yes with a new name and refuse to start without the file;
	 * Fedora's iscsi-init makes one when the file is missing.
	 */
	"n=/etc/iscsi/initiatorname.iscsi\n"
	"if [ -e $n ]; then\n"
	"  if grep -qs GenerateName=yes /lib/open-iscsi/startup-checks.sh "
	"/usr/lib/open-iscsi/startup-checks.sh; then\n"
	"    printf '## iscsid names this initiator when it first starts (imgforge "
	"sysprep)\\nGenerateName=yes\\n' >$n\n"
	"    chmod 600 $n\n"
	"  else rm -f $n; fi\n"
	"fi\n"
	/* nvme-cli's postinst writes a random host NQN and ID; without them it derives both
	 * from the machine's DMI UUID */
	"rm -f /etc/nvme/hostnqn /etc/nvme/hostid\n"
	"rm -f /var/lib/dhcp/*.leases /var/lib/dhclient/*.lease*\n"
	"rm -rf /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/*\n"
	"rm -rf /var/cache/dnf/* /var/cache/yum/*\n"
	/* -exec rm, not GNU's -delete: busybox's find has no -delete. */
	"find /var/log -type f \\( -name '*.log' -o -name '*.gz' -o -name '*.[0-9]' \\) "
	"-exec rm -f {} + 2>/dev/null || true\n"
	"for f in /var/log/wtmp /var/log/btmp /var/log/lastlog; do [ -e $f ] && : > $f; done\n"
	"rm -rf /var/log/journal/*\n"
	"rm -f /root/.bash_history /home/*/.bash_history /root/.wget-hsts /root/.lesshst\n"
	"rm -rf /tmp/* /var/tmp/* 2>/dev/null || true\n"
	/* cloud-init's record of the instance it ran on; its seed stays */
	"rm -rf /var/lib/cloud/instances /var/lib/cloud/instance /var/lib/cloud/data "
	"/var/lib/cloud/sem\n"
	"echo 'sysprep done'\n";

static int sysprep_run(struct imgf_step *s, struct imgf_target *t, struct imgf_error **err)
{
	return imgf_target_sh(t, s->label, sysprep_script, NULL, err);
}

const struct imgf_provisioner_ops imgf_sysprep_provisioner = {
	.name = "sysprep",
	.quick = imgf_provisioner_quick, /* a few small files: cheaper to run again than to keep */
	.keys = sysprep_keys,
	.run = sysprep_run,
};
