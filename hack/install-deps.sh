#!/usr/bin/env bash
# Install every build and test dependency of imgforge from Debian's packages.
# Idempotent: packages already present are not reinstalled; safe to run twice.
# Also installs the GCS emulator the upload tests need (fake-gcs-server, pinned, with `go install`).
# The SBOM tool t1230 checks against (syft) is hack/install-syft.sh: a long build, which .ci/run
# starts in the background and t1230 waits for.
set -euo pipefail

build_pkgs=(
	build-essential pkg-config gcc clang clang-format libclang-rt-14-dev make git
	libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libarchive-dev zlib1g-dev
	libguestfs-dev libvirt-dev qemu-utils genisoimage
)
test_pkgs=(
	valgrind jq curl python3 debootstrap ca-certificates bc shellcheck socat openssl
	containerd runc containernetworking-plugins docker-registry skopeo
	# hack/kube-from-source.sh: the kube-proxy/flannel images carry iptables and conntrack, the
	# storage helper image busybox
	iptables conntrack busybox-static
	# hack/kube-from-source.sh: runc is linked statically with libseccomp, as upstream ships it
	libseccomp-dev
	# the VM builder: libvirt + QEMU (TCG without KVM), a kernel for the libguestfs appliance,
	# guestfish and virt-make-fs for the tests, ssh for hack/image-ssh.sh
	libvirt-daemon-system libvirt-clients qemu-system-x86 linux-image-cloud-amd64 libguestfs-tools
	openssh-client
	# firmware: uefi boot checks boot OVMF; the GPT test bases (tests/lib/vm-image.sh) are laid
	# out with sgdisk, their ESP made with mkfs.fat and filled with mtools (grub comes from the
	# guest's own packages)
	ovmf gdisk dosfstools mtools
	# the OVA tests: xmllint for the OVF, virt-v2v as an OVA reader
	libxml2-utils virt-v2v
	# arm64 node images: arm64 binaries run through binfmt_misc (hack/test-env.sh registers it);
	# hack/kube-from-source.sh --arch arm64 compiles pause with the cross gcc and takes busybox
	# from busybox-static:arm64 (hence the foreign architecture below)
	qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
)

need_docker=
if ! command -v dockerd >/dev/null 2>&1 && [ ! -S "${DOCKER_HOST_SOCKET:-/var/run/docker.sock}" ]; then
	need_docker=docker.io
fi

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}" $need_docker; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

# arm64 packages (busybox-static:arm64 for the arm64 images) need the architecture in dpkg and
# its package lists.
updated=
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "install-deps: adding the arm64 architecture to dpkg"
	$SUDO dpkg --add-architecture arm64
	$SUDO apt-get update -qq
	updated=1
fi

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: every Debian package is installed"
else
	echo "install-deps: installing ${missing[*]}"
	[ -n "$updated" ] || $SUDO apt-get update -qq
	# The registry package starts a service through its postinst on systemd machines; we start
	# our own on loopback in hack/test-env.sh, so keep maintainer scripts from starting daemons.
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
		$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# fake-gcs-server, the GCS emulator of the upload tests. Debian does not package it; the Go
# module proxy has it. A stamp beside the binary records the installed version, so a second run
# (or a bump of the pin) knows whether to build.
fake_gcs_version=v1.56.1
fake_gcs_bindir=${FAKE_GCS_BINDIR:-/usr/local/bin}
fake_gcs_stamp=$fake_gcs_bindir/.fake-gcs-server.version
if [ -x "$fake_gcs_bindir/fake-gcs-server" ] &&
	[ "$(cat "$fake_gcs_stamp" 2>/dev/null)" = "$fake_gcs_version" ]; then
	echo "install-deps: fake-gcs-server $fake_gcs_version is installed"
else
	go=$(command -v go || true)
	[ -n "$go" ] || [ ! -x /usr/local/go/bin/go ] || go=/usr/local/go/bin/go
	[ -n "$go" ] || {
		echo "install-deps: fake-gcs-server needs Go (not found on PATH nor in /usr/local/go/bin)" >&2
		exit 1
	}
	echo "install-deps: installing fake-gcs-server $fake_gcs_version into $fake_gcs_bindir"
	$SUDO env GOBIN="$fake_gcs_bindir" "$go" install \
		"github.com/fsouza/fake-gcs-server@$fake_gcs_version"
	echo "$fake_gcs_version" | $SUDO tee "$fake_gcs_stamp" >/dev/null
fi
