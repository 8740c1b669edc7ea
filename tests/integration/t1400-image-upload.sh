#!/usr/bin/env bash
# needs: gcs
# imgforge image-upload and image-list against fake-gcs-server on 127.0.0.1:4443 (started by
# hack/test-env.sh): object layout, skipping what the bucket has, channels, --dry-run, a cut
# connection that resumes (tests/lib/cutproxy.py), a byte changed in flight, the
# service-account key path against a token endpoint that verifies the JWT's RS256 signature
# (tests/lib/tokenserver.py), and errors that upload nothing.
#
# Test bodies chain their checks with && (and loops end in `|| exit 1`): the harness runs each
# body inside an `if`, where bash ignores `set -e`, so a failing check that is not the last
# command would otherwise go unnoticed.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
set -o pipefail

GCS=http://127.0.0.1:4443
if ! curl -fsS --max-time 5 -o /dev/null "$GCS/storage/v1/b" 2>/dev/null; then
	test_skip "image upload to a GCS emulator" "nothing answers at $GCS (hack/test-env.sh starts fake-gcs-server)"
	test_done
fi
for c in jq openssl python3 sha256sum; do
	require_cmd "$c" || {
		test_skip "image upload to a GCS emulator" "needs $c"
		test_done
	}
done

export STORAGE_EMULATOR_HOST=$GCS IMGFORGE_RETRY_BASE_MS=10
unset GOOGLE_APPLICATION_CREDENTIALS IMGFORGE_GCS_ENDPOINT IMGFORGE_UPLOAD_CHUNK
RUN=$(date +%s)-$$ # the emulator outlives this script: every bucket name is new
CHUNK=262144

uri() { jq -rn --arg s "$1" '$s|@uri'; }
mkbucket() {
	curl -fsS -o /dev/null -X POST "$GCS/storage/v1/b?project=test" \
		-H 'Content-Type: application/json' -d "{\"name\":\"$1\"}"
	at_exit "rmbucket $1"
}
rmbucket() {
	local o
	for o in $(objects "$1"); do
		curl -fsS -o /dev/null -X DELETE "$GCS/storage/v1/b/$1/o/$(uri "$o")"
	done
	curl -fsS -o /dev/null -X DELETE "$GCS/storage/v1/b/$1"
}
# Object names in a bucket, sorted, one per line.
objects() { curl -fsS "$GCS/storage/v1/b/$1/o" | jq -r '.items[]?.name' | LC_ALL=C sort; }
get() { curl -fsS "$GCS/download/storage/v1/b/$1/o/$(uri "$2")?alt=media"; }
generation() { curl -fsS "$GCS/storage/v1/b/$1/o/$(uri "$2")" | jq -r .generation; }

# mkbuild DIR BUILD_NAME VERSION BUCKET KIB: a build output directory as `imgforge build`
# writes it: NAME.ova, NAME.qcow2 (random), their .sha256 files and a Packer-style manifest.
mkbuild() {
	local dir=$1 bn=$2 ver=$3 bucket=$4 kib=$5 name="$2+kube-$3" ext
	mkdir -p "$dir"
	for ext in ova qcow2; do
		head -c $((kib * 1024 + 4321)) /dev/urandom >"$dir/$name.$ext"
		sha256sum "$dir/$name.$ext" | cut -d' ' -f1 >"$dir/$name.$ext.sha256"
	done
	jq -n --arg bn "$bn" --arg ver "$ver" --arg bucket "$bucket" --arg name "$name" \
		--argjson size $((kib * 1024 + 4321)) '{builds: [{
			name: "capi-qcow2", builder_type: "qemu", build_time: 1700000000,
			artifact_id: "", files: [
				{name: "\($name).ova", size: $size}, {name: "\($name).qcow2", size: $size},
				{name: "\($name).ova.sha256", size: 65}],
			custom_data: {build_name: $bn, kubernetes_semver: $ver, upload_bucket: $bucket,
				containerd_version: "2.0.0", distro_name: "ubuntu"}}]}' >"$dir/manifest.json"
}

# start_server NAME SCRIPT ARGS...: a tests/lib python server in the background, stopped at
# exit; sets PORT from the first line it prints.
start_server() {
	local name=$1 i pid
	shift
	python3 "$@" >"$TMP/$name.port" 2>"$TMP/$name.stderr" &
	pid=$!
	at_exit "kill $pid"
	for i in $(seq 1 100); do
		[ -s "$TMP/$name.port" ] && break
		sleep 0.1
	done
	PORT=$(head -n 1 "$TMP/$name.port")
	[ -n "$PORT" ] || {
		cat "$TMP/$name.stderr"
		die "$name did not start"
	}
}

B1=imgf-t1400-a-$RUN
mkbucket "$B1"
BUILD=$TMP/output/ubuntu-2204+kube-v1.31.2
mkbuild "$BUILD" ubuntu-2204 v1.31.2 "$B1" 3072
N=ubuntu-2204+kube-v1.31.2
OBJ=release/v1.31.2/$N

test_expect_success "the first upload puts each artifact and its .sha256 at release/VERSION/NAME" '
	expect_exit 0 "$IMGF" image-upload "$BUILD" &&
	printf "%s\n" "$OBJ.ova" "$OBJ.ova.sha256" "$OBJ.qcow2" "$OBJ.qcow2.sha256" | diff -u - <(objects "$B1") &&
	for ext in ova qcow2; do
		get "$B1" "$OBJ.$ext" | cmp - "$BUILD/$N.$ext" &&
		get "$B1" "$OBJ.$ext.sha256" | cmp - "$BUILD/$N.$ext.sha256" &&
		grep -qxF "uploaded: gs://$B1/$OBJ.$ext ($(stat -c %s "$BUILD/$N.$ext") bytes, sha256 $(cat "$BUILD/$N.$ext.sha256"))" "$TMP/out" ||
		exit 1
	done
'

test_expect_success "the printed download URLs serve the uploaded bytes" '
	expect_exit 0 "$IMGF" image-upload "$BUILD" &&
	url=$(grep -F "/o/$(uri "$OBJ.ova")?alt=media" "$TMP/out" | sed "s/^ *//") &&
	sum=$(grep -F "/o/$(uri "$OBJ.ova.sha256")?alt=media" "$TMP/out" | sed "s/^ *//") &&
	curl -fsS "$url" | cmp - "$BUILD/$N.ova" &&
	curl -fsS "$sum" | cmp - "$BUILD/$N.ova.sha256"
'

test_expect_success "a second run uploads nothing: up to date, generations unchanged" '
	g1=$(generation "$B1" "$OBJ.ova") && g2=$(generation "$B1" "$OBJ.qcow2.sha256") &&
	expect_exit 0 "$IMGF" image-upload "$BUILD" &&
	grep -qxF "up to date: gs://$B1/$OBJ.ova" "$TMP/out" &&
	grep -qxF "up to date: gs://$B1/$OBJ.qcow2" "$TMP/out" &&
	! grep -q "^uploaded" "$TMP/out" &&
	! grep -q "uploading" "$TMP/err" &&
	test "$g1" = "$(generation "$B1" "$OBJ.ova")" &&
	test "$g2" = "$(generation "$B1" "$OBJ.qcow2.sha256")"
'

test_expect_success "--json says what was decided for each artifact" '
	expect_exit 0 "$IMGF" image-upload --json "$BUILD" &&
	jq -s -e --arg b "$B1" "map(select(.event == \"image-upload\")) |
		length == 2 and all(.action == \"up-to-date\" and .bucket == \$b and
			(.sha256 | test(\"^[0-9a-f]{64}$\")) and .channel == \"release\")" "$TMP/out"
'

test_expect_success "a changed artifact is uploaded again, the unchanged one is not" '
	head -c 2000000 /dev/urandom >"$BUILD/$N.qcow2" &&
	sha256sum "$BUILD/$N.qcow2" | cut -d" " -f1 >"$BUILD/$N.qcow2.sha256" &&
	g=$(generation "$B1" "$OBJ.ova") &&
	expect_exit 0 "$IMGF" image-upload "$BUILD" &&
	grep -qxF "up to date: gs://$B1/$OBJ.ova" "$TMP/out" &&
	grep -q "^uploaded: gs://$B1/$OBJ.qcow2 (2000000 bytes" "$TMP/out" &&
	get "$B1" "$OBJ.qcow2" | cmp - "$BUILD/$N.qcow2" &&
	get "$B1" "$OBJ.qcow2.sha256" | cmp - "$BUILD/$N.qcow2.sha256" &&
	test "$g" = "$(generation "$B1" "$OBJ.ova")"
'

test_expect_success "an artifact that no longer matches the .sha256 the build wrote is refused" '
	cp "$BUILD/$N.qcow2.sha256" "$TMP/keep.sha256" &&
	echo 0000000000000000000000000000000000000000000000000000000000000000 >"$BUILD/$N.qcow2.sha256" &&
	expect_exit 1 "$IMGF" image-upload "$BUILD" &&
	cp "$TMP/keep.sha256" "$BUILD/$N.qcow2.sha256" &&
	expect_err "does not match '\''$BUILD/$N.qcow2.sha256'\''"
'

test_expect_success "image-list shows each image with size, sha256 and URL" '
	expect_exit 0 "$IMGF" image-list "gs://$B1/release/" &&
	for ext in ova qcow2; do
		printf "%s\t%s\t%s\t%s\n" "$OBJ.$ext" "$(stat -c %s "$BUILD/$N.$ext")" \
			"$(cat "$BUILD/$N.$ext.sha256")" \
			"$GCS/download/storage/v1/b/$B1/o/$(uri "$OBJ.$ext")?alt=media"
	done | diff -u - "$TMP/out" &&
	expect_exit 0 "$IMGF" image-list "gs://$B1/ci/" &&
	test ! -s "$TMP/out"
'

# The disk formats end to end: the post-processors' own outputs (raw, vhd, gce and the
# containerDisk's OCI archive, made from a small qcow2 by bench/imgf-bench.c's `pp`, as
# `imgforge build` runs them after the qemu builder, with their .sha256 files and manifest)
# uploaded, each with its .sha256, and a second run uploading none of them again.
FORMAT_EXTS="containerdisk.tar qcow2 raw tar.gz vhd"
if require_cmd qemu-img && require_cmd qemu-io; then
	B5=imgf-t1400-e-$RUN
	mkbucket "$B5"
	FMT=$TMP/formats/$N
	mkdir -p "$FMT"
	BB=${IMGF_BUILD_DIR:-build}
	case $BB in /*) ;; *) BB=$TOP/$BB ;; esac
	make -C "$TOP" -s "B=$BB" "$BB/bench/imgf-bench" >"$TMP/make.log" 2>&1 ||
		{ cat "$TMP/make.log"; die "building $BB/bench/imgf-bench failed"; }
	qemu-img create -q -f qcow2 "$FMT/$N.qcow2" 64M &&
		qemu-io -f qcow2 -c "write -P 0xab 0 1M" -c "write -P 0xcd 40M 64k" "$FMT/$N.qcow2" >/dev/null ||
		die "could not make the qcow2"
	"$BB/bench/imgf-bench" pp "$FMT/$N.qcow2" '[{"type": "raw"}, {"type": "vhd"},
		{"type": "gce", "compression_level": 1},
		{"type": "containerdisk", "image": "localhost/imgf-t1400:v1", "load": false}]' \
		>"$TMP/formats.log" 2>&1 || { cat "$TMP/formats.log"; die "the post-processors failed"; }

	test_expect_success "the raw, vhd, gce and containerdisk outputs are uploaded with their .sha256" '
		expect_exit 0 "$IMGF" image-upload --bucket "$B5" "$FMT" &&
		for ext in $FORMAT_EXTS; do
			printf "%s\n" "$OBJ.$ext" "$OBJ.$ext.sha256" &&
			get "$B5" "$OBJ.$ext" | cmp - "$FMT/$N.$ext" &&
			get "$B5" "$OBJ.$ext.sha256" | cmp - "$FMT/$N.$ext.sha256" &&
			printf "%s  -\n" "$(cat "$FMT/$N.$ext.sha256")" >"$TMP/sum" &&
			get "$B5" "$OBJ.$ext" | sha256sum -c --status "$TMP/sum" &&
			grep -qxF "uploaded: gs://$B5/$OBJ.$ext ($(stat -c %s "$FMT/$N.$ext") bytes, sha256 $(cat "$FMT/$N.$ext.sha256"))" "$TMP/out" ||
			exit 1
		done >"$TMP/want" &&
		objects "$B5" | grep -v -e "\.spdx\.json" -e "\.provenance\.json" | diff -u <(LC_ALL=C sort "$TMP/want") -
	'

	test_expect_success "a second run finds every format up to date and uploads nothing" '
		for ext in $FORMAT_EXTS; do
			echo "$ext $(generation "$B5" "$OBJ.$ext") $(generation "$B5" "$OBJ.$ext.sha256")" || exit 1
		done >"$TMP/gen1" &&
		expect_exit 0 "$IMGF" image-upload --bucket "$B5" "$FMT" &&
		for ext in $FORMAT_EXTS; do
			grep -qxF "up to date: gs://$B5/$OBJ.$ext" "$TMP/out" &&
			echo "$ext $(generation "$B5" "$OBJ.$ext") $(generation "$B5" "$OBJ.$ext.sha256")" ||
			exit 1
		done >"$TMP/gen2" &&
		! grep -q "^uploaded" "$TMP/out" &&
		! grep -q "uploading" "$TMP/err" &&
		diff -u "$TMP/gen1" "$TMP/gen2"
	'
else
	test_skip "raw, vhd, gce and containerdisk outputs uploaded" "needs qemu-img and qemu-io (qemu-utils)"
fi

B2=imgf-t1400-b-$RUN
mkbucket "$B2"
mkbuild "$TMP/rc" ubuntu-2204 v1.32.0-rc.1 "$B2" 64
mkbuild "$TMP/deb" debian-12 1.31.2-1 "$B2" 64
mkbuild "$TMP/plus" ubuntu-2204 v1.31.2+abc "$B2" 64

test_expect_success "the channel comes from the version: release for v1.31.2 and 1.31.2-1, ci for -rc.1 and +abc" '
	expect_exit 0 "$IMGF" image-upload "$TMP/rc" "$TMP/deb" "$TMP/plus" &&
	objects "$B2" | grep -v "\.sha256$" >"$TMP/names" &&
	printf "%s\n" \
		"ci/v1.31.2+abc/ubuntu-2204+kube-v1.31.2+abc.ova" \
		"ci/v1.31.2+abc/ubuntu-2204+kube-v1.31.2+abc.qcow2" \
		"ci/v1.32.0-rc.1/ubuntu-2204+kube-v1.32.0-rc.1.ova" \
		"ci/v1.32.0-rc.1/ubuntu-2204+kube-v1.32.0-rc.1.qcow2" \
		"release/1.31.2-1/debian-12+kube-1.31.2-1.ova" \
		"release/1.31.2-1/debian-12+kube-1.31.2-1.qcow2" | diff -u - "$TMP/names"
'

test_expect_success "--release and --ci override the version" '
	expect_exit 0 "$IMGF" image-upload --release "$TMP/rc" &&
	get "$B2" "release/v1.32.0-rc.1/ubuntu-2204+kube-v1.32.0-rc.1.ova" | cmp - "$TMP/rc/ubuntu-2204+kube-v1.32.0-rc.1.ova" &&
	expect_exit 0 "$IMGF" image-upload --ci "$TMP/deb" &&
	get "$B2" "ci/1.31.2-1/debian-12+kube-1.31.2-1.qcow2.sha256" | cmp - "$TMP/deb/debian-12+kube-1.31.2-1.qcow2.sha256" &&
	expect_exit 2 "$IMGF" image-upload --ci --release "$TMP/deb" &&
	expect_err "exclude each other"
'

B3=imgf-t1400-c-$RUN
mkbucket "$B3"

test_expect_success "--bucket overrides the manifest's upload_bucket" '
	expect_exit 0 "$IMGF" image-upload --bucket "$B3" "$TMP/deb" &&
	test "$(objects "$B3" | grep -c "^release/1.31.2-1/debian-12+kube-1.31.2-1\.")" = 4
'

B4=imgf-t1400-d-$RUN
mkbucket "$B4"
mkbuild "$TMP/dry" ubuntu-2204 v1.31.3 "$B4" 64

test_expect_success "--dry-run prints the plan and writes nothing" '
	expect_exit 0 "$IMGF" image-upload --dry-run "$TMP/dry" &&
	grep -qF "would upload: $TMP/dry/ubuntu-2204+kube-v1.31.3.ova -> gs://$B4/release/v1.31.3/ubuntu-2204+kube-v1.31.3.ova (" "$TMP/out" &&
	grep -qF "would upload: $TMP/dry/ubuntu-2204+kube-v1.31.3.qcow2 -> gs://$B4/release/v1.31.3/ubuntu-2204+kube-v1.31.3.qcow2 (" "$TMP/out" &&
	test -z "$(objects "$B4")" &&
	expect_exit 0 "$IMGF" image-upload --dry-run "$BUILD" &&
	test "$(grep -c "^up to date: " "$TMP/out")" = 2
'

BA=imgf-t1400-att-$RUN
mkbucket "$BA"
ATT=$TMP/att/$N
mkbuild "$ATT" ubuntu-2204 v1.31.2 "$BA" 16
echo "{\"spdxVersion\": \"SPDX-2.3\"}" >"$ATT/capi-qcow2.spdx.json"
echo "{\"_type\": \"https://in-toto.io/Statement/v1\"}" >"$ATT/capi-qcow2.provenance.json"
jq ".builds[0].files += [{name: \"capi-qcow2.spdx.json\"}, {name: \"capi-qcow2.provenance.json\"}]" \
	"$ATT/manifest.json" >"$ATT/m.json" && mv "$ATT/m.json" "$ATT/manifest.json"

test_expect_success "the SBOM and provenance go up beside each artifact, before its .sha256" '
	expect_exit 0 "$IMGF" image-upload "$ATT" &&
	for ext in ova qcow2; do
		for s in "" .spdx.json .provenance.json; do
			printf "%s\n" "$OBJ.$ext$s" "$OBJ.$ext$s.sha256"
		done
	done | LC_ALL=C sort | diff -u - <(objects "$BA") &&
	for ext in ova qcow2; do
		get "$BA" "$OBJ.$ext.spdx.json" | cmp - "$ATT/capi-qcow2.spdx.json" &&
		get "$BA" "$OBJ.$ext.provenance.json" | cmp - "$ATT/capi-qcow2.provenance.json" &&
		a=$(grep -nF "uploaded: gs://$BA/$OBJ.$ext (" "$TMP/out" | cut -d: -f1) &&
		s=$(grep -nF "uploaded: gs://$BA/$OBJ.$ext.spdx.json (" "$TMP/out" | cut -d: -f1) &&
		p=$(grep -nF "uploaded: gs://$BA/$OBJ.$ext.provenance.json (" "$TMP/out" | cut -d: -f1) &&
		test "$s" -lt "$a" && test "$p" -lt "$a" || exit 1
	done &&
	expect_exit 0 "$IMGF" image-list "gs://$BA/" &&
	! grep -q -e spdx -e provenance "$TMP/out"
'

test_expect_success "a missing manifest is a precise error and nothing is uploaded, even from the good directory" '
	mkdir -p "$TMP/empty" &&
	expect_exit 1 "$IMGF" image-upload "$TMP/dry" "$TMP/empty" &&
	expect_err "build directory '\''$TMP/empty'\'' has no manifest.json" &&
	test -z "$(objects "$B4")"
'

test_expect_success "an artifact the manifest lists but the directory lacks is a precise error" '
	mkbuild "$TMP/gone" ubuntu-2204 v1.31.3 "$B4" 16 &&
	rm "$TMP/gone/ubuntu-2204+kube-v1.31.3.qcow2" &&
	expect_exit 1 "$IMGF" image-upload "$TMP/gone" &&
	expect_err "builds[0].files: artifact '\''ubuntu-2204+kube-v1.31.3.qcow2'\''" &&
	test -z "$(objects "$B4")"
'

test_expect_success "a bucket that does not exist is a precise error and nothing is created" '
	nb=imgf-t1400-nosuch-$RUN &&
	expect_exit 1 "$IMGF" image-upload --bucket "$nb" "$TMP/dry" &&
	expect_err "bucket '\''$nb'\'' does not exist" &&
	test "$(curl -s -o /dev/null -w "%{http_code}" "$GCS/storage/v1/b/$nb")" = 404 &&
	expect_exit 1 "$IMGF" image-list "gs://$nb/release/" &&
	expect_err "bucket '\''$nb'\'' does not exist"
'

# ---- a cut connection ----
B5=imgf-t1400-e-$RUN
mkbucket "$B5"
mkbuild "$TMP/big" ubuntu-2204 v1.31.4 "$B5" 6144
SIZE=$(stat -c %s "$TMP/big/ubuntu-2204+kube-v1.31.4.ova")
CUT=$((10 * CHUNK + 12345)) # request-body bytes: in the 11th chunk of the first artifact
start_server cutproxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --cut-after "$CUT" --log "$TMP/cutproxy.log"
CUTPORT=$PORT

test_expect_success "an upload whose connection is cut resumes where the server was, not from 0" '
	STORAGE_EMULATOR_HOST=http://127.0.0.1:$CUTPORT IMGFORGE_UPLOAD_CHUNK=$CHUNK \
		expect_exit 0 "$IMGF" image-upload "$TMP/big" &&
	cat "$TMP/err" "$TMP/cutproxy.log" &&
	grep -q "cut after $CUT body bytes" "$TMP/cutproxy.log" &&
	grep -q "range=bytes \*/$SIZE token=- -> 308 range=bytes=0-$((10 * CHUNK - 1)) (status query answered here)" "$TMP/cutproxy.log" &&
	expect_err "upload '\''gs://$B5/release/v1.31.4/ubuntu-2204+kube-v1.31.4.ova'\'': resuming at byte $((10 * CHUNK)) of $SIZE" &&
	sent=$(sed -n "s/.*kube-v1.31.4.ova'\'': sent \([0-9]*\) bytes for $SIZE-byte object (1 resume)$/\1/p" "$TMP/err") &&
	echo "sent $sent bytes for a $SIZE-byte object; starting over would have sent about $((SIZE + 10 * CHUNK))" &&
	test "$sent" -gt "$SIZE" &&
	test "$sent" -le $((SIZE + 2 * CHUNK)) &&
	get "$B5" "release/v1.31.4/ubuntu-2204+kube-v1.31.4.ova" | cmp - "$TMP/big/ubuntu-2204+kube-v1.31.4.ova" &&
	get "$B5" "release/v1.31.4/ubuntu-2204+kube-v1.31.4.ova.sha256" | cmp - "$TMP/big/ubuntu-2204+kube-v1.31.4.ova.sha256" &&
	get "$B5" "release/v1.31.4/ubuntu-2204+kube-v1.31.4.qcow2" | cmp - "$TMP/big/ubuntu-2204+kube-v1.31.4.qcow2"
'

# ---- the default: one request, recovered from the offset the server persisted ----
B9=imgf-t1400-i-$RUN
mkbucket "$B9"
mkbuild "$TMP/one" ubuntu-2204 v1.31.10 "$B9" 10240 # bigger than the old 8 MiB chunks
SIZE1=$(stat -c %s "$TMP/one/ubuntu-2204+kube-v1.31.10.ova")
KEPT=$((3 * CHUNK))
CUT1=$((KEPT + 12345))
start_server keepproxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --cut-after "$CUT1" \
	--keep-partial --log "$TMP/keepproxy.log"
KEEPPORT=$PORT

test_expect_success "each artifact goes in one request; a cut one resumes from the offset the server persisted" '
	STORAGE_EMULATOR_HOST=http://127.0.0.1:$KEEPPORT expect_exit 0 "$IMGF" image-upload "$TMP/one" &&
	cat "$TMP/err" "$TMP/keepproxy.log" &&
	grep -F "kube-v1.31.10.ova&upload_id=" "$TMP/keepproxy.log" >"$TMP/ova.puts" &&
	grep -q "range=bytes 0-$((SIZE1 - 1))/$SIZE1 token=- -> cut after $CUT1 body bytes, kept $KEPT (-> 308 range=bytes=0-$((KEPT - 1)))$" "$TMP/ova.puts" &&
	grep -q "range=bytes \*/$SIZE1 token=- -> 308 range=bytes=0-$((KEPT - 1)) (status query answered here)$" "$TMP/ova.puts" &&
	grep -q "range=bytes $KEPT-$((SIZE1 - 1))/$SIZE1 token=- -> 200 " "$TMP/ova.puts" &&
	test "$(wc -l <"$TMP/ova.puts")" = 3 &&
	grep -F "kube-v1.31.10.qcow2&upload_id=" "$TMP/keepproxy.log" >"$TMP/qcow2.puts" &&
	grep -q "range=bytes 0-$((SIZE1 - 1))/$SIZE1 token=- -> 200 " "$TMP/qcow2.puts" &&
	test "$(wc -l <"$TMP/qcow2.puts")" = 1 &&
	expect_err "upload '\''gs://$B9/release/v1.31.10/ubuntu-2204+kube-v1.31.10.ova'\'': resuming at byte $KEPT of $SIZE1" &&
	expect_err "kube-v1.31.10.ova'\'': sent " && expect_err " bytes for $SIZE1-byte object (1 resume)" &&
	expect_err "kube-v1.31.10.qcow2'\'': sent $SIZE1 bytes for $SIZE1-byte object (0 resumes)" &&
	for ext in ova qcow2; do
		get "$B9" "release/v1.31.10/ubuntu-2204+kube-v1.31.10.$ext" | cmp - "$TMP/one/ubuntu-2204+kube-v1.31.10.$ext" &&
		get "$B9" "release/v1.31.10/ubuntu-2204+kube-v1.31.10.$ext.sha256" | cmp - "$TMP/one/ubuntu-2204+kube-v1.31.10.$ext.sha256" ||
		exit 1
	done
'

# ---- the build's .sha256, reused when its stamp says the artifact is unchanged ----
# stamp FILE: the stamp a build records on FILE.sha256 (src/disk/sidecar.h), for FILE as it is now
stamp() {
	python3 - "$1" <<-'PY'
		import os, sys
		art = sys.argv[1]
		st = os.stat(art)
		hexv = open(art + ".sha256").read().strip()
		ns = lambda t: "%d.%09d" % divmod(t, 10**9)
		text = "imgforge-sha256-stamp 1 sha256=%s size=%d mtime=%s ctime=%s ino=%d dev=%d" % (
		    hexv, st.st_size, ns(st.st_mtime_ns), ns(st.st_ctime_ns), st.st_ino, st.st_dev)
		os.setxattr(art + ".sha256", "user.imgforge.sha256-stamp", text.encode())
	PY
}
B10=imgf-t1400-j-$RUN
mkbucket "$B10"
mkbuild "$TMP/st" ubuntu-2204 v1.31.11 "$B10" 512
STNAME=ubuntu-2204+kube-v1.31.11
if stamp "$TMP/st/$STNAME.ova" 2>"$TMP/xattr.err" && stamp "$TMP/st/$STNAME.qcow2"; then
test_expect_success "a .sha256 stamped by the build is reused: the artifact is read once, by the upload" '
	expect_exit 0 "$IMGF" image-upload -v "$TMP/st" &&
	for ext in ova qcow2; do
		expect_err "sha256 of '\''$TMP/st/$STNAME.$ext'\'': $(cat "$TMP/st/$STNAME.$ext.sha256"), from its stamped sidecar (unchanged since the build hashed it)" &&
		get "$B10" "release/v1.31.11/$STNAME.$ext" | cmp - "$TMP/st/$STNAME.$ext" &&
		get "$B10" "release/v1.31.11/$STNAME.$ext.sha256" | cmp - "$TMP/st/$STNAME.$ext.sha256" ||
		exit 1
	done &&
	! grep -q "cannot be reused" "$TMP/err"
'

test_expect_success "a stamped .sha256 is not believed once the artifact changed, even with its size and mtime put back" '
	mkbuild "$TMP/st2" ubuntu-2204 v1.31.12 "$B10" 64 &&
	art=$TMP/st2/ubuntu-2204+kube-v1.31.12.qcow2 &&
	stamp "$art" && stamp "${art%.qcow2}.ova" &&
	touch -r "$art" "$TMP/mtime.ref" &&
	printf X | dd of="$art" bs=1 seek=1000 conv=notrunc status=none &&
	touch -r "$TMP/mtime.ref" "$art" &&
	test "$(stat -c %s "$art")" = $((64 * 1024 + 4321)) &&
	test "$(stat -c %.9Y "$art")" = "$(stat -c %.9Y "$TMP/mtime.ref")" &&
	expect_exit 1 "$IMGF" image-upload -v "$TMP/st2" &&
	expect_err "sha256 of '\''$art'\'' (its sidecar cannot be reused: the artifact or the sidecar changed since the stamp was recorded)" &&
	expect_err "'\''$art'\'' does not match '\''$art.sha256'\''" &&
	! objects "$B10" | grep -q v1.31.12
'

test_expect_success "a stamped .sha256 edited in place is not believed" '
	mkbuild "$TMP/st3" ubuntu-2204 v1.31.13 "$B10" 64 &&
	art=$TMP/st3/ubuntu-2204+kube-v1.31.13.qcow2 &&
	stamp "$art" && stamp "${art%.qcow2}.ova" &&
	echo 0000000000000000000000000000000000000000000000000000000000000000 >"$art.sha256" &&
	python3 -c "import os, sys; os.getxattr(sys.argv[1], sys.argv[2])" "$art.sha256" user.imgforge.sha256-stamp &&
	expect_exit 1 "$IMGF" image-upload -v "$TMP/st3" &&
	expect_err "(its sidecar cannot be reused: the artifact or the sidecar changed since the stamp was recorded)" &&
	expect_err "'\''$art'\'' does not match '\''$art.sha256'\''" &&
	! objects "$B10" | grep -q v1.31.13
'

test_expect_success "a forged stamp and .sha256 are caught by the upload itself: the object is deleted, no .sha256 written" '
	mkbuild "$TMP/st4" ubuntu-2204 v1.31.14 "$B10" 256 &&
	art=$TMP/st4/ubuntu-2204+kube-v1.31.14.ova &&
	real=$(cat "$art.sha256") &&
	echo "$real" | sha256sum | cut -d" " -f1 >"$art.sha256" &&
	stamp "$art" &&
	expect_exit 1 "$IMGF" image-upload -v "$TMP/st4" &&
	expect_err "from its stamped sidecar" &&
	expect_err "upload '\''gs://$B10/release/v1.31.14/ubuntu-2204+kube-v1.31.14.ova'\'': the bytes sent from '\''$art'\'' have sha256 $real, not $(cat "$art.sha256") (the file changed, or its .sha256 is wrong); the object was deleted" &&
	! objects "$B10" | grep -q v1.31.14
'
else
	test_skip "stamped .sha256 files" "user extended attributes cannot be set in $TMP: $(cat "$TMP/xattr.err")"
fi

# ---- a byte changed on the way: the server's crc32c (md5 without one) differs from what was read ----
B6=imgf-t1400-f-$RUN
mkbucket "$B6"
mkbuild "$TMP/flip" ubuntu-2204 v1.31.5 "$B6" 1024
start_server flipproxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --flip-at 300000 --log "$TMP/flipproxy.log"
FLIPPORT=$PORT

test_expect_success "an object the server stored differently is deleted and the upload fails" '
	STORAGE_EMULATOR_HOST=http://127.0.0.1:$FLIPPORT IMGFORGE_UPLOAD_CHUNK=$CHUNK \
		expect_exit 1 "$IMGF" image-upload "$TMP/flip" &&
	grep -q "(a byte flipped)" "$TMP/flipproxy.log" &&
	expect_err "upload '\''gs://$B6/release/v1.31.5/ubuntu-2204+kube-v1.31.5.ova'\'': crc32c mismatch: the server stored " &&
	expect_err "; the object was deleted" &&
	test -z "$(objects "$B6")"
'

# A server that reports no crc32c: its md5 is checked instead, the file read again for it.
B12=imgf-t1400-m-$RUN
mkbucket "$B12"
mkbuild "$TMP/flipmd5" ubuntu-2204 v1.31.15 "$B12" 1024
start_server flipmd5proxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --flip-at 300000 --drop-crc32c --log "$TMP/flipmd5proxy.log"
FLIPMD5PORT=$PORT

test_expect_success "without the server'\''s crc32c its md5 is checked: a changed byte is found" '
	STORAGE_EMULATOR_HOST=http://127.0.0.1:$FLIPMD5PORT expect_exit 1 "$IMGF" image-upload "$TMP/flipmd5" &&
	grep -q "(a byte flipped) (crc32c dropped)" "$TMP/flipmd5proxy.log" &&
	expect_err "upload '\''gs://$B12/release/v1.31.15/ubuntu-2204+kube-v1.31.15.ova'\'': md5 mismatch: the server stored " &&
	expect_err "; the object was deleted" &&
	test -z "$(objects "$B12")"
'

# ---- a .sha256 write whose reply lacks md5Hash: unverified, so refused and removed ----
B11=imgf-t1400-k-$RUN
mkbucket "$B11"
mkbuild "$TMP/nomd5" ubuntu-2204 v1.31.6 "$B11" 256
start_server nomd5proxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --drop-md5 --log "$TMP/nomd5proxy.log"
NOMD5PORT=$PORT

test_expect_success "a .sha256 object the server reports without md5Hash is refused and deleted" '
	STORAGE_EMULATOR_HOST=http://127.0.0.1:$NOMD5PORT expect_exit 1 "$IMGF" image-upload "$TMP/nomd5" &&
	grep -q "(md5Hash dropped)" "$TMP/nomd5proxy.log" &&
	expect_err "the server'\''s reply has no md5Hash, so what it stored is unverified; deleted it" &&
	! objects "$B11" | grep -q "\.sha256$"
'

# ---- 503s: a metadata read is retried, a chunk the server refused is sent again ----
B8=imgf-t1400-h-$RUN
mkbucket "$B8"
mkbuild "$TMP/busy" ubuntu-2204 v1.31.8 "$B8" 1024
start_server busyproxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --fail-gets 2 \
	--fail-at $((2 * CHUNK + 100)) --log "$TMP/busyproxy.log"
BUSYPORT=$PORT

test_expect_success "503s are retried with backoff and the refused chunk is sent again" '
	STORAGE_EMULATOR_HOST=http://127.0.0.1:$BUSYPORT IMGFORGE_UPLOAD_CHUNK=$CHUNK \
		expect_exit 0 "$IMGF" image-upload "$TMP/busy" &&
	test "$(grep -c "^GET .* -> 503 (injected here)" "$TMP/busyproxy.log")" = 2 &&
	grep -q "^PUT .*range=bytes $((2 * CHUNK))-$((3 * CHUNK - 1))/.* -> 503 (injected here)" "$TMP/busyproxy.log" &&
	grep -q "^PUT .*range=bytes $((2 * CHUNK))-$((3 * CHUNK - 1))/.* -> 308 range=bytes=0-$((3 * CHUNK - 1))$" "$TMP/busyproxy.log" &&
	expect_err "HTTP 503; retrying in " &&
	expect_err "(attempt 2 of 5)" &&
	expect_err "resuming at byte $((2 * CHUNK))" &&
	get "$B8" "release/v1.31.8/ubuntu-2204+kube-v1.31.8.ova" | cmp - "$TMP/busy/ubuntu-2204+kube-v1.31.8.ova"
'

start_server downproxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --fail-puts 1000 \
	--log "$TMP/downproxy.log"
DOWNPORT=$PORT
mkbuild "$TMP/down" ubuntu-2204 v1.31.9 "$B8" 512

test_expect_success "a server that keeps refusing chunks makes the upload give up, naming why" '
	STORAGE_EMULATOR_HOST=http://127.0.0.1:$DOWNPORT IMGFORGE_UPLOAD_CHUNK=$CHUNK \
		expect_exit 1 "$IMGF" image-upload "$TMP/down" &&
	expect_err "upload '\''gs://$B8/release/v1.31.9/ubuntu-2204+kube-v1.31.9.ova'\'': no progress after 5 attempts at byte 0: HTTP 503: injected by proxy" &&
	test "$(grep -c "^PUT .* -> 503 (injected here)" "$TMP/downproxy.log")" = 5 &&
	! objects "$B8" | grep -q v1.31.9
'

# ---- the service-account key path ----
B7=imgf-t1400-g-$RUN
mkbucket "$B7"
mkbuild "$TMP/keyed" ubuntu-2204 v1.31.6 "$B7" 512
mkbuild "$TMP/keyed2" ubuntu-2204 v1.31.7 "$B7" 16
KEYS=$TMP/keys
mkdir -p "$KEYS"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/sa.pem" 2>/dev/null
openssl pkey -in "$KEYS/sa.pem" -pubout -out "$KEYS/sa.pub"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/other.pem" 2>/dev/null
EMAIL=uploader@imgforge-test.iam.gserviceaccount.com
start_server tokenserver "$TOP/tests/lib/tokenserver.py" --pubkey "$KEYS/sa.pub" --email "$EMAIL" --log "$TMP/token.log"
TOKEN_URI=http://127.0.0.1:$PORT/token
# The emulator accepts any bearer; a logging pass-through in front shows which one was sent.
start_server authproxy "$TOP/tests/lib/cutproxy.py" --target 127.0.0.1:4443 --log "$TMP/auth.log"
KEYED_ENDPOINT=http://127.0.0.1:$PORT
# keyfile PEM OUT: a service-account key file as the Cloud console writes it
keyfile() {
	jq -n --rawfile pk "$1" --arg email "$EMAIL" --arg uri "$TOKEN_URI" '{type: "service_account",
		project_id: "imgforge-test", private_key_id: "0123abcd", private_key: $pk,
		client_email: $email, client_id: "1", token_uri: $uri}' >"$2"
}
keyfile "$KEYS/sa.pem" "$KEYS/sa.json"
keyfile "$KEYS/other.pem" "$KEYS/other.json"
# A line of the key's base64 body: no message may contain it.
KEYLINE=$(sed -n 5p "$KEYS/sa.pem")
# keyed EXIT ARGS...: imgforge against the endpoint in front of the emulator, with key auth
keyed() {
	local want=$1
	shift
	expect_exit "$want" env -u STORAGE_EMULATOR_HOST IMGFORGE_GCS_ENDPOINT="$KEYED_ENDPOINT" "$IMGF" "$@"
}

test_expect_success "with a key file the JWT is signed with RS256 and the token is sent to the endpoint" '
	keyed 0 image-upload --key-file "$KEYS/sa.json" "$TMP/keyed" &&
	grep -qx "issued test-token-1" "$TMP/token.log" &&
	! grep -q rejected "$TMP/token.log" &&
	test -s "$TMP/auth.log" &&
	! grep -v " token=test-token-1 -> " "$TMP/auth.log" &&
	get "$B7" "release/v1.31.6/ubuntu-2204+kube-v1.31.6.ova" | cmp - "$TMP/keyed/ubuntu-2204+kube-v1.31.6.ova"
'

test_expect_success "GOOGLE_APPLICATION_CREDENTIALS names the key when --key-file is not given" '
	GOOGLE_APPLICATION_CREDENTIALS=$KEYS/sa.json keyed 0 image-list "gs://$B7/release/" &&
	test "$(wc -l <"$TMP/out")" = 2 &&
	grep -qx "issued test-token-2" "$TMP/token.log"
'

test_expect_success "a key the token endpoint cannot verify is refused and nothing is uploaded" '
	before=$(objects "$B7") &&
	keyed 1 image-upload --key-file "$KEYS/other.json" "$TMP/keyed2" &&
	grep -q "rejected: the RS256 signature does not verify" "$TMP/token.log" &&
	expect_err "service-account key '\''$KEYS/other.json'\'': POST '\''token endpoint $TOKEN_URI'\'': HTTP 400: invalid_grant: the RS256 signature does not verify" &&
	test "$before" = "$(objects "$B7")" &&
	! grep -qF "PRIVATE KEY" "$TMP/err"
'

test_expect_success "a corrupt key file is a precise error naming the file and field, never its content" '
	before=$(objects "$B7") &&
	corrupt() {
		keyed 1 image-upload --key-file "$1" "$TMP/keyed2" &&
		! grep -qF -- "$KEYLINE" "$TMP/err" &&
		! grep -qF "PRIVATE KEY" "$TMP/err" &&
		expect_err "$2"
	} &&
	head -c 900 "$KEYS/sa.json" >"$KEYS/truncated.json" &&
	corrupt "$KEYS/truncated.json" "service-account key '\''$KEYS/truncated.json'\'': not valid JSON (line " &&
	jq ".private_key |= sub(\"MII\"; \"XYZ\")" "$KEYS/sa.json" >"$KEYS/garbled.json" &&
	corrupt "$KEYS/garbled.json" "service-account key '\''$KEYS/garbled.json'\'': field '\''private_key'\'' is not a PEM private key" &&
	jq "del(.client_email)" "$KEYS/sa.json" >"$KEYS/noemail.json" &&
	corrupt "$KEYS/noemail.json" "service-account key '\''$KEYS/noemail.json'\'': field '\''client_email'\'' is missing" &&
	corrupt "$KEYS/nonexistent.json" "service-account key: open '\''$KEYS/nonexistent.json'\''" &&
	test "$before" = "$(objects "$B7")"
'

test_done
