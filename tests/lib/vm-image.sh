# The test VM base image: a small bootable Debian bookworm qcow2 made from debootstrap
# (cloud kernel, systemd, cloud-init, qemu-guest-agent, extlinux), cached between runs.
# debootstrap resolves no virtual packages, so what provides one is named (python3-cffi-backend).
# Usage: vm_image_ensure  -> prints the path of the qcow2 (read-only, never modified)
VM_IMAGE_SUITE=bookworm
VM_IMAGE_MIRROR=${IMGF_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What a Cluster API node needs from the distro is in the image already (so the packages
# step has nothing to fetch), plus what makes it bootable and reachable by cloud-init.
VM_IMAGE_PACKAGES=linux-image-cloud-amd64,python3-cffi-backend,systemd-sysv,udev,dbus,cloud-init,qemu-guest-agent,ifupdown,isc-dhcp-client,openssh-server,extlinux,syslinux-common,e2fsprogs,iptables,conntrack,socat,ebtables,ethtool,iproute2,kmod,libseccomp2,ca-certificates,curl,procps,sudo

vm_image_ensure() {
	local key ikey dir img raw
	# The debootstrap tree is keyed by what it holds; the image also by how it is finished.
	key=$(printf '%s\n' "$VM_IMAGE_SUITE" "$VM_IMAGE_PACKAGES" v1 | sha256sum | cut -c1-12)
	ikey=$(printf '%s\n' "$key" image-v2 | sha256sum | cut -c1-12)
	img="$TEST_CACHE/vm-$VM_IMAGE_SUITE-$ikey.qcow2"
	if [ -f "$img" ]; then
		echo "$img"
		return 0
	fi
	dir="$TEST_CACHE/vm-root-$key"
	raw="$TEST_CACHE/vm-$key.raw"
	if [ ! -f "$dir.done" ]; then
		rm -rf "$dir"
		debootstrap --variant=minbase --include="$VM_IMAGE_PACKAGES" \
			"$VM_IMAGE_SUITE" "$dir" "$VM_IMAGE_MIRROR" >"$dir.log" 2>&1 || {
			tail -n 20 "$dir.log" >&2
			return 1
		}
		touch "$dir.done"
	fi
	# A machine of its own on first boot, found by label, with a serial console and DHCP.
	: >"$dir/etc/machine-id"
	rm -f "$dir/var/lib/dbus/machine-id" "$dir"/etc/ssh/ssh_host_*
	echo 'LABEL=root / ext4 defaults 0 1' >"$dir/etc/fstab"
	printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' \
		>"$dir/etc/network/interfaces"
	echo 'datasource_list: [ NoCloud, None ]' >"$dir/etc/cloud/cloud.cfg.d/99-imgforge-test.cfg"
	rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
	local kernel initrd
	kernel=$(cd "$dir/boot" && ls vmlinuz-* | head -n 1)
	initrd=$(cd "$dir/boot" && ls initrd.img-* | head -n 1)
	mkdir -p "$dir/boot/extlinux"
	cat >"$dir/boot/extlinux/extlinux.conf" <<EOC
DEFAULT linux
TIMEOUT 1
LABEL linux
  KERNEL /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=LABEL=root ro console=ttyS0,115200 net.ifnames=0
EOC
	rm -f "$raw"
	LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct} virt-make-fs --format=raw --type=ext4 \
		--label=root --partition=mbr --size=3G "$dir" "$raw" >"$raw.log" 2>&1 || {
		tail -n 20 "$raw.log" >&2
		return 1
	}
	LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct} guestfish -a "$raw" >>"$raw.log" 2>&1 <<EOG || { tail -n 20 "$raw.log" >&2; return 1; }
run
part-set-bootable /dev/sda 1 true
mount /dev/sda1 /
extlinux /boot/extlinux
upload $dir/usr/lib/syslinux/mbr/mbr.bin /dev/sda
EOG
	qemu-img convert -q -O qcow2 "$raw" "$img.tmp" && mv "$img.tmp" "$img" && rm -f "$raw" || return 1
	chmod 0444 "$img"
	echo "$img"
}
