#!/usr/bin/env bash
# How reproducible the qcow2 is: capi-qcow2 built twice from the same config, inputs and
# SOURCE_DATE_EPOCH, with --no-cache, into two output directories. Reports whether the two
# qcow2 files are equal and, when not, every file of the guest filesystem that differs: in
# content (sha256, size, link target), only in metadata (mode, owner, times), or is in one
# image only. The listings come from virt-ls (libguestfs), one appliance per image.
#
#   bench/qcow2-repro.sh                 KEEP=1 keeps the two images and listings
#   bench/qcow2-repro.sh A.qcow2 B.qcow2 compares two images built before
#   BENCH_BOOT_CHECK=true                boot-check both builds (default false: the boot check
#                                        runs on a throwaway overlay and does not change the image)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-qcow2-repro.XXXXXX)
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
cleanup() {
	fixtures_stop "$FIX" >/dev/null 2>&1 || true
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

# One line per file: path, then the content fields, then the metadata fields (tab-separated).
# virt-ls --csv -lR --extra-stats --times --time-t --uids --checksum: type, mode, size, uid,
# gid, atime, mtime, ctime, ... (extra stats: device, inode, nlink, rdev, blocks), checksum,
# path[, link target].
listing() { # IMAGE OUT
	virt-ls --format=qcow2 -a "$1" -lR --csv --extra-stats --time-t --uids \
		--checksum=sha256 / >"$2.csv"
	python3 - "$2.csv" >"$2" <<'EOF'
import csv, sys
for row in csv.reader(open(sys.argv[1])):
    # type mode size uid gid atime mtime ctime dev ino nlink rdev blocks checksum path [link]
    if len(row) < 15:
        continue
    typ, mode, size, uid, gid, atime, mtime, ctime = row[:8]
    checksum, path = row[13], row[14]
    link = row[15] if len(row) > 15 else ""
    print("\t".join([path, typ, size, checksum, link, mode, uid, gid, mtime, ctime]))
EOF
}
listing "$A" "$TMP/list1"
listing "$B" "$TMP/list2"
python3 - "$TMP/list1" "$TMP/list2" <<'EOF'
import sys
def load(p):
    out = {}
    for line in open(p):
        f = line.rstrip("\n").split("\t")
        out[f[0]] = f
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
content, meta, only = [], [], []
for path in sorted(set(a) | set(b)):
    if path not in a or path not in b:
        only.append(("1" if path in a else "2") + " " + path)
        continue
    x, y = a[path], b[path]
    if x[1:5] != y[1:5]:
        # directories have no checksum; their size is the entries' space
        content.append(path)
        continue
    what = [n for n, i in (("mode", 5), ("uid", 6), ("gid", 7), ("mtime", 8), ("ctime", 9))
            if x[i] != y[i]]
    if what:
        meta.append((path, what))
print(f"files: {len(a)} and {len(b)}")
print(f"in one image only: {len(only)}")
for o in only:
    print("  only in " + o)
print(f"content differs: {len(content)}")
for p in content:
    print("  " + p)
kinds = {}
for p, what in meta:
    for w in what:
        kinds[w] = kinds.get(w, 0) + 1
print(f"metadata only: {len(meta)} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
notime = [(p, w) for p, w in meta if set(w) - {"ctime"}]
print(f"metadata other than ctime: {len(notime)}")
for p, w in notime[:200]:
    print(f"  {p}: {','.join(w)}")
EOF
