#!/usr/bin/env bash
# image-upload throughput against `curl -T` of the same file to the same GCS emulator
# (fake-gcs-server on 127.0.0.1:4443, from hack/test-env.sh), and the sha256 speed of
# imgforge (`image-upload --dry-run`, which hashes the artifact and reads the remote .sha256)
# against sha256sum. Prints both times and both ratios.
#
#   bench/upload.sh [MIB]          (default 256; IMGF=path/to/imgforge to bench another build)
#
# imgforge's upload does more than curl's: a sha256 pass before sending (to skip what the
# bucket has), chunked resumable PUTs (8 MiB, or IMGFORGE_UPLOAD_CHUNK), md5 + crc32c +
# sha256 of every byte while sending, the server's md5/crc32c checked, and the .sha256
# object. curl sends one simple-upload POST and checks nothing. fake-gcs-server re-hashes
# the whole object received so far on every chunk, so its cost grows with the square of the
# number of chunks: the one-chunk run shows the client's own cost against curl's.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
IMGF=${IMGF:-$TOP/imgforge}
MIB=${1:-256}
GCS=http://127.0.0.1:4443
curl -fsS --max-time 5 -o /dev/null "$GCS/storage/v1/b" || {
	echo "bench: no GCS emulator at $GCS (hack/test-env.sh starts fake-gcs-server)" >&2
	exit 1
}
[ -x "$IMGF" ] || make -s -C "$TOP"
TMP=$(mktemp -d /var/tmp/bench-upload.XXXXXX)
BUCKET=imgf-bench-$(date +%s)-$$
objects() { curl -fsS "$GCS/storage/v1/b/$BUCKET/o" | jq -r '.items[]?.name'; }
cleanup() {
	local o
	objects 2>/dev/null | while IFS= read -r o; do
		curl -sS -o /dev/null -X DELETE "$GCS/storage/v1/b/$BUCKET/o/$(jq -rn --arg s "$o" '$s|@uri')" || true
	done
	curl -sS -o /dev/null -X DELETE "$GCS/storage/v1/b/$BUCKET" || true
	rm -rf "$TMP"
}
trap cleanup EXIT
curl -fsS -o /dev/null -X POST "$GCS/storage/v1/b?project=bench" -H 'Content-Type: application/json' \
	-d "{\"name\":\"$BUCKET\"}"

export STORAGE_EMULATOR_HOST=$GCS
unset GOOGLE_APPLICATION_CREDENTIALS IMGFORGE_GCS_ENDPOINT
NAME=ubuntu-2204+kube-v1.31.2
DIR=$TMP/$NAME
mkdir -p "$DIR"
echo "== making a $MIB MiB artifact"
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$DIR/$NAME.qcow2"
jq -n --arg b "$BUCKET" --arg n "$NAME" --argjson s $((MIB * 1024 * 1024)) '{builds: [{name: "bench",
	builder_type: "qemu", files: [{name: "\($n).qcow2", size: $s}],
	custom_data: {build_name: "ubuntu-2204", kubernetes_semver: "v1.31.2"}}]}' >"$DIR/manifest.json"
SIZE=$(stat -c %s "$DIR/$NAME.qcow2")
cat "$DIR/$NAME.qcow2" >/dev/null # both start from the page cache

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
mibs() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.1f", s / 1048576 / t }'; }

best_of() { # best_of N CMD...: the fastest of N runs, in seconds
	local n=$1 best='' t0 t1 d
	shift
	for _ in $(seq 1 "$n"); do
		t0=$(now)
		"$@" >/dev/null 2>"$TMP/stderr" || {
			cat "$TMP/stderr" >&2
			exit 1
		}
		t1=$(now)
		d=$(secs "$t0" "$t1")
		if [ -z "$best" ] || awk -v d="$d" -v b="$best" 'BEGIN { exit !(d < b) }'; then best=$d; fi
	done
	echo "$best"
}

echo "== sha256: imgforge image-upload --dry-run vs sha256sum (best of 3)"
t_sum=$(best_of 3 sha256sum "$DIR/$NAME.qcow2")
t_dry=$(best_of 3 "$IMGF" image-upload --dry-run --bucket "$BUCKET" "$DIR")

imgf_upload() {
	# a fresh object each time: nothing to skip
	curl -fsS -o /dev/null -X DELETE "$GCS/storage/v1/b/$BUCKET/o/release%2Fv1.31.2%2F$NAME.qcow2.sha256" 2>/dev/null || true
	"$IMGF" image-upload --bucket "$BUCKET" "$DIR" >"$TMP/upload.out" &&
	grep -q "^uploaded: " "$TMP/upload.out"
}
curl_upload() {
	curl -fsS -o /dev/null -X POST -T "$DIR/$NAME.qcow2" -H 'Content-Type: application/octet-stream' \
		"$GCS/upload/storage/v1/b/$BUCKET/o?uploadType=media&name=curl.qcow2"
}
echo "== upload: imgforge image-upload vs curl -T, same file, same emulator (best of 3)"
t_curl=$(best_of 3 curl_upload)
t_imgf=$(best_of 3 imgf_upload)
ONE=$(((SIZE + 262143) / 262144 * 262144))
t_imgf1=$(IMGFORGE_UPLOAD_CHUNK=$ONE best_of 3 imgf_upload)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "file: $SIZE bytes"
printf 'sha256:  sha256sum %ss (%s MiB/s), imgforge --dry-run %ss (%s MiB/s)\n' \
	"$t_sum" "$(mibs "$t_sum")" "$t_dry" "$(mibs "$t_dry")"
printf 'upload:  curl -T %ss (%s MiB/s), imgforge (8 MiB chunks) %ss (%s MiB/s), imgforge (one chunk) %ss (%s MiB/s)\n' \
	"$t_curl" "$(mibs "$t_curl")" "$t_imgf" "$(mibs "$t_imgf")" "$t_imgf1" "$(mibs "$t_imgf1")"
echo "sha256 speed ratio (imgforge / sha256sum): $(ratio "$t_sum" "$t_dry")"
echo "upload throughput ratio (imgforge / curl -T): $(ratio "$t_curl" "$t_imgf") (one chunk: $(ratio "$t_curl" "$t_imgf1"))"
