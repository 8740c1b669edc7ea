#!/usr/bin/env bash
# needs: fixtures containerd root
# The OCI registry client against the fixture registry: an OCI index (platform choice), a
# Docker schema 2 manifest, a nested repository, pins, cache reuse, and the same registry
# behind bearer-token auth with 503s and CDN redirects (tests/unit/test-registry-pull.c
# does the pulls). The OCI layout tars it writes must import into containerd as kind's
# node-image build imports them: `ctr -n k8s.io images import --no-unpack`.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
fixtures_up "registry pulls"
# The shared fixtures' auth proxy may have served other scripts: this one reads its own.
AUTHLOG=$TMP/authproxy.log
at_exit 'kill $(cat "$TMP/authproxy.pids") 2>/dev/null'
fixtures_private_auth_proxy "$FIX" "$AUTHLOG" "$TMP/authproxy.pids" || die "the auth proxy did not come up"
REG=127.0.0.1:$FIXTURE_REGISTRY_PORT
# `make check` builds it (into IMGF_BUILD_DIR, with its flags); standalone runs build it here.
B=${IMGF_BUILD_DIR:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
PULL=$B/tests/test-registry-pull
[ -x "$PULL" ] || make -C "$TOP" -s "B=$B" "$B/tests/test-registry-pull" >"$TMP/make.log" 2>&1 ||
	{ cat "$TMP/make.log"; die "building $PULL failed"; }
IMAGES=$TMP/images

test_expect_success "the client pulls and verifies every kind of image" '
	IMGF_TEST_REGISTRY=$REG IMGF_TEST_AUTH_REGISTRY=127.0.0.1:$FIXTURE_AUTH_REGISTRY_PORT \
		IMGF_TEST_KEEP=$IMAGES "$PULL" >"$TMP/pull.log" 2>&1 || { cat "$TMP/pull.log"; exit 1; }
	cat "$TMP/pull.log"
	grep -qE "^[0-9]+ passed, 0 failed, 0 skipped$" "$TMP/pull.log"
'

test_expect_success "the authenticated pull used an anonymous token, retried a 503 and followed the CDN redirect" '
	grep -qx "GET /token?service=imgforge-fixture&scope=repository%3Apause%3Apull 200" "$AUTHLOG"
	grep -qE "^GET /v2/pause/blobs/sha256:[0-9a-f]{64} 503$" "$AUTHLOG"
	grep -qE "^GET /cdn/v2/pause/blobs/sha256:[0-9a-f]{64} 200$" "$AUTHLOG"
	! grep -q " 400$" "$AUTHLOG" || exit 1
'

test_expect_success "the layout tar holds exactly oci-layout, index.json and the blobs" '
	tar -tf "$IMAGES/pause.tar" | grep -v "/$" | sed "s|blobs/sha256/[0-9a-f]\{64\}$|BLOB|" | LC_ALL=C sort | uniq -c >"$TMP/members"
	printf "%7d %s\n" 3 BLOB 1 index.json 1 oci-layout | diff -u - "$TMP/members"
	tar -xOf "$IMAGES/pause.tar" index.json | jq -e --arg n "$REG/pause:3.10" "
		.schemaVersion == 2 and (.manifests | length) == 1 and
		.manifests[0].annotations[\"io.containerd.image.name\"] == \$n and
		.manifests[0].annotations[\"org.opencontainers.image.ref.name\"] == \"3.10\""
'

if ! require_cmd containerd || ! require_cmd ctr || ! require_cmd jq || [ "$(id -u)" != 0 ]; then
	test_skip "ctr images import of the pulled tars" "needs containerd, ctr, jq and root"
	test_done
fi

# A private containerd: its own root, state and socket; no CRI plugin (nothing runs).
CD=$TMP/containerd
mkdir -p "$CD"
cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CD/sock"
[ttrpc]
  address = "$CD/sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
containerd --config "$CD/config.toml" </dev/null >"$CD/log" 2>&1 &
CD_PID=$!
at_exit "kill $CD_PID; wait $CD_PID"
ctr() { command ctr --address "$CD/sock" --namespace k8s.io "$@"; }
for _ in $(seq 100); do
	ctr version >/dev/null 2>&1 && break
	sleep 0.1
done

test_expect_success "a private containerd is up" '
	ctr version || { tail -n 20 "$CD/log"; exit 1; }
'

# name, tar, then the manifest digest containerd must record
imported() {
	local name=$1 tar=$2 want
	want=$(tar -xOf "$tar" index.json | jq -r ".manifests[0].digest")
	ctr images ls "name==$name" | awk -v n="$name" -v d="$want" \
		'NR > 1 && $1 == n && $3 == d { found = 1 } END { exit !found }'
}

test_expect_success "ctr imports each layout with --no-unpack" '
	for t in pause etcd coredns kindnetd-1; do
		ctr images import --no-unpack "$IMAGES/$t.tar"
	done
'

test_expect_success "ctr lists the images by their full names and manifest digests" '
	ctr images ls -q | tee "$TMP/ls"
	grep -qx "$REG/pause:3.10" "$TMP/ls"
	grep -qx "$REG/etcd:3.5.15-0" "$TMP/ls"
	grep -qx "$REG/coredns/coredns:v1.11.3" "$TMP/ls"
	grep -qx "$REG/kindest/kindnetd:v20241108-5c6d2daf" "$TMP/ls"
	imported "$REG/pause:3.10" "$IMAGES/pause.tar"
	imported "$REG/etcd:3.5.15-0" "$IMAGES/etcd.tar"
	imported "$REG/coredns/coredns:v1.11.3" "$IMAGES/coredns.tar"
'

test_expect_success "containerd has every blob of the imported images" '
	for t in pause etcd coredns; do
		for b in $(tar -tf "$IMAGES/$t.tar" | sed -n "s|^blobs/sha256/\([0-9a-f]\{64\}\)$|\1|p"); do
			ctr content get "sha256:$b" | sha256sum | grep -q "^$b "
		done
	done
'

test_done
