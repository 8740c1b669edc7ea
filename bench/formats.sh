#!/usr/bin/env bash
# Each disk output of a VM image on a 20 GiB disk, next to a plain `qemu-img convert -O raw` of
# the same disk: the builder's final compressed qcow2 (`qemu-img convert -c -O qcow2`, as
# builders/qemu.c runs it at commit), and the post-processors ova, raw, vhd, gce and
# containerdisk, as `imgforge build` runs them after the qemu builder (bench/imgf-bench.c).
#
#   bench/formats.sh [GIB] [RUNS] [WHAT...]   (default: 2 GiB of data, 1 run, every output)
#
# The disk is a 20 GiB sparse qcow2, GPT-partitioned (one partition over the disk, as a cloud
# image's root), holding GIB GiB of /usr (compressible like a real root filesystem) from
# 1 MiB on. Its .sha256 is stamped once, as a build leaves it, so no post-processor hashes the
# qcow2 again. Each run starts from the page cache (the qcow2 is read once before) and writes
# into a directory of its own, removed after the run; runs go round the outputs in turn, so
# load from elsewhere hits them alike. containerdisk is timed without loading the image into
# the Docker Engine (LOAD=1 loads it, and removes it after).
#
# Prints, per output, the fastest run's wall and CPU seconds (user + system, children
# included), the peak RSS of the largest process and the output's size, and its wall time as
# a ratio of the plain convert's fastest. WHAT limits the outputs: plain qcow2 ova raw vhd gce
# containerdisk.
#
#   bench/formats.sh --make-disk PATH GIB   the disk alone, at PATH (BENCH in the environment)
#   bench/formats.sh --one WHAT DIR   one run of one output into DIR (made, then removed), with
#                                     DISK, NAME, BENCH (and TAG, LOAD) in the environment:
#                                     what the loop below times, for timing it from outside
set -euo pipefail

# run WHAT DIR: the command for one output, its outputs in DIR
run() {
	local what=$1 dir=$2
	case $what in
	plain) qemu-img convert -f qcow2 -O raw "$DISK" "$dir/plain.raw" ;;
	qcow2) qemu-img convert -q -c -O qcow2 "$DISK" "$dir/$NAME.qcow2" ;;
	ova) "$BENCH" ova "$DISK" "$dir" "$NAME" >/dev/null 2>"$dir.log" ;;
	raw | vhd | gce) pp "$dir" "[{\"type\": \"$what\"}]" ;;
	containerdisk)
		pp "$dir" "[{\"type\": \"containerdisk\", \"image\": \"$TAG\", \"load\": $([ -n "${LOAD:-}" ] && echo true || echo false)}]"
		;;
	*)
		echo "bench: unknown output '$what' (plain qcow2 ova raw vhd gce containerdisk)" >&2
		return 2
		;;
	esac
}
# pp DIR LIST: the post-processors on a hard link of the disk (and its stamped .sha256) in DIR
pp() {
	ln "$DISK" "$1/$NAME.qcow2"
	ln "$DISK.sha256" "$1/$NAME.qcow2.sha256"
	"$BENCH" pp "$1/$NAME.qcow2" "$2" >/dev/null 2>"$1.log"
	rm "$1/$NAME.qcow2" "$1/$NAME.qcow2.sha256"
}

# make_disk PATH GIB: the disk (DISK_GIB GiB, GPT, GIB GiB of /usr from 1 MiB on) as a qcow2
# at PATH, its .sha256 stamped as a build leaves it
make_disk() {
	local raw=$1.raw
	echo "== a $DISK_GIB GiB GPT qcow2 holding $2 GiB of /usr"
	truncate -s "${DISK_GIB}G" "$raw"
	sgdisk -o -n 1:2048:0 -t 1:8300 "$raw" >/dev/null
	# /usr as a tar, again from the start if it is shorter than GIB GiB
	for _ in $(seq 1 $((($2 + 3) / 4))); do tar -cf - /usr 2>/dev/null || true; done |
		head -c $(($2 * 1024 * 1024 * 1024)) |
		dd of="$raw" bs=1M seek=1 conv=notrunc status=none
	qemu-img convert -f raw -O qcow2 "$raw" "$1"
	rm "$raw"
	"$BENCH" sidecar "$1" >/dev/null
	qemu-img info "$1" | grep -E "virtual size|disk size"
}

if [ "${1:-}" = --one ]; then
	: "${DISK:?}" "${NAME:?}" "${BENCH:?}" "${TAG:=imgforge-bench/containerdisk:latest}"
	rm -rf "$3" && mkdir "$3"
	run "$2" "$3" || { cat "$3.log" >&2 2>/dev/null; exit 1; }
	rm -rf "$3" "$3.log"
	exit 0
fi
DISK_GIB=${DISK_GIB:-20} # the disk's virtual size (smaller only to try the script out)
if [ "${1:-}" = --make-disk ]; then
	: "${BENCH:?}"
	make_disk "$2" "$3"
	exit 0
fi

TOP=$(cd "$(dirname "$0")/.." && pwd)
GIB=${1:-2}
RUNS=${2:-1}
shift $(($# > 2 ? 2 : $#))
WHAT=${*:-plain qcow2 ova raw vhd gce containerdisk}
B=${IMGF_BUILD_DIR:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
make -s -C "$TOP" "B=$B" "$B/bench/imgf-bench"
export BENCH=$B/bench/imgf-bench NAME=ubuntu-2204+kube-v1.31.2 TAG=imgforge-bench/containerdisk:$$
TMP=$(mktemp -d /var/tmp/bench-formats.XXXXXX)
trap 'rm -rf "$TMP"; [ -z "${LOAD:-}" ] || docker rmi -f "$TAG" >/dev/null 2>&1 || true' EXIT
export DISK=$TMP/$NAME.qcow2

make_disk "$DISK" "$GIB"
cat "$DISK" >/dev/null

declare -A wall cpu rss size
for i in $(seq 1 "$RUNS"); do
	for what in $WHAT; do
		dir=$TMP/out-$what
		# the output's size: from a run kept for a moment (not timed)
		/usr/bin/time -f '%e %U %S %M' -o "$TMP/time" bash "$0" --one "$what" "$dir" ||
			{ echo "bench: $what failed" >&2; exit 1; }
		read -r w u s m <"$TMP/time"
		c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
		echo "run $i: $what ${w}s wall, ${c}s cpu, $((m / 1024)) MiB peak RSS"
		if [ -z "${wall[$what]:-}" ] || awk -v a="$w" -v b="${wall[$what]}" 'BEGIN { exit !(a < b) }'; then
			wall[$what]=$w cpu[$what]=$c rss[$what]=$((m / 1024))
		fi
	done
done
# the outputs' sizes, from one more (untimed) run of each
for what in $WHAT; do
	dir=$TMP/out-$what
	mkdir "$dir"
	run "$what" "$dir" || { cat "$dir.log" >&2 2>/dev/null; exit 1; }
	rm -f "$dir"/*.json "$dir.log"
	size[$what]="$(($(du -sb --apparent-size "$dir" | cut -f1) / 1048576)) MiB, $(($(du -s -B1 "$dir" | cut -f1) / 1048576)) allocated"
	rm -rf "$dir"
done

echo "== fastest of $RUNS run(s), $GIB GiB of data in a $DISK_GIB GiB qcow2"
printf '%-14s %8s %8s %8s  %-28s %s\n' output wall_s cpu_s rss_MiB "output (MiB)" "wall / plain convert"
for what in $WHAT; do
	ratio=-
	[ -z "${wall[plain]:-}" ] || ratio=$(awk -v a="${wall[$what]}" -v b="${wall[plain]}" 'BEGIN { printf "%.2f", a / b }')
	printf '%-14s %8s %8s %8s  %-28s %s\n' "$what" "${wall[$what]}" "${cpu[$what]}" "${rss[$what]}" "${size[$what]}" "$ratio"
done
