#!/usr/bin/env bash
# lane: vm
# needs: vm
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
test_expect_success "post-processors: the disk's and the OVA's sidecars, the SBOM and provenance, one manifest entry listing them in order" '
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
	a=qemu-minimal-ova &&
	test "$(jq -r ".builds[0].files | map(.name) | join(\" \")" "$o/manifest.json")" = \
		"$n.qcow2 $n.qcow2.sha256 $n.ova $n.ova.sha256 $a.spdx.json $a.provenance.json" &&
	test "$(jq -r ".builds[0].sha256" "$o/manifest.json")" = "$(cat "$o/$n.qcow2.sha256")" &&
	test "$(jq -r ".builds[0].files[1].size" "$o/manifest.json")" = 65 &&
	test "$(ls -A "$o" | LC_ALL=C sort | tr "\n" " ")" = \
		"manifest.json $a.provenance.json $a.spdx.json $n.ova $n.ova.sha256 $n.qcow2 $n.qcow2.sha256 "
'

# Growing the root into disk_size on GPT disks shaped like the cloud images (sgdisk writes the
# table into a sparse file, mke2fs -d the root in place): Ubuntu 24.04's layout, whose root p1
# comes after p14, p15 and a /boot p16, grows (numbering would have left it small); a root with
# a partition after it fails before anything is written, naming the layout. (Debian's
# genericcloud layout grows in t1290, from the GPT base it boots.)
if ! require_cmd sgdisk; then
	test_skip "the root grows by position on GPT" "sgdisk is not installed (gdisk)"
	test_done
fi
# gpt_disk FILE SHAPE: bootpart (p14, p15, p16 /boot, p1 root last) or root-not-last (p14,
# p15, p1 root, p2 after it); 128 MiB.
gpt_disk() {
	local f=$1 shape=$2 root_start=40960 root_end=0 s
	rm -f "$f" && truncate -s 128M "$f"
	local parts=(-n 14:2048:4095 -t 14:EF02 -n 15:4096:20479 -t 15:EF00)
	if [ "$shape" = bootpart ]; then
		parts+=(-n 16:20480:40959 -t 16:EA00)
	else
		root_start=20480 root_end=$((root_start + 131072 - 1))
		parts+=(-n 2:$((root_end + 1)):0 -t 2:8300)
	fi
	parts+=(-n 1:$root_start:$root_end -t 1:8304)
	sgdisk -Z "${parts[@]}" "$f" >/dev/null || return 1
	s=$(sgdisk -i 1 "$f" | sed -nE "s/^Last sector: ([0-9]+).*/\1/p")
	printf "LABEL=root / ext4 defaults 0 1\n" >"$TMP/root/etc/fstab"
	if [ "$shape" = bootpart ]; then
		printf "LABEL=boot /boot ext4 defaults 0 2\n" >>"$TMP/root/etc/fstab"
		mkdir -p "$TMP/boot" && echo kernel >"$TMP/boot/vmlinuz"
		mke2fs -q -F -t ext4 -L boot -d "$TMP/boot" -E offset=$((20480 * 512)),nodiscard "$f" 10240 || return 1
	fi
	mke2fs -q -F -t ext4 -L root -d "$TMP/root" -E offset=$((root_start * 512)),nodiscard \
		"$f" $(((s + 1 - root_start) / 2)) || return 1
	test "$(stat -c %s "$f")" -eq $((128 * 1024 * 1024))
}
grow_with() { # BASE OUTPUT
	expect_exit "${WANT:-0}" "$IMGF" build --var qemu_base_image_url="$1" \
		--var qemu_base_image_checksum="sha256:$(sha256sum "$1" | cut -d" " -f1)" \
		--output-dir "$2" "$F/qemu-grow.json"
}
mkdir -p "$TMP/root/boot"

test_expect_success "Ubuntu 24.04's layout (/boot p16 before root p1): p1 grows to the last usable sector, the others stay" '
	gpt_disk "$TMP/bootpart.raw" bootpart &&
	before=$(sgdisk -p "$TMP/bootpart.raw" | grep -E "^ +1[46] ") &&
	grow_with "$TMP/bootpart.raw" "$TMP/out-grow" &&
	grep "root partition 1 (gpt) grown to end at sector" "$TMP/err" &&
	img=$TMP/out-grow/test-qemu-grow+kube-v1.31.2/test-qemu-grow+kube-v1.31.2.qcow2 &&
	qemu-img convert -O raw "$img" "$TMP/grown.raw" &&
	test "$(stat -c %s "$TMP/grown.raw")" -eq $((512 * 1024 * 1024)) &&
	sgdisk -v "$TMP/grown.raw" | tee "$TMP/verify" && grep -q "No problems found" "$TMP/verify" &&
	sgdisk -i 1 "$TMP/grown.raw" | grep -x "Last sector: $((512 * 2048 - 34)) (at 512.0 MiB)" &&
	test "$(sgdisk -p "$TMP/grown.raw" | grep -E "^ +1[46] ")" = "$before" &&
	guestfish --ro -a "$TMP/grown.raw" run : mount /dev/sda1 / : statvfs / >"$TMP/statvfs" &&
	size=$(awk "/^bsize:/ {b=\$2} /^blocks:/ {n=\$2} END {print b*n}" "$TMP/statvfs") &&
	test "$size" -gt $((400 * 1024 * 1024))
'

test_expect_success "a root with a partition after it fails before anything is written, naming the layout" '
	gpt_disk "$TMP/notlast.raw" root-not-last &&
	sum=$(sha256sum "$TMP/notlast.raw" | cut -d" " -f1) &&
	WANT=1 grow_with "$TMP/notlast.raw" "$TMP/out-notlast" &&
	expect_err "the root filesystem cannot grow to disk_size: its partition 1 is not the last on the disk, partition 2 follows it (gpt, by position: 14 at sector 2048, 15 at sector 4096, 1 at sector 20480 (root), 2 at sector 151552)" &&
	expect_err "base image '"'"'$TMP/notlast.raw'"'"'" &&
	test ! -e "$TMP/out-notlast" && test "$(work_dirs)" -eq "$before_dirs" &&
	test "$(sha256sum "$TMP/notlast.raw" | cut -d" " -f1)" = "$sum"
'

test_done
