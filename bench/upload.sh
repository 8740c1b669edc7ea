#!/usr/bin/env bash
# image-upload throughput against `curl -T` of the same file to the same GCS emulator
# (fake-gcs-server on 127.0.0.1:4443, from hack/test-env.sh), the sha256 step against
# sha256sum, and image-upload's peak RSS. Prints every time and ratio.
#
#   bench/upload.sh [MIB] [RUNS]   (default 256 MiB, best of 3; IMGF=path/to/imgforge)
#
# The artifact sits in a build output directory as `imgforge build` leaves it: a manifest
# and a .sha256 sidecar stamped by the build (bench/imgf-bench.c sidecar), which image-upload
# reuses instead of hashing the file again. imgforge's upload does more than curl's: a
# resumable session (one PUT of the whole file by default; IMGFORGE_UPLOAD_CHUNK for
# chunks), crc32c + sha256 of every byte sent, the server's crc32c and the sha256
# checked, the remote .sha256 read first and written last. Two curl figures: a simple
# upload (`-T` with uploadType=media, the target's yardstick) and the same resumable
# protocol as imgforge's (a session, then `-T` in one PUT). fake-gcs-server handles a
# resumable PUT with more work than a simple upload (it buffers the body, copies it and
# hashes the object twice), so the second is the best any resumable client gets here.
# The chunked run shows why chunks are not the default: the emulator re-hashes the whole
# object received so far on every chunk.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
IMGF=${IMGF:-$TOP/imgforge}
MIB=${1:-256}
RUNS=${2:-3}
GCS=http://127.0.0.1:4443
B=${IMGF_BUILD_DIR:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
curl -fsS --max-time 5 -o /dev/null "$GCS/storage/v1/b" || {
	echo "bench: no GCS emulator at $GCS (hack/test-env.sh starts fake-gcs-server)" >&2
	exit 1
}
[ -x "$IMGF" ] || make -s -C "$TOP"
make -s -C "$TOP" "B=$B" "$B/bench/imgf-bench"
TMP=$(mktemp -d /var/tmp/bench-upload.XXXXXX)
BUCKET=imgf-bench-$(date +%s)-$$
objects() { curl -fsS "$GCS/storage/v1/b/$BUCKET/o" | jq -r '.items[]?.name'; }
delete() { curl -sS -o /dev/null -X DELETE "$GCS/storage/v1/b/$BUCKET/o/$(jq -rn --arg s "$1" '$s|@uri')" || true; }
cleanup() {
	local o
	objects 2>/dev/null | while IFS= read -r o; do delete "$o"; done
	curl -sS -o /dev/null -X DELETE "$GCS/storage/v1/b/$BUCKET" || true
	rm -rf "$TMP"
}
trap cleanup EXIT
curl -fsS -o /dev/null -X POST "$GCS/storage/v1/b?project=bench" -H 'Content-Type: application/json' \
	-d "{\"name\":\"$BUCKET\"}"

export STORAGE_EMULATOR_HOST=$GCS
unset GOOGLE_APPLICATION_CREDENTIALS IMGFORGE_GCS_ENDPOINT IMGFORGE_UPLOAD_CHUNK
NAME=ubuntu-2204+kube-v1.31.2
DIR=$TMP/$NAME
mkdir -p "$DIR"
echo "== making a $MIB MiB artifact and its stamped .sha256, as a build does"
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$DIR/$NAME.qcow2"
mkdir -p "$TMP/plain/$NAME"
ln "$DIR/$NAME.qcow2" "$TMP/plain/$NAME/$NAME.qcow2" # no sidecar: image-upload hashes it
# after the link: a new link changes the file's ctime, which the stamp records
"$B/bench/imgf-bench" sidecar "$DIR/$NAME.qcow2" >/dev/null
jq -n --arg b "$BUCKET" --arg n "$NAME" --argjson s $((MIB * 1024 * 1024)) '{builds: [{name: "bench",
	builder_type: "qemu", files: [{name: "\($n).qcow2", size: $s}, {name: "\($n).qcow2.sha256", size: 65}],
	custom_data: {build_name: "ubuntu-2204", kubernetes_semver: "v1.31.2"}}]}' >"$DIR/manifest.json"
cp "$DIR/manifest.json" "$TMP/plain/$NAME/"
"$IMGF" image-upload -v --dry-run --bucket "$BUCKET" "$DIR" 2>&1 | grep -q "from its stamped sidecar" || {
	echo "bench: image-upload does not reuse the build's stamped .sha256" >&2
	exit 1
}
SIZE=$(stat -c %s "$DIR/$NAME.qcow2")
cat "$DIR/$NAME.qcow2" >/dev/null # everything starts from the page cache

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
mibs() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.1f", s / 1048576 / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }

# time_of NAME CMD...: run once, add the time to T_NAME's best
declare -A T
time_of() {
	local name=$1 t0 t1
	shift
	t0=$(now)
	"$@" >/dev/null 2>"$TMP/stderr" || {
		cat "$TMP/stderr" >&2
		exit 1
	}
	t1=$(now)
	T[$name]=$(min "$(secs "$t0" "$t1")" "${T[$name]:-}")
}

SUM_OBJ=release/v1.31.2/$NAME.qcow2.sha256
imgf_upload() { # a fresh object each time: nothing to skip
	delete "$SUM_OBJ"
	/usr/bin/time -f %M -o "$TMP/rss" "$IMGF" image-upload --bucket "$BUCKET" "$DIR" >"$TMP/upload.out" &&
		grep -q "^uploaded: " "$TMP/upload.out" &&
		RSS=$(($(cat "$TMP/rss") > ${RSS:-0} ? $(cat "$TMP/rss") : ${RSS:-0}))
}
imgf_upload_chunked() { IMGFORGE_UPLOAD_CHUNK=$((8 << 20)) imgf_upload; }
curl_simple() {
	curl -fsS -o /dev/null -X POST -T "$DIR/$NAME.qcow2" -H 'Content-Type: application/octet-stream' \
		"$GCS/upload/storage/v1/b/$BUCKET/o?uploadType=media&name=curl.qcow2"
}
curl_resumable() {
	local loc
	loc=$(curl -fsS -D - -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"curl-r.qcow2"}' \
		"$GCS/upload/storage/v1/b/$BUCKET/o?uploadType=resumable&name=curl-r.qcow2" |
		tr -d '\r' | sed -n 's/^Location: //Ip')
	curl -fsS -o /dev/null -T "$DIR/$NAME.qcow2" -H "Content-Range: bytes 0-$((SIZE - 1))/$SIZE" "$loc"
}

echo "== sha256: sha256sum vs imgforge image-upload --dry-run, with and without the stamped sidecar (best of $RUNS)"
for _ in $(seq 1 "$RUNS"); do
	time_of sum sha256sum "$DIR/$NAME.qcow2"
	time_of dry_plain "$IMGF" image-upload --dry-run --bucket "$BUCKET" "$TMP/plain/$NAME"
	time_of dry_stamped "$IMGF" image-upload --dry-run --bucket "$BUCKET" "$DIR"
done
echo "== upload: curl -T simple, curl -T resumable, imgforge, alternating (best of $RUNS); imgforge in 8 MiB chunks (once)"
for i in $(seq 1 "$RUNS"); do
	time_of curl curl_simple
	time_of curl_r curl_resumable
	time_of imgf imgf_upload
	[ "$i" != 1 ] || time_of imgf8 imgf_upload_chunked
done

# The emulator keeps every object in memory and its collector frees the last run's copies
# during the next one, so a run's time depends on what ran before it against the same
# server. Pairs on a fresh emulator each (its own port, started and stopped outside the
# timing), the order turned every pair: the ratio of each pair, then their median.
FRESH_PAIRS=${BENCH_FRESH_PAIRS:-5}
FGS=$(command -v fake-gcs-server || true)
fresh_up() { # fresh_up PORT: a new emulator there, with the bench's bucket
	"$FGS" -scheme http -host 127.0.0.1 -port "$1" -backend memory -log-level warn \
		>"$TMP/fgs.log" 2>&1 &
	FGS_PID=$!
	for _ in $(seq 1 100); do
		curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$1/storage/v1/b" 2>/dev/null && break
		sleep 0.1
	done
	curl -fsS -o /dev/null -X POST "http://127.0.0.1:$1/storage/v1/b?project=bench" \
		-H 'Content-Type: application/json' -d "{\"name\":\"$BUCKET\"}"
}
fresh_down() { kill "$FGS_PID" 2>/dev/null; wait "$FGS_PID" 2>/dev/null || true; }
fresh_time() { # fresh_time PORT FUNC: seconds of FUNC against a fresh emulator
	local t0 t1 gcs=$GCS
	fresh_up "$1"
	GCS=http://127.0.0.1:$1 STORAGE_EMULATOR_HOST=http://127.0.0.1:$1
	t0=$(now)
	"$2" >/dev/null 2>"$TMP/stderr" || { cat "$TMP/stderr" >&2; fresh_down; exit 1; }
	t1=$(now)
	GCS=$gcs STORAGE_EMULATOR_HOST=$gcs
	fresh_down
	secs "$t0" "$t1"
}
RATIOS=()
if [ -n "$FGS" ] && [ "$FRESH_PAIRS" -gt 0 ]; then
	echo "== upload, each on a fresh emulator: imgforge and curl -T resumable, $FRESH_PAIRS pairs, the order turned each pair"
	port=$((20000 + $$ % 20000))
	for i in $(seq 1 "$FRESH_PAIRS"); do
		if [ $((i % 2)) = 1 ]; then
			a=$(fresh_time $port imgf_upload); c=$(fresh_time $((port + 1)) curl_resumable)
		else
			c=$(fresh_time $port curl_resumable); a=$(fresh_time $((port + 1)) imgf_upload)
		fi
		[ -n "$a" ] && [ -n "$c" ] || { echo "bench: pair $i failed" >&2; exit 1; }
		RATIOS+=("$(ratio "$c" "$a")")
		echo "pair $i: imgforge ${a}s, curl -T resumable ${c}s, throughput ratio $(ratio "$c" "$a")"
	done
fi

echo
echo "file: $SIZE bytes"
printf 'sha256:  sha256sum %ss (%s MiB/s), imgforge --dry-run %ss (%s MiB/s), with the stamped sidecar %ss\n' \
	"${T[sum]}" "$(mibs "${T[sum]}")" "${T[dry_plain]}" "$(mibs "${T[dry_plain]}")" "${T[dry_stamped]}"
printf 'upload:  curl -T %ss (%s MiB/s), curl -T resumable %ss (%s MiB/s), imgforge %ss (%s MiB/s), imgforge (8 MiB chunks) %ss (%s MiB/s)\n' \
	"${T[curl]}" "$(mibs "${T[curl]}")" "${T[curl_r]}" "$(mibs "${T[curl_r]}")" \
	"${T[imgf]}" "$(mibs "${T[imgf]}")" "${T[imgf8]}" "$(mibs "${T[imgf8]}")"
echo "sha256 speed ratio (imgforge / sha256sum): $(ratio "${T[sum]}" "${T[dry_plain]}")"
echo "upload throughput ratio (imgforge / curl -T): $(ratio "${T[curl]}" "${T[imgf]}") (vs curl -T resumable: $(ratio "${T[curl_r]}" "${T[imgf]}"); 8 MiB chunks: $(ratio "${T[curl]}" "${T[imgf8]}"))"
echo "image-upload peak RSS: $((RSS / 1024)) MiB"
if [ ${#RATIOS[@]} -gt 0 ]; then
	printf '%s\n' "${RATIOS[@]}" | sort -g | awk '{ r[NR] = $1 } END {
		m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
		printf "upload throughput ratio on fresh emulators (imgforge / curl -T resumable): median %.2f of %d pairs (%.2f to %.2f)\n", m, NR, r[1], r[NR] }'
fi
