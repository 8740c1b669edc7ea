#!/usr/bin/env bash
# lane: vm
# needs: vm
# A base laid out as Ubuntu 24.04's cloud image is (tests/lib/vm-image.sh's bootpart shape:
# GPT, p14 BIOS boot, p15 ESP, p16 /boot, p1 root last on the disk by position; Debian 13 in
# it): imgforge build finds the root by what is mounted at / and grows p1 into the space
# disk_size adds, provisions with /boot mounted from p16 (a file a step writes to /boot lands
# on p16, not in the root's /boot directory), and the image boots under UEFI (OVMF) through
# grub reading the kernel from p16: SSH into it (hack/image-ssh.sh, FIRMWARE=uefi) shows /boot
# mounted from partition 16, both files, the grown root and the EFI firmware.
. "$(dirname "$0")/../lib/harness.sh"
. "$TOP/tests/lib/vm-image.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
vm_accel_env
TEST_CLAIM=1
for c in qemu-system-x86_64 guestfish sgdisk ssh ssh-keygen genisoimage; do
	require_cmd $c || { test_skip "the /boot-partition base" "$c is not installed"; test_done; }
done
[ -r /usr/share/OVMF/OVMF_CODE_4M.fd ] || {
	test_skip "the /boot-partition base" "no OVMF (Debian's ovmf package)"
	test_done
}
VMBASE=$(vm_image_gpt_ensure bootpart) || die "could not make the /boot-partition GPT base image"
F=$TOP/tests/fixtures/config
export IMGFORGE_CACHE_DIR=$TMP/cache
export LIBGUESTFS_CACHEDIR=${LIBGUESTFS_CACHEDIR:-${TMPDIR:-/var/tmp}}
QTMP=$(mktemp -d /var/tmp/t1262-work.XXXXXX) && chmod 0711 "$QTMP" || die "mktemp"
at_exit "rm -rf '$QTMP'"
export TMPDIR=$QTMP
NAME=test-qemu-bootpart+kube-v1.31.2
IMG=$TMP/output/$NAME/$NAME.qcow2
ssh-keygen -q -t ed25519 -N "" -f "$TMP/key" -C imgforge-test
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

test_expect_success "imgforge build grows the root (p1, last by position) of the /boot-partition base to disk_size" '
	"$IMGF" build --var qemu_base_image_url="$VMBASE" \
		--var qemu_base_image_checksum="sha256:$(sha256sum "$VMBASE" | cut -d" " -f1)" \
		--output-dir "$TMP/output" "$F/qemu-bootpart.json" >"$TMP/build.log" 2>&1 ||
		{ tail -n 30 "$TMP/build.log"; exit 1; }
	grep "root partition 1 (gpt) grown to end at sector" "$TMP/build.log" &&
	test -f "$IMG"
'

test_expect_success "p14, p15 and p16 are as in the base; p1 ends at the disk's last usable sector" '
	qemu-img convert -O raw "$VMBASE" "$TMP/base.raw" &&
	qemu-img convert -O raw "$IMG" "$TMP/img.raw" &&
	test "$(stat -c %s "$TMP/img.raw")" -eq $((4 * 1024 * 1024 * 1024)) &&
	sgdisk -v "$TMP/img.raw" >"$TMP/verify" && grep -q "No problems found" "$TMP/verify" &&
	test "$(sgdisk -p "$TMP/img.raw" | grep -E "^ +1[456] ")" = "$(sgdisk -p "$TMP/base.raw" | grep -E "^ +1[456] ")" &&
	sgdisk -i 1 "$TMP/img.raw" | grep -x "Last sector: $((4 * 1024 * 2048 - 34)) (at 4.0 GiB)" &&
	rm -f "$TMP/base.raw"
'

test_expect_success "the step wrote /boot on p16 and /etc on p1 (read by guestfish, partition by partition)" '
	guestfish --ro -a "$TMP/img.raw" run : mount /dev/sda16 / : cat /imgforge-bootpart >"$TMP/p16" &&
	grep -qx on-the-boot-partition "$TMP/p16" &&
	guestfish --ro -a "$TMP/img.raw" run : mount /dev/sda1 / : cat /etc/imgforge-bootpart >"$TMP/p1" &&
	grep -qx on-the-root "$TMP/p1" &&
	! guestfish --ro -a "$TMP/img.raw" run : mount /dev/sda1 / : exists /boot/imgforge-bootpart | grep -qx true &&
	rm -f "$TMP/img.raw"
'

test_expect_success "under UEFI the image boots: /boot from partition 16, both files, the root grown, EFI firmware" '
	SSH_PUBLIC_KEY="$(cat "$TMP/key.pub")" SSH_PORT=$PORT SSH_OPTS="-i $TMP/key" FIRMWARE=uefi \
		timeout 1200 bash "$TOP/hack/image-ssh.sh" "$TMP/output/$NAME" \
		"cat /etc/debian_version; findmnt -no SOURCE /boot; findmnt -no SOURCE /; cat /boot/imgforge-bootpart /etc/imgforge-bootpart; df -B1 --output=size / | sed -n 2s/^/size=/p; test -d /sys/firmware/efi && echo efi" \
		>"$TMP/ssh.out" 2>"$TMP/ssh.err" || { cat "$TMP/ssh.err" "$TMP/ssh.out"; exit 1; }
	cat "$TMP/ssh.out"
	grep -q "^13" "$TMP/ssh.out" &&
	grep -qx "/dev/vda16" "$TMP/ssh.out" &&
	grep -qx "/dev/vda1" "$TMP/ssh.out" &&
	grep -qx on-the-boot-partition "$TMP/ssh.out" &&
	grep -qx on-the-root "$TMP/ssh.out" &&
	size=$(sed -n "s/^size=//p" "$TMP/ssh.out" | tr -d " ") &&
	test "$size" -gt $((3 * 1024 * 1024 * 1024)) &&
	grep -qx efi "$TMP/ssh.out"
'

test_expect_success "the image was not written by the boot (qemu -snapshot) and qemu is gone" '
	qemu-img check "$IMG" >/dev/null &&
	! pgrep -f "hostfwd=tcp:127.0.0.1:$PORT-" >/dev/null
'

test_done
