#!/usr/bin/env bash
# lane: vm
# needs: vm
# make -C cloudinit and hack/image-ssh.sh: boot a VM image with the seed and run a command
# over SSH as the seeded user (the Debian 13 GPT test base, booted under BIOS, stands in for
# a build's qcow2).
. "$(dirname "$0")/../lib/harness.sh"
. "$TOP/tests/lib/vm-image.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
vm_accel_env
TEST_CLAIM=1
for c in qemu-system-x86_64 ssh ssh-keygen genisoimage sgdisk; do
	require_cmd $c || { test_skip "image-ssh" "$c is not installed"; test_done; }
done
VMBASE=$(vm_image_gpt_ensure genericcloud) || die "could not make the GPT VM base image"
mkdir -p "$TMP/build"
ln -s "$VMBASE" "$TMP/build/test+kube-v1.31.2.qcow2"
ssh-keygen -q -t ed25519 -N "" -f "$TMP/key" -C imgforge-test
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

test_expect_success "make -C cloudinit writes a cidata seed with the key" '
	SSH_PUBLIC_KEY="$(cat "$TMP/key.pub")" make -s -C "$TOP/cloudinit" cidata.iso >"$TMP/make.log" 2>&1 ||
		{ cat "$TMP/make.log"; exit 1; }
	grep -a -q "imgforge-test" "$TOP/cloudinit/cidata.iso" &&
	grep -a -q "#cloud-config" "$TOP/cloudinit/cidata.iso"
'

test_expect_success "hack/image-ssh.sh boots the image and runs a command over SSH" '
	SSH_PUBLIC_KEY="$(cat "$TMP/key.pub")" SSH_PORT=$PORT SSH_OPTS="-i $TMP/key" \
		timeout 900 bash "$TOP/hack/image-ssh.sh" "$TMP/build" "id -un; cat /etc/debian_version" \
		>"$TMP/ssh.out" 2>"$TMP/ssh.err" || { cat "$TMP/ssh.err" "$TMP/ssh.out"; exit 1; }
	cat "$TMP/ssh.out"
	grep -qx capv "$TMP/ssh.out" && grep -q "^13" "$TMP/ssh.out"
'

test_expect_success "the image was not written (qemu ran with -snapshot) and qemu is gone" '
	qemu-img check "$VMBASE" >/dev/null &&
	! pgrep -f "hostfwd=tcp:127.0.0.1:$PORT-" >/dev/null
'

test_done
