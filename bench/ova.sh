#!/usr/bin/env bash
# The OVA post-processor against a bare `qemu-img convert` to streamOptimized VMDK of the
# same disk: what imgforge adds on top of the conversion (qemu-img info and map, the vmdk's
# CID, the .ovf and .mf, the USTAR tar, the sha256 of the vmdk and of the .ova) as a ratio of
# times, and the peak RSS of each.
#
#   bench/ova.sh [MIB] [RUNS]     (default 512 MiB of data in a 2 GiB qcow2, best of 3)
#
# The disk holds MIB MiB of /usr (compressible like a real root filesystem). Runs alternate
# between the two so that load from elsewhere hits both alike; the fastest of each is
# compared, by wall clock and by CPU time (user + system, children included). On a shared
# machine both move by more than imgforge adds, so a third figure compares each OVA run with
# the `qemu-img convert` inside it (the same command as the bare one, timed through a
# wrapper on PATH): same moment, same load. bench/imgf-bench.c drives imgforge's
# post-processor (imgf_ova_write, as `imgforge build` runs it for capi-ova).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
MIB=${1:-512}
RUNS=${2:-3}
B=${IMGF_BUILD_DIR:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
make -s -C "$TOP" "B=$B" "$B/bench/imgf-bench"
TMP=$(mktemp -d /var/tmp/bench-ova.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
NAME=ubuntu-2204+kube-v1.31.2

echo "== making a 2 GiB qcow2 holding $MIB MiB of /usr"
truncate -s 2G "$TMP/disk.raw"
{ tar -cf - /usr 2>/dev/null || true; } | head -c $((MIB * 1024 * 1024)) |
	dd of="$TMP/disk.raw" bs=1M conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$TMP/disk.raw" "$TMP/disk.qcow2"
rm "$TMP/disk.raw"
cat "$TMP/disk.qcow2" >/dev/null # both start from the page cache

# qemu-img for the OVA runs: the real one, each convert's wall time appended to convert.times
mkdir "$TMP/bin"
cat >"$TMP/bin/qemu-img" <<WRAP
#!/bin/sh
[ "\$1" = convert ] || exec "$(command -v qemu-img)" "\$@"
exec /usr/bin/time -f %e -a -o "$TMP/convert.times" "$(command -v qemu-img)" "\$@"
WRAP
chmod +x "$TMP/bin/qemu-img"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 > b + 0) ? a : b }'; }
field() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

t_bare='' c_bare='' t_ova='' c_ova='' self_ova='' same='' rss_bare='' rss_ova='' rss_kids=''
echo "== $RUNS runs each, alternating (wall s / cpu s)"
for i in $(seq 1 "$RUNS"); do
	rm -f "$TMP/bare.vmdk"
	t0=$(now)
	/usr/bin/time -f '%M %U %S' -o "$TMP/bare.time" qemu-img convert -f qcow2 -O vmdk \
		-o subformat=streamOptimized,adapter_type=lsilogic "$TMP/disk.qcow2" "$TMP/bare.vmdk"
	t1=$(now)
	tb=$(secs "$t0" "$t1")
	cb=$(awk '{ printf "%.3f", $2 + $3 }' "$TMP/bare.time")
	t_bare=$(min "$tb" "$t_bare")
	c_bare=$(min "$cb" "$c_bare")
	rss_bare=$(max "$(awk '{ print $1 }' "$TMP/bare.time")" "$rss_bare")

	rm -rf "$TMP/out" && mkdir "$TMP/out"
	rm -f "$TMP/convert.times"
	PATH=$TMP/bin:$PATH "$B/bench/imgf-bench" ova "$TMP/disk.qcow2" "$TMP/out" "$NAME" >"$TMP/ova.out" 2>"$TMP/ova.err" ||
		{ cat "$TMP/ova.err" >&2; exit 1; }
	t_ova=$(min "$(field seconds "$TMP/ova.out")" "$t_ova")
	c_ova=$(min "$(field cpu_seconds "$TMP/ova.out")" "$c_ova")
	self_ova=$(min "$(field self_cpu_seconds "$TMP/ova.out")" "$self_ova")
	inner=$(tail -n 1 "$TMP/convert.times")
	same=$(min "$(awk -v a="$(field seconds "$TMP/ova.out")" -v b="$inner" 'BEGIN { printf "%.3f", a / b }')" "$same")
	rss_ova=$(max "$(field rss_kib "$TMP/ova.out")" "$rss_ova")
	rss_kids=$(max "$(field children_rss_kib "$TMP/ova.out")" "$rss_kids")
	echo "run $i: qemu-img convert $tb / $cb, imgforge ova $(field seconds "$TMP/ova.out") / $(field cpu_seconds "$TMP/ova.out") (its own share $(field self_cpu_seconds "$TMP/ova.out") cpu; the convert inside it $inner wall)"
done
# The .mf must name the vmdk that went into the .ova, and the .sha256 the .ova.
tar -xf "$TMP/out/$NAME.ova" -C "$TMP/out" "$NAME.vmdk" "$NAME.mf"
grep -qF "SHA256($NAME.vmdk)= $(sha256sum "$TMP/out/$NAME.vmdk" | cut -d' ' -f1)" "$TMP/out/$NAME.mf" ||
	{ echo "bench: the .mf does not match the vmdk in the .ova" >&2; exit 1; }
printf '%s  %s\n' "$(cat "$TMP/out/$NAME.ova.sha256")" "$TMP/out/$NAME.ova" | sha256sum -c --quiet - ||
	{ echo "bench: the .ova.sha256 does not match the .ova" >&2; exit 1; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo
echo "disk: $(stat -c %s "$TMP/disk.qcow2") bytes qcow2, vmdk $(stat -c %s "$TMP/bare.vmdk") bytes, ova $(stat -c %s "$TMP/out/$NAME.ova") bytes"
echo "qemu-img convert (streamOptimized): ${t_bare} s wall, ${c_bare} s cpu, peak RSS $((rss_bare / 1024)) MiB"
echo "imgforge OVA post-processor:        ${t_ova} s wall, ${c_ova} s cpu (imgforge's own ${self_ova} s), peak RSS $((rss_ova / 1024)) MiB (imgforge), $((rss_kids / 1024)) MiB (largest qemu-img child)"
echo "OVA time ratio (imgforge / qemu-img convert): wall $(ratio "$t_ova" "$t_bare"), cpu $(ratio "$c_ova" "$c_bare"), against the convert in the same run $same"
