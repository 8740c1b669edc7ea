#!/usr/bin/env bash
# lane: vm
# The qemu builder's edges that need no real OS: a base image that names another host file
# is refused before anything is made, and the finished image reaches an --output-dir on
# another filesystem (a tmpfs mounted here) than the work directory. The base is a tiny ext4
# filesystem (mke2fs -d) that libguestfs inspects as a Linux root; no boot check.
. "$(dirname "$0")/../lib/harness.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
vm_accel_env
F=$TOP/tests/fixtures/config
# The builder's work directories under a TMPDIR of this script's own, so that qemu builds of
# other scripts running at the same time are not counted.
QTMP=$(mktemp -d /var/tmp/t1255-work.XXXXXX) && chmod 0711 "$QTMP" || die "mktemp"
at_exit "rm -rf '$QTMP'"
export LIBGUESTFS_CACHEDIR=${LIBGUESTFS_CACHEDIR:-${TMPDIR:-/var/tmp}}
export TMPDIR=$QTMP
work_dirs() { ls -d "$TMPDIR"/imgforge-qemu-* 2>/dev/null | wc -l; }
export IMGFORGE_CACHE_DIR=$TMP/cache
if ! require_cmd qemu-img; then
	test_skip "qemu base and output" "qemu-img is not installed"
	test_done
fi
before_dirs=$(work_dirs)

# build_with BASE OUTPUT [imgforge options...]: build qemu-minimal.json from BASE.
build_with() {
	local base=$1 out=$2
	shift 2
	expect_exit "${WANT:-0}" "$IMGF" build --var qemu_base_image_url="$base" \
		--var qemu_base_image_checksum="sha256:$(sha256sum "$base" | cut -d" " -f1)" \
		--output-dir "$out" "$@" "$F/qemu-minimal.json"
}

mkdir -p "$TMP/host" && echo "a host file" >"$TMP/host/secret.raw" && truncate -s 1M "$TMP/host/secret.raw"

test_expect_success "a base qcow2 with a backing file is refused, naming the file; nothing is left" '
	qemu-img create -q -f qcow2 -F raw -b "$TMP/host/secret.raw" "$TMP/backed.qcow2" 1M &&
	WANT=1 build_with "$TMP/backed.qcow2" "$TMP/out-backed" &&
	expect_err "names the backing file '"'"'$TMP/host/secret.raw'"'"'" &&
	test ! -e "$TMP/out-backed" && test "$(work_dirs)" -eq "$before_dirs"
'

test_expect_success "a base qcow2 with an external data file is refused, naming the file" '
	qemu-img create -q -f qcow2 -o data_file="$TMP/host/data.raw",data_file_raw=on "$TMP/datafile.qcow2" 1M &&
	WANT=1 build_with "$TMP/datafile.qcow2" "$TMP/out-data" &&
	expect_err "names the external data file '"'"'$TMP/host/data.raw'"'"'" &&
	test ! -e "$TMP/out-data" && test "$(work_dirs)" -eq "$before_dirs"
'

test_expect_success "a failed --force build leaves the previous output as it was" '
	o=$TMP/out-force/test-qemu-minimal+kube-v1.31.2 &&
	mkdir -p "$o" && echo old >"$o/old-output" && echo "{}" >"$o/manifest.json" &&
	WANT=1 build_with "$TMP/backed.qcow2" "$TMP/out-force" --force &&
	test "$(cat "$o/old-output")" = old && test "$(cat "$o/manifest.json")" = "{}" &&
	test "$(ls -A "$TMP/out-force")" = test-qemu-minimal+kube-v1.31.2 &&
	expect_err "names the backing file" &&
	test "$(work_dirs)" -eq "$before_dirs"
'

why=
require_cmd mke2fs || why="mke2fs is not installed"
[ -n "$why" ] || ls /boot/vmlinuz-* >/dev/null 2>&1 || why="no kernel in /boot for the libguestfs appliance"
[ -n "$why" ] || [ "$(id -u)" -eq 0 ] || why="mounting a tmpfs needs root"
if [ -n "$why" ]; then
	test_skip "an output dir on another filesystem" "$why"
	test_done
fi
mkdir -p "$TMP/root/etc" "$TMP/root/bin" "$TMP/root/usr/bin" "$TMP/root/tmp"
printf 'ID=debian\nVERSION_ID="12"\nNAME="imgforge test root"\n' >"$TMP/root/etc/os-release"
echo 12.0 >"$TMP/root/etc/debian_version"
echo "/dev/sda / ext4 defaults 0 1" >"$TMP/root/etc/fstab"
mke2fs -q -F -t ext4 -d "$TMP/root" "$TMP/base.raw" 64M >/dev/null || die "mke2fs"
mkdir -p "$TMP/tmpfs"
mount -t tmpfs -o size=256m tmpfs "$TMP/tmpfs" || die "mount a tmpfs"
at_exit "umount '$TMP/tmpfs'"
OUT=$TMP/tmpfs/out/test-qemu-minimal+kube-v1.31.2

test_expect_success "the image lands in an --output-dir on another filesystem (tmpfs), replacing the old output" '
	test "$(stat -c %d "${TMPDIR:-/var/tmp}")" != "$(stat -c %d "$TMP/tmpfs")" &&
	mkdir -p "$OUT" && echo old >"$OUT/old-output" &&
	build_with "$TMP/base.raw" "$TMP/tmpfs/out" --force &&
	img=$OUT/test-qemu-minimal+kube-v1.31.2.qcow2 &&
	qemu-img check -q "$img" &&
	test "$(cat "$img.sha256")" = "$(sha256sum "$img" | cut -d" " -f1)" &&
	test ! -e "$OUT/old-output" &&
	test "$(jq -r ".builds[0].artifact_id" "$OUT/manifest.json")" = "$img" &&
	test "$(ls -A "$TMP/tmpfs/out")" = test-qemu-minimal+kube-v1.31.2 &&
	test "$(work_dirs)" -eq "$before_dirs"
'

# The post-processors through the engine: checksum (unlisted) sums the disk first, ova adds
# the .ova and its sidecar, manifest (listed, runs once) lists every file in that order.
test_expect_success "post-processors: the disk's and the OVA's sidecars, one manifest entry listing both in order" '
	base=$TMP/base.raw &&
	"$IMGF" build --var qemu_base_image_url="$base" \
		--var qemu_base_image_checksum="sha256:$(sha256sum "$base" | cut -d" " -f1)" \
		--output-dir "$TMP/out-ova" "$F/qemu-minimal-ova.json" >"$TMP/ova.log" 2>&1 ||
		{ tail -n 30 "$TMP/ova.log"; exit 1; }
	n=test-qemu-minimal+kube-v1.31.2 &&
	o=$TMP/out-ova/$n &&
	test "$(cat "$o/$n.qcow2.sha256")" = "$(sha256sum "$o/$n.qcow2" | cut -d" " -f1)" &&
	test "$(cat "$o/$n.ova.sha256")" = "$(sha256sum "$o/$n.ova" | cut -d" " -f1)" &&
	test "$(jq -r ".builds | length" "$o/manifest.json")" = 1 &&
	test "$(jq -r ".builds[0].files | map(.name) | join(\" \")" "$o/manifest.json")" = \
		"$n.qcow2 $n.qcow2.sha256 $n.ova $n.ova.sha256" &&
	test "$(jq -r ".builds[0].sha256" "$o/manifest.json")" = "$(cat "$o/$n.qcow2.sha256")" &&
	test "$(jq -r ".builds[0].files[1].size" "$o/manifest.json")" = 65 &&
	test "$(ls -A "$o" | LC_ALL=C sort | tr "\n" " ")" = \
		"manifest.json $n.ova $n.ova.sha256 $n.qcow2 $n.qcow2.sha256 "
'

test_done
