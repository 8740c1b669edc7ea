#!/usr/bin/env bash
# lane: vm
# needs: vm go fixtures
# imgforge build --only capi-qcow2 from config/debian-13.json on a base laid out as Debian's
# genericcloud image (tests/lib/vm-image.sh: Debian 13, GPT, p14 BIOS boot, p15 ESP, p1 root
# last on the disk by position, grub for BIOS and UEFI, cloud-init), real Kubernetes,
# containerd, runc and CNI plugins built from source at the shipped versions (tests/lib/kube.sh)
# as the sources, libguestfs to provision, libvirt (TCG here) to boot-check: under BIOS with
# kubeadm init to a Ready node (a pod sandbox through containerd and runc first), then the same
# image under UEFI (OVMF), whose steps all come from the step cache (the firmware is read by
# the boot check only). Files and partitions are read back with guestfish, not through
# imgforge. Then air-gapped: imgforge mirror keeps every input (the node packages locked on
# the base), and the build from it with no network at all records the networked build's
# inputs. The OVA build (about packaging) uses the fixtures' stand-ins.
. "$(dirname "$0")/../lib/harness.sh"
. "$TOP/tests/lib/vm-image.sh"
. "$TOP/tests/lib/kube.sh"
TEST_CLAIM=1
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
vm_accel_env
why=
require_cmd guestfish || why="guestfish is not installed"
[ -n "$why" ] || require_cmd virsh || why="libvirt is not installed"
[ -n "$why" ] || virsh -c qemu:///system version >/dev/null 2>&1 || why="libvirtd does not answer on qemu:///system (hack/test-env.sh starts it)"
[ -n "$why" ] || ls /boot/vmlinuz-* >/dev/null 2>&1 || why="no kernel in /boot for the libguestfs appliance"
if [ -n "$why" ]; then
	test_skip "qcow2 builds" "$why"
	test_done
fi
fixtures_up "qcow2 builds"
require_cmd go || {
	test_skip "qcow2 builds" "no Go toolchain to build Kubernetes"
	test_done
}
kube_up
VMBASE=$(vm_image_gpt_ensure genericcloud) || die "could not make the GPT VM base image"
BASE_SUM=$(sha256sum "$VMBASE" | cut -d" " -f1)
export IMGFORGE_CACHE_DIR=$TMP/cache
OUT=$TMP/output/debian-13+kube-$KUBE_VERSION
IMG=$OUT/debian-13+kube-$KUBE_VERSION.qcow2
# The builder's work directories go under TMPDIR: one of this script's own, so that builds
# other scripts run at the same time are not counted (libvirt's qemu must reach it: 0711;
# libguestfs keeps its appliance cache where it was).
export LIBGUESTFS_CACHEDIR=${LIBGUESTFS_CACHEDIR:-${TMPDIR:-/var/tmp}}
QTMP=$(mktemp -d /var/tmp/t1290-work.XXXXXX) && chmod 0711 "$QTMP" || die "mktemp"
at_exit "rm -rf '$QTMP'"
export TMPDIR=$QTMP
work_dirs() { ls -d "${TMPDIR:-/var/tmp}"/imgforge-qemu-* 2>/dev/null | wc -l; }
domains() { virsh -c qemu:///system list --all --name | grep -c '^imgforge-boot' || true; }
before_dirs=$(work_dirs)

# On failure, the boot check's own lines first (the guest's log of a failed check is there).
build_failed() {
	grep "boot check" "$1" | tail -n 60
	echo "--- the log's last lines:"
	tail -n 30 "$1"
	return 1
}

test_expect_success "imgforge build --only capi-qcow2 succeeds; under BIOS the boot check runs a pod sandbox and kubeadm init to a Ready node" '
	"$IMGF" build --only capi-qcow2 --var-file "$KUBE_BUILD_VARS" \
		--var qemu_base_image_url="$VMBASE" --var qemu_base_image_checksum="sha256:$BASE_SUM" \
		--var disk_size=4G --var boot_check=kubeadm --output-dir "$TMP/output" \
		"$TOP/config/debian-13.json" >"$TMP/build.log" 2>&1 || build_failed "$TMP/build.log"
	grep "boot check" "$TMP/build.log"
	grep -q "boot check: containerd-active ok" "$TMP/build.log" &&
	grep -q "boot check: kubeadm-version ok" "$TMP/build.log" &&
	grep -q "boot check: pause-sandbox ok" "$TMP/build.log" &&
	grep -q "boot check: firmware-bios ok" "$TMP/build.log" &&
	grep -q "boot check: kubeadm-node-ready ok" "$TMP/build.log" &&
	grep "boot check: kubeadm-init [0-9]*s" "$TMP/build.log" &&
	grep "boot check: pods-ready [0-9]*s" "$TMP/build.log"
'

test_expect_success "the same image under UEFI (OVMF): every step from the cache, the boot check runs a pod sandbox" '
	"$IMGF" build --only capi-qcow2 --var-file "$KUBE_BUILD_VARS" \
		--var qemu_base_image_url="$VMBASE" --var qemu_base_image_checksum="sha256:$BASE_SUM" \
		--var disk_size=4G --var firmware=uefi --output-dir "$TMP/output-uefi" \
		"$TOP/config/debian-13.json" >"$TMP/uefi.log" 2>&1 || build_failed "$TMP/uefi.log"
	grep "boot check" "$TMP/uefi.log"
	steps=$(grep -cE "capi-qcow2: step [0-9]+/[0-9]+: " "$TMP/uefi.log") &&
	cached=$(grep -cE "capi-qcow2: step [0-9]+/[0-9]+: [^ ]+: cached \(" "$TMP/uefi.log") &&
	echo "steps: $steps lines, $cached cached" &&
	test "$cached" -gt 0 && test "$cached" -eq "$steps" &&
	grep -q "boot check: booting .* (UEFI," "$TMP/uefi.log" &&
	grep -q "boot check: firmware-uefi ok" "$TMP/uefi.log" &&
	grep -q "boot check: containerd-active ok" "$TMP/uefi.log" &&
	grep -q "boot check: pause-sandbox ok" "$TMP/uefi.log" &&
	! grep -q "boot check: .* FAILED" "$TMP/uefi.log"
'

test_expect_success "qemu-img check is clean and the image is compressed qcow2" '
	qemu-img check "$IMG" &&
	test "$(qemu-img info --output=json "$IMG" | jq -r .format)" = qcow2 &&
	test "$(qemu-img info --output=json "$IMG" | jq -r ".\"virtual-size\"")" -eq $((4 * 1024 * 1024 * 1024))
'

test_expect_success "the sha256 sidecar, console.log and manifest are in the output dir" '
	test "$(cat "$IMG.sha256")" = "$(sha256sum "$IMG" | cut -d" " -f1)" &&
	test -s "$OUT/console.log" && grep -q IMGFORGE-BOOT-CHECK-END "$OUT/console.log" &&
	jq -e ".builds[0].builder_type == \"qemu\" and (.builds[0].files | map(.name) | index(\"debian-13+kube-$KUBE_VERSION.qcow2\") != null)" "$OUT/manifest.json" &&
	jq -e --arg s "$BASE_SUM" ".builds[0].inputs[] | select(.name == \"base-image\" and .sha256 == \$s)" "$OUT/manifest.json"
'

# One appliance launch reads back everything below (each launch costs seconds under TCG).
FILES="/usr/local/bin/containerd:755 /usr/local/bin/ctr:755 /usr/local/sbin/runc:755
	/opt/cni/bin/bridge:755 /opt/cni/bin/host-local:755 /usr/local/bin/crictl:755
	/usr/bin/kubeadm:755 /usr/bin/kubelet:755 /usr/bin/kubectl:755
	/etc/containerd/config.toml:644 /etc/crictl.yaml:644
	/etc/systemd/system/kubelet.service:644
	/etc/systemd/system/kubelet.service.d/10-kubeadm.conf:644
	/etc/systemd/system/containerd.service:644"
if [ -f "$IMG" ]; then
	{
		for f in $FILES; do
			echo "echo FILE ${f%%:*}"
			echo "stat ${f%%:*}"
		done
		echo "echo WANTS"
		echo "is-symlink /etc/systemd/system/multi-user.target.wants/kubelet.service"
		echo "echo CONTENT"
		echo "is-dir /var/lib/containerd/io.containerd.content.v1.content"
		echo "echo MANIFESTS"
		echo "is-dir /etc/kubernetes/manifests"
		echo "echo MACHINEID"
		echo "filesize /etc/machine-id"
		echo "echo DBUSID"
		echo "exists /var/lib/dbus/machine-id"
		echo "echo SSHKEYS"
		echo "glob-expand /etc/ssh/ssh_host_*"
		echo "echo STATVFS"
		echo "statvfs /"
		echo "echo PARTS"
		echo "part-list /dev/sda"
		echo "echo SECTORS"
		echo "blockdev-getsz /dev/sda"
	} | guestfish --ro -a "$IMG" -i >"$TMP/readback" 2>&1
fi
after() { awk -v m="$1" '$0 == m {getline; print; exit}' "$TMP/readback"; }

test_expect_success "each provisioner's files are there with the right modes (read by guestfish)" '
	for f in $FILES; do
		p=${f%%:*} want=${f##*:}
		mode=$(awk -v m="FILE $p" "\$0 == m {f=1; next} f && /^mode:/ {print \$2; exit}" "$TMP/readback")
		test -n "$mode" || { echo "$p: not in the image"; cat "$TMP/readback"; exit 1; }
		got=$(printf "%o" $((mode & 07777)))
		test "$got" = "$want" || { echo "$p: mode $got, want $want"; exit 1; }
	done
	test "$(after WANTS)" = true && test "$(after CONTENT)" = true && test "$(after MANIFESTS)" = true
'

test_expect_success "sysprep left no machine-id content and no SSH host keys" '
	test "$(after MACHINEID)" = 0 &&
	test "$(after DBUSID)" = false &&
	test "$(after SSHKEYS)" = STATVFS
'

test_expect_success "the root (p1, last by position) grew to the disk size; p14 and p15 are as they were" '
	size=$(awk "/^STATVFS/ {f=1} f && /^bsize:/ {b=\$2} f && /^blocks:/ {n=\$2} END {print b*n}" "$TMP/readback") &&
	echo "root filesystem: $size bytes" &&
	test "$size" -gt $((3500 * 1024 * 1024)) &&
	parts=$(awk "/^PARTS/ {f=1; next} /^SECTORS/ {f=0} f" "$TMP/readback" |
		awk "/part_num:/ {n=\$2} /part_start:/ {s=\$2} /part_end:/ {print n, s, \$2}" | sort -n) &&
	echo "$parts" &&
	sectors=$(after SECTORS) &&
	test "$(echo "$parts" | cut -d" " -f1 | tr "\n" " ")" = "1 14 15 " &&
	test "$(echo "$parts" | awk "\$1 == 14 {print \$2, \$3}")" = "$((2048 * 512)) $((4096 * 512 - 1))" &&
	test "$(echo "$parts" | awk "\$1 == 15 {print \$2, \$3}")" = "$((4096 * 512)) $((258048 * 512 - 1))" &&
	test "$(echo "$parts" | awk "\$1 == 1 {print \$2}")" = "$((262144 * 512))" &&
	end=$(echo "$parts" | awk "\$1 == 1 {print \$3}") &&
	test "$end" -gt $(((sectors - 34 - 2048) * 512)) && test "$end" -lt $(((sectors - 33) * 512))
'

test_expect_success "the base image is unchanged" '
	test "$(sha256sum "$VMBASE" | cut -d" " -f1)" = "$BASE_SUM"
'

test_expect_success "no overlay, domain or seed is left behind" '
	test "$(work_dirs)" -eq "$before_dirs" && test "$(domains)" -eq 0
'

# Air-gapped (issue 17): imgforge mirror keeps every input of capi-qcow2 in DIR, the node's
# distro packages too (resolved on the GPT base in the appliance, as `imgforge lock` does, kept
# as an apt repository with DIR/imgforge.lock); a build given DIR/vars.json in a network
# namespace of its own (unshare -n: nothing listens there, no upstream server is reachable),
# with the appliance's network off (qemu_network false), and an empty download cache, records
# the same inputs, files, images and packages, as the networked build above.
M=$TMP/mirror
# name sha256 of every input a manifest records, sorted; the packages, every field.
digests() { jq -r '.builds[].inputs[] | "\(.name) \(.sha256)"' "$1"/*/manifest.json | sort; }
debs() { jq -S '[.builds[].inputs[] | select(.kind == "deb")] | sort_by(.name)' "$1"/*/manifest.json; }

test_expect_success "imgforge mirror --only capi-qcow2 keeps every input in DIR, the node packages resolved on the GPT base" '
	IMGFORGE_CACHE_DIR=$TMP/cache-mirror "$IMGF" mirror --only capi-qcow2 --var-file "$KUBE_BUILD_VARS" \
		--var qemu_base_image_url="$VMBASE" --var qemu_base_image_checksum="sha256:$BASE_SUM" \
		--var "pause_image=registry.k8s.io/pause:$PAUSE_TAG" \
		--var "etcd_image=registry.k8s.io/etcd:$ETCD_TAG" \
		--var "coredns_image=registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
		"$TOP/config/debian-13.json" "$M" >"$TMP/mirror.log" 2>&1 ||
		{ tail -n 40 "$TMP/mirror.log"; exit 1; }
	grep -E "mirror: [1-9][0-9]* fetched" "$TMP/mirror.log" &&
	jq -e ".variables.qemu_network == \"false\"" "$M/vars.json" &&
	jq -e ".variables.packages_lock == \"$M/imgforge.lock\"" "$M/vars.json" &&
	n=$(jq ".images[\"capi-qcow2\"].steps[0].packages | length" "$M/imgforge.lock") &&
	echo "$n packages locked" && test "$n" -gt 0 &&
	for p in conntrack socat ebtables; do
		jq -e --arg p "$p" ".images[\"capi-qcow2\"].steps[0].packages | map(.package) | index(\$p) != null" "$M/imgforge.lock" >/dev/null ||
			{ echo "$p is not locked"; exit 1; }
	done &&
	test "$(grep -c "^Package: " "$M/debs/Packages")" -ge "$n"
'

test_expect_success "with no network (unshare -n, the appliance's off), the build from the mirror records the same inputs" '
	! unshare -n curl -sS -m 5 -o /dev/null "http://$KUBE_REG/v2/" 2>/dev/null &&
	IMGFORGE_CACHE_DIR=$TMP/cache-offline unshare -n "$IMGF" build --only capi-qcow2 \
		--var-file "$KUBE_BUILD_VARS" \
		--var qemu_base_image_url="$VMBASE" --var qemu_base_image_checksum="sha256:$BASE_SUM" \
		--var disk_size=4G --var boot_check=false --var-file "$M/vars.json" \
		--output-dir "$TMP/offline" "$TOP/config/debian-13.json" >"$TMP/offline.log" 2>&1 ||
		build_failed "$TMP/offline.log"
	grep -q "locked package(s) installed, each verified by sha256 before" "$TMP/offline.log" &&
	digests "$TMP/output" >"$TMP/d-online" && digests "$TMP/offline" >"$TMP/d-offline" &&
	test "$(wc -l <"$TMP/d-online")" -ge 10 &&
	diff "$TMP/d-online" "$TMP/d-offline" &&
	debs "$TMP/output" >"$TMP/debs-online" && debs "$TMP/offline" >"$TMP/debs-offline" &&
	test "$(jq length "$TMP/debs-online")" -gt 0 &&
	diff "$TMP/debs-online" "$TMP/debs-offline"
'

test_expect_success "imgforge build --only capi-ova writes the OVA beside the disk" '
	"$IMGF" build --only capi-ova --var-file "$FIX/vars.json" \
		--var qemu_base_image_url="$VMBASE" --var qemu_base_image_checksum="sha256:$BASE_SUM" \
		--var boot_check=false --var "ovf_custom_properties={\"PURPOSE\": \"test\"}" \
		--output-dir "$TMP/output-ova" "$TOP/config/debian-13.json" \
		>"$TMP/ova.log" 2>&1 || { tail -n 40 "$TMP/ova.log"; exit 1; }
	o=$TMP/output-ova/debian-13+kube-v1.31.2
	n=debian-13+kube-v1.31.2
	test "$(tar -tf "$o/$n.ova" | tr "\n" " ")" = "$n.ovf $n.mf $n.vmdk " &&
	test "$(cat "$o/$n.ova.sha256")" = "$(sha256sum "$o/$n.ova" | cut -d" " -f1)" &&
	tar -xOf "$o/$n.ova" "$n.ovf" | grep -q "ovf:key=\"KUBERNETES_SEMVER\"" &&
	tar -xOf "$o/$n.ova" "$n.ovf" | grep -q "ovf:key=\"PURPOSE\"" &&
	jq -e ".builds[0].files | map(.name) | index(\"$n.ova\") != null" "$o/manifest.json" &&
	test ! -e "$o/console.log"
'

test_expect_success "a failing step names the step and leaves no overlay, domain or output" '
	expect_exit 1 "$IMGF" build --var qemu_base_image_url="$VMBASE" \
		--var qemu_base_image_checksum="sha256:$BASE_SUM" --output-dir "$TMP/output-fail" \
		"$TOP/tests/fixtures/config/qemu-failing.json" &&
	expect_err "step 2/2 '"'"'the-failing-step'"'"' (shell)" &&
	expect_err "exited with status 4" &&
	test "$(work_dirs)" -eq "$before_dirs" && test "$(domains)" -eq 0 &&
	test ! -e "$TMP/output-fail"
'

test_expect_success "a boot check timeout fails with the console tail and keeps console.log" '
	expect_exit 1 "$IMGF" build --var qemu_base_image_url="$VMBASE" \
		--var qemu_base_image_checksum="sha256:$BASE_SUM" --output-dir "$TMP/output-timeout" \
		"$TOP/tests/fixtures/config/qemu-boot-timeout.json" &&
	expect_err "boot check: no result within 10s; last console lines:" &&
	o=$TMP/output-timeout/test-qemu-timeout+kube-v1.31.2 &&
	test -f "$o/console.log" &&
	test -z "$(ls "$o" | grep -v "^console.log$")" &&
	test "$(work_dirs)" -eq "$before_dirs" && test "$(domains)" -eq 0
'

test_expect_success "--on-error=abort keeps the overlay and says where" '
	expect_exit 1 "$IMGF" build --on-error=abort --var qemu_base_image_url="$VMBASE" \
		--var qemu_base_image_checksum="sha256:$BASE_SUM" --output-dir "$TMP/output-fail" \
		"$TOP/tests/fixtures/config/qemu-failing.json" &&
	disk=$(grep -oE "keeping the build disk '"'"'[^'"'"']+'"'"'" "$TMP/err" | cut -d"'"'"'" -f2) &&
	test -f "$disk" &&
	trap "rm -rf \"$(dirname "$disk")\"" EXIT &&
	test "$(guestfish --ro -a "$disk" -i cat /root/marker)" = before
'

test_done
