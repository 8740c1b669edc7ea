#!/usr/bin/env bash
# Install every build and test dependency of imgforge from Debian's packages.
# Idempotent: packages already present are not reinstalled; safe to run twice.
set -euo pipefail

build_pkgs=(
	build-essential pkg-config gcc clang clang-format libclang-rt-14-dev make git
	libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libarchive-dev
)
test_pkgs=(
	valgrind jq curl python3 debootstrap ca-certificates bc shellcheck socat openssl
	containerd runc containernetworking-plugins docker-registry skopeo
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

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: everything is installed"
	exit 0
fi

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
# The registry package starts a service through its postinst on systemd machines; we start
# our own on loopback in hack/test-env.sh, so keep maintainer scripts from starting daemons.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
