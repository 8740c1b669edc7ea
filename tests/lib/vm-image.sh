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

# The GPT test bases: Debian 13 (trixie) laid out as Debian's genericcloud image is, or as
# Ubuntu 24.04's cloud image is (a separate /boot), so that the builder meets the disks it
# will be given. Made on the host without KVM or systemd: sgdisk writes the
# table into a sparse file, mke2fs -d and mkfs.fat --offset write the filesystems in place,
# and the tree's own grub runs chrooted into it on a loop device of the disk (BIOS into the
# BIOS boot partition; UEFI to the ESP's removable path EFI/BOOT/BOOTX64.EFI and EFI/debian).
# (grub-install inside the libguestfs appliance refused: "embedding is not possible, but this
# is required for cross-disk install".)
#   genericcloud: p14 BIOS boot (1 MiB, EF02), p15 ESP (FAT32, 124 MiB, EF00), p1 root (ext4)
#                 last on the disk by position
#   bootpart:     the same plus p16 /boot (ext4, 256 MiB, EA00 as Ubuntu's) before p1
# Usage: vm_image_gpt_ensure [genericcloud|bootpart] -> prints the path of the qcow2 (read-only)
VM_GPT_SUITE=trixie
# Not conntrack, socat and ebtables: as on Debian's genericcloud image, the node's packages
# step (node_packages) installs them, so that a build locks and mirrors real packages.
VM_GPT_PACKAGES=linux-image-cloud-amd64,python3-cffi-backend,systemd-sysv,udev,dbus,cloud-init,qemu-guest-agent,ifupdown,isc-dhcp-client,openssh-server,grub-pc-bin,grub-efi-amd64-bin,grub2-common,e2fsprogs,dosfstools,iptables,ethtool,iproute2,kmod,libseccomp2,ca-certificates,curl,procps,sudo

# The debootstrap tree, keyed by suite and packages.
vm_gpt_tree() {
	local key dir
	key=$(printf '%s\n' "$VM_GPT_SUITE" "$VM_GPT_PACKAGES" v1 | sha256sum | cut -c1-12)
	dir="$TEST_CACHE/vm-root-$VM_GPT_SUITE-$key"
	if [ ! -f "$dir.done" ]; then
		rm -rf "$dir"
		debootstrap --variant=minbase --include="$VM_GPT_PACKAGES" \
			"$VM_GPT_SUITE" "$dir" "$VM_IMAGE_MIRROR" >"$dir.log" 2>&1 || {
			tail -n 20 "$dir.log" >&2
			return 1
		}
		rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
		touch "$dir.done"
	fi
	echo "$dir"
}

# One maker at a time (.ci/run starts the genericcloud one early, in the background): the
# others wait, then find it made.
vm_image_gpt_ensure() {
	mkdir -p "$TEST_CACHE" || return 1
	(
		flock 9 || exit 1
		_vm_image_gpt_ensure "$@"
	) 9>"$TEST_CACHE/vm-gpt.lock"
}

_vm_image_gpt_ensure() {
	local shape=${1:-genericcloud} dir key img raw stage
	case $shape in genericcloud | bootpart) ;; *) echo "vm_image_gpt_ensure: shape '$shape'" >&2; return 1 ;; esac
	dir=$(vm_gpt_tree) || return 1
	# Keyed by the tree and by this recipe (a change to either makes a new image).
	key=$(printf '%s\n' "$dir" "$shape" "$(declare -f vm_gpt_make vm_gpt_grub)" | sha256sum | cut -c1-12)
	img="$TEST_CACHE/vm-$VM_GPT_SUITE-gpt-$shape-$key.qcow2"
	if [ ! -f "$img" ]; then
		raw="$TEST_CACHE/vm-gpt-$shape-$key.raw"
		vm_gpt_make "$dir" "$shape" "$raw" >"$raw.log" 2>&1 || {
			tail -n 30 "$raw.log" >&2
			rm -f "$raw"
			return 1
		}
		qemu-img convert -q -O qcow2 "$raw" "$img.tmp" && mv "$img.tmp" "$img" && rm -f "$raw" || return 1
		chmod 0444 "$img"
	fi
	echo "$img"
}

# vm_gpt_make TREE SHAPE RAW: the disk (3 GiB, sparse) from the tree.
vm_gpt_make() {
	local dir=$1 shape=$2 raw=$3 stage boot_start=0 root_start=262144 sectors
	local -
	set -x # into the log
	stage=$(mktemp -d "${TMPDIR:-/var/tmp}/vm-gpt.XXXXXX") || return 1
	# shellcheck disable=SC2064
	trap "rm -rf '$stage'" RETURN
	# A copy of the tree: the cached one stays as debootstrap left it.
	cp -a "$dir" "$stage/root" || return 1
	local r=$stage/root
	: >"$r/etc/machine-id"
	rm -f "$r/var/lib/dbus/machine-id" "$r"/etc/ssh/ssh_host_*
	{
		echo 'LABEL=root / ext4 defaults 0 1'
		[ "$shape" != bootpart ] || echo 'LABEL=boot /boot ext4 defaults 0 2'
		echo 'LABEL=UEFI /boot/efi vfat umask=0077 0 2'
	} >"$r/etc/fstab"
	# IPv4 DHCP only: trixie's cloud-init (25.1) falls back to DHCPv6 too, which QEMU's user
	# network never answers, and ifup then holds networking.service to its 5-minute timeout.
	printf 'auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n' \
		>"$r/etc/network/interfaces"
	printf 'datasource_list: [ NoCloud, None ]\nnetwork: {config: disabled}\n' \
		>"$r/etc/cloud/cloud.cfg.d/99-imgforge-test.cfg"
	mkdir -p "$r/boot/efi"
	truncate -s 3G "$raw" || return 1
	sectors=$(($(stat -c %s "$raw") / 512))
	local parts=(-n 14:2048:4095 -t 14:EF02 -c 14:BIOS -n 15:4096:258047 -t 15:EF00 -c 15:UEFI)
	if [ "$shape" = bootpart ]; then
		boot_start=262144 root_start=$((262144 + 524288))
		parts+=(-n 16:$boot_start:$((root_start - 1)) -t 16:EA00 -c 16:boot)
	fi
	parts+=(-n 1:$root_start:0 -t 1:8304 -c 1:root)
	sgdisk -Z "${parts[@]}" "$raw" || return 1
	local root_end
	root_end=$(sgdisk -i 1 "$raw" | sed -nE 's/^Last sector: ([0-9]+).*/\1/p')
	# The filesystems in place, at their partitions' offsets (sizes in KiB).
	mkfs.fat -F 32 -s 1 -n UEFI --offset 4096 "$raw" $(((258048 - 4096) / 2)) || return 1
	if [ "$shape" = bootpart ]; then
		mkdir -p "$stage/boot"
		mv "$r/boot/"* "$stage/boot/" && mkdir -p "$stage/boot/efi" || return 1
		mke2fs -q -F -t ext4 -L boot -d "$stage/boot" -E offset=$((boot_start * 512)),nodiscard \
			"$raw" $(((root_start - boot_start) / 2)) || return 1
	fi
	mke2fs -q -F -t ext4 -L root -d "$r" -E offset=$((root_start * 512)),nodiscard \
		"$raw" $(((root_end + 1 - root_start) / 2)) || return 1
	test "$(stat -c %s "$raw")" -eq $((sectors * 512)) || return 1
	# grub from the tree's own packages, run inside it (chroot) on a loop device of the disk.
	local loop mnt=$stage/mnt
	loop=$(losetup -f --show -P "$raw") || return 1
	# Where the kernel does not scan the table itself (this machine's), partx adds them.
	[ -e "${loop}p1" ] || partx -a "$loop"
	mkdir -p "$mnt"
	vm_gpt_grub "$loop" "$mnt" "$shape" "$raw"
	local rc=$?
	umount -R "$mnt" 2>/dev/null
	losetup -d "$loop"
	return "$rc"
}

# vm_gpt_grub LOOP MNT SHAPE RAW: mount the disk's ext4 filesystems, grub-install for BIOS, an
# EFI grub image for the ESP, and grub.cfg (by hand: grub-mkconfig finds no /dev/disk/by-uuid
# without udev). This kernel has no vfat: grub-mkimage makes the EFI image (what grub-install
# would put there) and mtools writes it into the ESP in place.
vm_gpt_grub() {
	local loop=$1 mnt=$2 shape=$3 raw=$4 d kernel initrd prefix=/boot search=root
	mount "${loop}p1" "$mnt" || return 1
	if [ "$shape" = bootpart ]; then
		mount "${loop}p16" "$mnt/boot" || return 1
		prefix= search=boot
	fi
	for d in dev proc sys; do mount --bind "/$d" "$mnt/$d" || return 1; done
	chroot "$mnt" grub-install --target=i386-pc "$loop" || return 1
	mkdir -p "$mnt/boot/grub/x86_64-efi" &&
		cp "$mnt"/usr/lib/grub/x86_64-efi/*.mod "$mnt"/usr/lib/grub/x86_64-efi/*.lst \
			"$mnt/boot/grub/x86_64-efi/" || return 1
	printf 'search --no-floppy --label %s --set=root\nset prefix=($root)%s/grub\n' \
		"$search" "$prefix" >"$mnt/tmp/early.cfg"
	chroot "$mnt" grub-mkimage -O x86_64-efi -o /tmp/grubx64.efi -c /tmp/early.cfg \
		-p "$prefix/grub" part_gpt part_msdos ext2 fat search search_label normal configfile \
		linux serial terminal echo test gzio efi_gop all_video || return 1
	kernel=$(cd "$mnt/boot" && ls vmlinuz-* | tail -n 1)
	initrd=$(cd "$mnt/boot" && ls initrd.img-* | tail -n 1)
	cat >"$mnt/boot/grub/grub.cfg" <<EOC
set timeout=1
serial --speed=115200
terminal_input console serial
terminal_output console serial
insmod part_gpt
insmod ext2
search --no-floppy --label $search --set=root
menuentry "Debian $VM_GPT_SUITE (imgforge test base)" {
	linux $prefix/$kernel root=LABEL=root ro console=tty0 console=ttyS0,115200 net.ifnames=0
	initrd $prefix/$initrd
}
EOC
	local esp="$raw@@$((4096 * 512))"
	MTOOLS_SKIP_CHECK=1 mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian &&
		MTOOLS_SKIP_CHECK=1 mcopy -i "$esp" "$mnt/tmp/grubx64.efi" ::/EFI/BOOT/BOOTX64.EFI &&
		MTOOLS_SKIP_CHECK=1 mcopy -i "$esp" "$mnt/tmp/grubx64.efi" ::/EFI/debian/grubx64.efi &&
		rm -f "$mnt/tmp/grubx64.efi" "$mnt/tmp/early.cfg" &&
		MTOOLS_SKIP_CHECK=1 mdir -i "$esp" -/ ::/EFI && test -s "$mnt/boot/grub/i386-pc/core.img"
}
