#!/usr/bin/env bash
# Install what imgforge needs, from Debian's packages (Debian 12 and 13).
#   bash hack/install-deps.sh          building imgforge and running it: the compiler and
#                                      libraries, the Docker Engine (when none is reachable),
#                                      and for VM images qemu, libvirt, a kernel for libguestfs
#   bash hack/install-deps.sh --test   that, and every tool the tests use (shellcheck, skopeo,
#                                      virt-v2v, containerd, qemu-user-static, the arm64 cross
#                                      toolchain and dpkg architecture, docker-registry, clang,
#                                      …) and the GCS emulator fake-gcs-server, built with Go
#   --list                             print the packages it would check, one a line, and stop
# Idempotent: what is installed is not installed again; safe to run twice. Go is needed only by
# --test (fake-gcs-server here; the from-source Kubernetes mirror and syft in the tests): Go
# 1.26.8 (GO_MIN) or newer, checked, saying what to do when it is missing or older. syft
# (t1230's SBOM check) is hack/install-syft.sh: a long build that .ci/run starts in the
# background.
set -euo pipefail

GO_MIN=1.26.8 # syft v1.57.2's go.mod; Kubernetes v1.37 and fake-gcs-server want 1.26
test_deps=
list_only=
for a in "$@"; do
	case $a in
	--test) test_deps=1 ;;
	--list) list_only=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*)
		echo "install-deps: unknown option '$a' (--test, --list, --help)" >&2
		exit 2
		;;
	esac
done

arch=$(dpkg --print-architecture)
# Names that differ between Debian releases are "A|B": the first apt can install is taken
# (one already installed satisfies it). CLANG_RT is resolved below from the clang apt has.
build_pkgs=(
	build-essential gcc pkg-config make git
	libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libarchive-dev zlib1g-dev
	libguestfs-dev libvirt-dev
)
run_pkgs=(
	ca-certificates
	# VM images: qemu-img, the NoCloud seed ISO, libvirt + QEMU for the boot check (TCG without
	# KVM), a kernel in /boot for the libguestfs appliance, OVMF for UEFI images, ssh for
	# hack/image-ssh.sh
	qemu-utils genisoimage libvirt-daemon-system libvirt-clients qemu-system-x86
	"linux-image-cloud-$arch" ovmf openssh-client
)
test_pkgs=(
	# compilers and checkers: make CC=clang, make fuzz (libFuzzer is in libclang-rt), make lint
	clang clang-format CLANG_RT valgrind shellcheck
	# t0030 renders the man page
	groff-base
	jq curl python3 debootstrap bc socat openssl
	containerd runc containernetworking-plugins docker-registry skopeo
	# hack/kube-from-source.sh: the kube-proxy/flannel images carry iptables and conntrack, the
	# storage helper image busybox
	iptables conntrack busybox-static
	# hack/kube-from-source.sh: runc is linked statically with libseccomp, as upstream ships it
	libseccomp-dev
	# guestfish and virt-make-fs for the VM tests
	libguestfs-tools
	# the GPT test bases (tests/lib/vm-image.sh) are laid out with sgdisk, their ESP made with
	# mkfs.fat and filled with mtools (grub comes from the guest's own packages)
	gdisk dosfstools mtools
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

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
updated=
apt_update() {
	[ -n "$updated" ] && return 0
	$SUDO apt-get update -qq
	updated=1
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# has_candidate PKG: apt can install it.
has_candidate() {
	local c
	c=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')
	[ -n "$c" ] && [ "$c" != "(none)" ]
}

# The libclang-rt package of the clang apt installs (Debian 12: 14, Debian 13: 19).
clang_rt() {
	local v=
	if command -v clang >/dev/null 2>&1; then
		v=$(clang --version | sed -n 's/.*clang version \([0-9]*\)\..*/\1/p' | head -n 1)
	fi
	[ -n "$v" ] || v=$(apt-cache depends clang 2>/dev/null | sed -n 's/^ *Depends: clang-\([0-9]*\)$/\1/p' | head -n 1)
	echo "${v:+libclang-rt-$v-dev|}libclang-rt-19-dev|libclang-rt-14-dev"
}

wanted=("${build_pkgs[@]}" "${run_pkgs[@]}")
[ -z "$test_deps" ] || wanted+=("${test_pkgs[@]}")
[ -z "$need_docker" ] || wanted+=("$need_docker")

# The foreign architecture first: its package lists come with the same apt-get update.
if [ -n "$test_deps" ] && [ -z "$list_only" ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "install-deps: adding the arm64 architecture to dpkg (--test: busybox-static:arm64)"
	$SUDO dpkg --add-architecture arm64
	updated=
	apt_update
fi

# Resolve "A|B" and CLANG_RT: installed, else the first with a candidate (after an update).
resolve() {
	local alts=$1 p
	[ "$alts" != CLANG_RT ] || alts=$(clang_rt)
	case $alts in *"|"*) ;; *)
		echo "$alts"
		return
		;;
	esac
	for p in ${alts//|/ }; do
		installed "$p" && { echo "$p"; return; }
	done
	for p in ${alts//|/ }; do
		has_candidate "$p" && { echo "$p"; return; }
	done
	return 1
}

missing=()
resolved=()
for w in "${wanted[@]}"; do
	if ! p=$(resolve "$w") && [ -n "$list_only" ]; then
		p=$w # apt knows none of them yet (no apt-get update): listed as the alternatives
	elif [ -z "$p" ]; then
		apt_update
		p=$(resolve "$w") || {
			echo "install-deps: none of '$w' can be installed here (apt-cache policy each)" >&2
			exit 1
		}
	fi
	resolved+=("$p")
	installed "$p" || missing+=("$p")
done

if [ -n "$list_only" ]; then
	printf '%s\n' "${resolved[@]}"
	exit 0
fi

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: every Debian package is installed"
else
	echo "install-deps: installing ${missing[*]}"
	apt_update
	# The registry package starts a service through its postinst on systemd machines; the tests
	# start their own on loopback (hack/test-env.sh), so keep maintainer scripts from starting
	# daemons.
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
		$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v docker >/dev/null 2>&1 || ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
	if [ -z "${DOCKER_HOST:-}" ]; then
		echo "install-deps: the Docker Engine is not running: start it (systemctl start docker," \
			"or bash hack/test-env.sh, which starts dockerd where there is no systemd)"
	fi
fi

[ -n "$test_deps" ] || exit 0

# Go, for the --test steps: GO_MIN or newer, on PATH or in /usr/local/go/bin.
go=$(command -v go || true)
[ -n "$go" ] || [ ! -x /usr/local/go/bin/go ] || go=/usr/local/go/bin/go
go_have=
[ -z "$go" ] || go_have=$("$go" env GOVERSION 2>/dev/null | sed 's/^go//')
# version_ge A B: A >= B, as dotted numbers.
version_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$2" ]; }
if [ -z "$go_have" ] || ! version_ge "$go_have" "$GO_MIN"; then
	found="found none on PATH nor in /usr/local/go/bin"
	[ -z "$go_have" ] || found="found go$go_have at $go"
	echo "install-deps: --test needs Go $GO_MIN or newer ($found)." >&2
	echo "install-deps: Debian's golang-go is older; install Go's own release into /usr/local/go" \
		"(or put a newer go on PATH) and run this again. Building and running imgforge need no Go:" \
		"bash hack/install-deps.sh without --test." >&2
	exit 1
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
	echo "install-deps: installing fake-gcs-server $fake_gcs_version into $fake_gcs_bindir (go$go_have)"
	$SUDO env GOBIN="$fake_gcs_bindir" "$go" install \
		"github.com/fsouza/fake-gcs-server@$fake_gcs_version"
	echo "$fake_gcs_version" | $SUDO tee "$fake_gcs_stamp" >/dev/null
fi
