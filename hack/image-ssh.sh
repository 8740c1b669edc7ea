#!/usr/bin/env bash
# Boot a built qcow2 with a NoCloud seed carrying your SSH key and open an SSH session into
# it, as image-builder's hack/image-ssh.sh does. The image itself is never written (-snapshot).
#   hack/image-ssh.sh output/BUILD_NAME+kube-VERSION [ssh args...]
# SSH_USER (default capv), SSH_PUBLIC_KEY or ~/.ssh/id_*.pub, SSH_PORT (default 2222),
# SSH_OPTS (more ssh options, e.g. "-i KEY"), FIRMWARE (bios, the default, or uefi: OVMF from
# Debian's ovmf package, its variables in a copy that goes with the VM).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: hack/image-ssh.sh BUILD_DIR [ssh args...]}
shift
img=$(ls "$dir"/*.qcow2 2>/dev/null | head -n 1)
[ -n "$img" ] || { echo "image-ssh: no .qcow2 in '$dir'" >&2; exit 1; }
user=${SSH_USER:-capv}
port=${SSH_PORT:-2222}
make -s -C "$top/cloudinit" SSH_USER="$user" >/dev/null
# KVM where it really runs a guest (a nested /dev/kvm can fail at once), else TCG.
accel=tcg
! bash "$top/hack/kvm-usable.sh" || accel=kvm
log=$(mktemp /tmp/image-ssh.XXXXXX.log)
fw=()
case ${FIRMWARE:-bios} in
bios) ;;
uefi)
	code=/usr/share/OVMF/OVMF_CODE_4M.fd vars=/usr/share/OVMF/OVMF_VARS_4M.fd
	[ -r "$code" ] && [ -r "$vars" ] || { echo "image-ssh: FIRMWARE=uefi needs $code and $vars (Debian's ovmf package)" >&2; exit 1; }
	cp "$vars" "$log.vars"
	fw=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" -drive "if=pflash,format=raw,unit=1,file=$log.vars")
	;;
*) echo "image-ssh: FIRMWARE '${FIRMWARE}': expected bios or uefi" >&2; exit 1 ;;
esac
qemu-system-x86_64 -machine "accel=$accel" -m 2048 -smp 2 -snapshot -display none "${fw[@]}" \
	-drive "file=$img,if=virtio,format=qcow2" -cdrom "$top/cloudinit/cidata.iso" \
	-nic "user,model=virtio,hostfwd=tcp:127.0.0.1:$port-:22" -serial "file:$log" &
qemu=$!
trap 'kill $qemu 2>/dev/null && wait $qemu 2>/dev/null; rm -f "$log.vars"; true' EXIT
echo "image-ssh: booting $img ($accel), console in $log; waiting for SSH on 127.0.0.1:$port"
for _ in $(seq 1 600); do
	# shellcheck disable=SC2086 # SSH_OPTS is a list of options
	if ssh ${SSH_OPTS:-} -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o ConnectTimeout=2 -p "$port" "$user@127.0.0.1" true 2>/dev/null; then
		rc=0
		# shellcheck disable=SC2086
		ssh ${SSH_OPTS:-} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p "$port" \
			"$user@127.0.0.1" "$@" || rc=$?
		exit $rc
	fi
	kill -0 $qemu 2>/dev/null || { echo "image-ssh: qemu exited; see $log" >&2; exit 1; }
	sleep 2
done
echo "image-ssh: no SSH after 20 minutes; see $log" >&2
exit 1
