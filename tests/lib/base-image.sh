# The test base image: Debian bookworm from debootstrap, imported into the Docker Engine,
# cached by a tag that hashes everything that decides its contents.
# Usage: base_image_ensure  -> prints the tag (e.g. imgforge-test/debian:bookworm-1a2b3c4d)
BASE_IMAGE_SUITE=bookworm
BASE_IMAGE_MIRROR=${IMGF_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What a kind node needs from the distro, minus jq (the packages step installs it, so the
# apt path runs for real) and the storage clients (nfs-common, open-iscsi), whose daemons
# cannot run in an unprivileged test container.
BASE_IMAGE_PACKAGES=systemd,systemd-sysv,dbus,iptables,nftables,iproute2,kmod,libseccomp2,ca-certificates,procps,util-linux,mount,e2fsprogs,conntrack,ethtool,curl,pigz,fuse-overlayfs,bash

base_image_ensure() {
	local key tag dir
	key=$(printf '%s\n' "$BASE_IMAGE_SUITE" "$BASE_IMAGE_PACKAGES" v1 | sha256sum | cut -c1-12)
	tag="imgforge-test/debian:$BASE_IMAGE_SUITE-$key"
	if docker image inspect "$tag" >/dev/null 2>&1; then
		echo "$tag"
		return 0
	fi
	dir="$TEST_CACHE/debootstrap-$key"
	if [ ! -f "$dir.done" ]; then
		rm -rf "$dir"
		debootstrap --variant=minbase --include="$BASE_IMAGE_PACKAGES" \
			"$BASE_IMAGE_SUITE" "$dir" "$BASE_IMAGE_MIRROR" >"$dir.log" 2>&1 || {
			tail -n 20 "$dir.log" >&2
			return 1
		}
		touch "$dir.done"
	fi
	tar -C "$dir" --numeric-owner -c . | docker import - "$tag" >/dev/null || return 1
	echo "$tag"
}

# The packages a kind node image gets in tests (see BASE_IMAGE_PACKAGES for what is left out).
BASE_IMAGE_KIND_PACKAGES="systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz fuse-overlayfs e2fsprogs bash ca-certificates curl jq procps"
