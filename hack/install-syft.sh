#!/usr/bin/env bash
# Install syft, the SBOM tool t1230 checks imgforge's SBOM against (its SPDX reader is
# spdx/tools-golang), pinned, from the Go module proxy: Debian does not package it. Kept: a stamp
# records the version, so only a new machine or a bump of the pin builds it again (about 8 minutes
# of CPU on 2 cores, most of it compiling). Locked: .ci/run starts it in the background and t1230
# runs it too, which waits for that one to finish rather than building it twice.
set -euo pipefail
syft_version=v1.57.2
syft_bindir=${SYFT_BINDIR:-/usr/local/bin}
syft_stamp=$syft_bindir/.syft.version
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
installed() { [ -x "$syft_bindir/syft" ] && [ "$(cat "$syft_stamp" 2>/dev/null)" = "$syft_version" ]; }
installed && { echo "install-syft: syft $syft_version is installed"; exit 0; }
exec 9>"${TMPDIR:-/tmp}/imgforge-install-syft.lock"
flock 9
installed && { echo "install-syft: syft $syft_version is installed"; exit 0; }
go=$(command -v go || true)
[ -n "$go" ] || [ ! -x /usr/local/go/bin/go ] || go=/usr/local/go/bin/go
[ -n "$go" ] || {
	echo "install-syft: syft needs Go (not found on PATH nor in /usr/local/go/bin)" >&2
	exit 1
}
echo "install-syft: installing syft $syft_version into $syft_bindir"
$SUDO env GOBIN="$syft_bindir" "$go" install "github.com/anchore/syft/cmd/syft@$syft_version"
echo "$syft_version" | $SUDO tee "$syft_stamp" >/dev/null
