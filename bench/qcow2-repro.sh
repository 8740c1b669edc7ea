#!/usr/bin/env bash
# How reproducible the qcow2 is: capi-qcow2 built twice from the same config, inputs and
# SOURCE_DATE_EPOCH, with --no-cache, into two output directories. Reports whether the two
# qcow2 files are equal and, when not, every file of the guest filesystem that differs: in
# content (sha256, size, link target), only in metadata (mode, owner, times), or is in one
# image only. The root filesystem (ext4, the disk's only or first Linux partition) is read
# with debugfs from a raw copy: virt-ls/virt-diff with checksums need most of an hour under
# TCG for the 17000 files, debugfs seconds.
#
#   bench/qcow2-repro.sh                 KEEP=1 keeps the two images and listings
#   bench/qcow2-repro.sh A.qcow2 B.qcow2 compares two images built before
#   BENCH_BOOT_CHECK=true                boot-check both builds (default false: the boot check
#                                        runs on a throwaway overlay and does not change the image)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-qcow2-repro.XXXXXX)
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
served=
cleanup() {
	[ -z "$served" ] || fixtures_stop "$FIX" >/dev/null 2>&1 || true
	if [ -n "${KEEP:-}" ]; then
		echo "kept: $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
. "$TOP/tests/lib/fixtures.sh"
. "$TOP/tests/lib/vm-image.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
accel=auto
# A /dev/kvm that cannot run a guest (nested setups): TCG, without the 15 s probe.
if [ -e /dev/kvm ] && ! bash "$TOP/hack/kvm-usable.sh"; then
	export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
	accel=tcg
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
build() { # N
	IMGFORGE_CACHE_DIR=$TMP/cache "$TOP/imgforge" build --no-cache --only capi-qcow2 \
		--var-file "$FIX/vars.json" --var qemu_base_image_url="$VMBASE" \
		--var qemu_base_image_checksum="sha256:$sum" --var disk_size=4G \
		--var qemu_accelerator=$accel --var boot_check="${BENCH_BOOT_CHECK:-false}" \
		--output-dir "$TMP/out$1" "$TOP/config/debian-12.json" >"$TMP/build$1.log" 2>&1 ||
		{ tail -n 30 "$TMP/build$1.log" >&2; return 1; }
	ls "$TMP/out$1"/*/*.qcow2
}
FIX=$TEST_CACHE/fixtures
if [ $# -eq 2 ]; then
	A=$1 B=$2
else
	if ! fixtures_build "$FIX" >/dev/null || ! fixtures_serve "$FIX" >/dev/null; then
		echo "bench: fixtures failed" >&2
		exit 1
	fi
	served=1
	if ! VMBASE=$(vm_image_ensure); then
		echo "bench: VM base image failed" >&2
		exit 1
	fi
	sum=$(sha256sum "$VMBASE" | cut -d' ' -f1)
	make -s -C "$TOP"
	A=$(build 1)
	B=$(build 2)
fi
sa=$(sha256sum "$A" | cut -d' ' -f1)
sb=$(sha256sum "$B" | cut -d' ' -f1)
echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
echo "qcow2 1: $sa"
echo "qcow2 2: $sb"
if [ "$sa" = "$sb" ]; then
	echo "the qcow2 files are identical"
	exit 0
fi
echo "the qcow2 files differ"

# The root filesystem of IMAGE extracted into DIR (debugfs rdump keeps modes, owners, mtimes).
extract() { # IMAGE DIR
	local start
	qemu-img convert -O raw "$1" "$2.raw"
	start=$(sfdisk -J "$2.raw" | jq -r '[.partitiontable.partitions[] | select(.type == "83")][0].start')
	dd if="$2.raw" of="$2.ext4" bs=512 skip="$start" conv=sparse status=none
	rm -f "$2.raw"
	mkdir -p "$2"
	debugfs -R "rdump / $2" "$2.ext4" >/dev/null 2>&1
}
extract "$A" "$TMP/fs1"
extract "$B" "$TMP/fs2"
echo "files: $(find "$TMP/fs1" | wc -l) and $(find "$TMP/fs2" | wc -l)"
content=$(diff -rq --no-dereference "$TMP/fs1" "$TMP/fs2" | sed "s#$TMP/fs[12]##g" || true)
echo "content differs or in one image only: $(printf '%s' "$content" | grep -c . || true)"
[ -z "$content" ] || printf '%s\n' "$content" | sed 's/^/  /'
# Metadata of regular files and directories (rdump makes symlinks anew: their times are not
# the image's). Inode ctimes are not compared: ext4 sets them when a file is written.
meta() { (cd "$1" && find . ! -type l -printf '%p\t%M %U %G %T@\n' | sort); }
join -t "$(printf '\t')" <(meta "$TMP/fs1") <(meta "$TMP/fs2") |
	awk -F'\t' '$2 != $3 { split($2, x, " "); split($3, y, " "); n++;
		what = (x[1] != y[1] || x[2] != y[2] || x[3] != y[3]) ? "mode/owner" : "mtime";
		kind = substr(x[1], 1, 1) == "d" ? "dir " : "file"; c[kind " " what]++;
		lines = lines sprintf("  %s %s: %s\n", kind, what, $1) }
	END { printf "metadata only: %d\n", n; for (k in c) printf "  %s: %d\n", k, c[k];
		printf "%s", lines }'
