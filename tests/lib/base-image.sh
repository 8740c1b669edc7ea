# The test base image: Debian from debootstrap (bookworm, or the SUITE given: trixie for the
# shipped config/debian-13.json), imported into the Docker Engine, cached by a tag that hashes
# everything that decides its contents.
# Usage: base_image_ensure [ARCH [SUITE]]  -> prints the tag (e.g. imgforge-test/debian:bookworm-1a2b3c4d)
# ARCH other than the machine's (arm64 on amd64) runs debootstrap's second stage through binfmt
# and qemu-user-static (hack/test-env.sh registers it) and imports the image as linux/ARCH.
BASE_IMAGE_SUITE=bookworm
BASE_IMAGE_MIRROR=${IMGF_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What a kind node needs from the distro, minus jq (the packages step installs it, so the
# apt path runs for real) and the storage clients (nfs-common, open-iscsi), whose daemons
# cannot run in an unprivileged test container.
BASE_IMAGE_PACKAGES=systemd,systemd-sysv,dbus,iptables,nftables,iproute2,kmod,libseccomp2,ca-certificates,procps,util-linux,mount,e2fsprogs,conntrack,ethtool,curl,pigz,fuse-overlayfs,bash

base_image_ensure() {
	local arch=${1:-} suite=${2:-$BASE_IMAGE_SUITE} key tag dir host
	host=$(dpkg --print-architecture)
	[ -n "$arch" ] || arch=$host
	key=$(printf '%s\n' "$suite" "$BASE_IMAGE_PACKAGES" v1 | sha256sum | cut -c1-12)
	tag="imgforge-test/debian:$suite-$key"
	if [ "$arch" != "$host" ]; then
		key=$arch-$key
		tag="imgforge-test/debian:$suite-$key"
	fi
	if docker image inspect "$tag" >/dev/null 2>&1; then
		echo "$tag"
		return 0
	fi
	dir="$TEST_CACHE/debootstrap-$suite-$key"
	# One debootstrap at a time per tree (.ci/run starts the arm64 one early, in the background).
	exec {_base_lock}>"$dir.lock"
	flock "$_base_lock"
	if docker image inspect "$tag" >/dev/null 2>&1; then
		exec {_base_lock}>&-
		echo "$tag"
		return 0
	fi
	if [ ! -f "$dir.done" ]; then
		rm -rf "$dir"
		debootstrap --arch="$arch" --variant=minbase --include="$BASE_IMAGE_PACKAGES" \
			"$suite" "$dir" "$BASE_IMAGE_MIRROR" >"$dir.log" 2>&1 || {
			tail -n 20 "$dir.log" >&2
			return 1
		}
		touch "$dir.done"
	fi
	if [ "$arch" = "$host" ]; then
		tar -C "$dir" --numeric-owner -c . | docker import - "$tag" >/dev/null || return 1
	else
		_base_image_load_foreign "$dir" "$arch" "$tag" || return 1
	fi
	exec {_base_lock}>&-
	echo "$tag"
}

# The Engine (20.10) ignores import's platform: a foreign root is loaded as a docker-archive
# whose config names linux/ARCH.
_base_image_load_foreign() { # DIR ARCH TAG
	local dir=$1 arch=$2 tag=$3 d diff variant=
	d=$(mktemp -d "${TMPDIR:-/tmp}/base-image.XXXXXX") || return 1
	[ "$arch" != arm64 ] || variant=',"variant":"v8"'
	tar -C "$dir" --numeric-owner -cf "$d/layer.tar" . &&
		diff=$(sha256sum "$d/layer.tar" | cut -d' ' -f1) &&
		printf '{"architecture":"%s"%s,"os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
			"$arch" "$variant" "$diff" >"$d/config.json" &&
		printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$tag" \
			>"$d/manifest.json" &&
		tar -C "$d" -cf - manifest.json config.json layer.tar | docker load >/dev/null
	local rc=$?
	rm -rf "$d"
	return $rc
}

# The packages a kind node image gets in tests (see BASE_IMAGE_PACKAGES for what is left out).
BASE_IMAGE_KIND_PACKAGES="systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz fuse-overlayfs e2fsprogs bash ca-certificates curl jq procps"
