#!/usr/bin/env bash
# A cold capi-qcow2 build on the test inputs (debootstrap VM base, fixture mirror), split by
# phase from imgforge's --json events: fetch, launch, provision, compact, boot-check.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-qcow2.XXXXXX)
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
trap 'fixtures_stop "$FIX" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
. "$TOP/tests/lib/fixtures.sh"
. "$TOP/tests/lib/vm-image.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# A /dev/kvm that cannot run a guest (nested setups): libguestfs on TCG, as imgforge decides.
[ ! -e /dev/kvm ] || bash "$TOP/hack/kvm-usable.sh" || export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
FIX=$TEST_CACHE/fixtures
# The fixture helpers are not written for `set -e`; calling them from `if` suspends it.
if ! fixtures_build "$FIX" >/dev/null || ! fixtures_serve "$FIX" >/dev/null; then
	echo "bench: fixtures failed" >&2
	exit 1
fi
if ! VMBASE=$(vm_image_ensure); then
	echo "bench: VM base image failed" >&2
	exit 1
fi
sum=$(sha256sum "$VMBASE" | cut -d' ' -f1)
make -s -C "$TOP"
start=$(date +%s.%N)
IMGFORGE_CACHE_DIR=$TMP/cache "$TOP/imgforge" build --json --only capi-qcow2 \
	--var-file "$FIX/vars.json" --var qemu_base_image_url="$VMBASE" \
	--var qemu_base_image_checksum="sha256:$sum" --var disk_size=4G \
	--output-dir "$TMP/out" "$TOP/config/debian-12.json" >"$TMP/events.json"
end=$(date +%s.%N)
jq -r 'select(.event == "phase") | "\(.phase)\t\(.seconds)"' "$TMP/events.json" |
	awk -F'\t' '{printf "%-12s %7.1f s\n", $1, $2}'
printf '%-12s %7.1f s\n' total "$(echo "$end - $start" | bc)"
