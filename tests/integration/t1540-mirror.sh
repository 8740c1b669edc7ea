#!/usr/bin/env bash
# needs: docker go fixtures
# imgforge mirror (air-gapped builds): every input a kind node build uses (containerd, runc, CNI
# from the fixture mirror over HTTP; Kubernetes binaries and crictl from the from-source tree;
# registry images from the loopback registry) is fetched and verified into DIR, with DIR/vars.json
# pointing every source variable at it. The distro packages too: the mirror resolves them on the
# base as `imgforge lock` does, keeps every .deb in DIR/debs (an apt repository imgforge
# indexes) with DIR/imgforge.lock, and vars.json turns the build containers' network off. With
# the upstream servers STOPPED and an empty download cache, a build with that var file succeeds
# and records the same input digests, the packages (kind deb) included, as a networked build. A second mirror run fetches nothing. The mirror runs no kubeadm on the host: kubeadm's
# pause, etcd and CoreDNS are named (a mirror without them fails, naming the variables), and
# the build from the mirror checks them against its target's kubeadm. containerd is given
# layouts written from the mirror's verified blobs, and holds each verified digest under its
# name after the import.
. "$(dirname "$0")/../lib/harness.sh"
. "$TOP/tests/lib/kube.sh"
docker_up "imgforge mirror"
fixtures_up "imgforge mirror"
require_cmd go || {
	test_skip "imgforge mirror" "no Go toolchain to build Kubernetes"
	test_done
}
kube_up
# containerd, runc and the CNI plugins over HTTP (the fixture mirror's), so the mirror fetches
# from a server that is stopped later; the rest from the from-source mirror. (No node boots
# here: t1500 and t1520 boot the from-source containerd and runc.)
jq -s '{variables: (.[1].variables + (.[0].variables | with_entries(select(.key |
		test("^(containerd|runc|kubernetes_cni)_")))))}' \
	"$FIX/vars.json" "$KUBE_BUILD_VARS" >"$TMP/kube-vars.json" || die "jq failed"
KUBE_BUILD_VARS=$TMP/kube-vars.json
TAG=imgforge-test/kind-node:t1540-$$
at_exit "docker rmi -f $TAG"
M=$TMP/mirror

build() { # OUTPUT-DIR more arguments... (OFFLINE=1: in a network namespace of its own)
	local out=$1 pre=()
	shift
	[ -z "${OFFLINE:-}" ] || pre=(unshare -n)
	"${pre[@]}" "$IMGF" build --only kind-node --var-file "$KUBE_BUILD_VARS" "$@" \
		--var docker_base_image="$BASE" --var kind_node_image="$TAG" \
		--output-dir "$out" "$TOP/config/debian-12.json"
}

# kubeadm's pause, etcd and CoreDNS (what hack/kube-from-source.sh built), for the mirror, and
# the base the mirror resolves the distro packages on.
KUBEADM_IMAGES=(--var docker_base_image="$BASE" --var "pause_image=registry.k8s.io/pause:$PAUSE_TAG"
	--var "etcd_image=registry.k8s.io/etcd:$ETCD_TAG"
	--var "coredns_image=registry.k8s.io/coredns/coredns:$COREDNS_VERSION")

# name sha256 of every input a manifest records, sorted.
digests() {
	jq -r '.builds[].inputs[] | "\(.name) \(.sha256)"' "$1"/*/manifest.json | sort
}

test_expect_success "a networked build, for reference" '
	IMGFORGE_CACHE_DIR=$TMP/cache-online build "$TMP/online" >"$TMP/online.log" 2>&1 ||
		{ tail -n 40 "$TMP/online.log"; exit 1; }
	docker rmi -f "$TAG" >/dev/null
'

test_expect_success "a mirror without pause, etcd and CoreDNS named fails naming the variables, running no kubeadm" '
	IMGFORGE_CACHE_DIR=$TMP/cache-nokubeadm expect_exit 1 "$IMGF" mirror --only kind-node \
		--var-file "$KUBE_BUILD_VARS" "$TOP/config/debian-12.json" "$TMP/m0" &&
	expect_err "set pause_image, etcd_image, coredns_image to what \`kubeadm config images list --kubernetes-version $KUBE_VERSION\` prints" &&
	expect_err "runs no downloaded binary on the host"
'

test_expect_success "imgforge mirror fetches and verifies every input into DIR and writes vars.json" '
	IMGFORGE_CACHE_DIR=$TMP/cache-mirror "$IMGF" mirror --only kind-node "${KUBEADM_IMAGES[@]}" \
		--var-file "$KUBE_BUILD_VARS" "$TOP/config/debian-12.json" "$M" >"$TMP/m1.log" 2>&1 ||
		{ cat "$TMP/m1.log"; exit 1; }
	cat "$TMP/m1.log" &&
	grep -E "mirror: [1-9][0-9]* fetched, 0 already there" "$TMP/m1.log" &&
	jq -e ".variables.kubernetes_http_source | startswith(\"file://$M/files/\")" "$M/vars.json" &&
	jq -e ".variables.containerd_url | startswith(\"file://$M/files/127.0.0.1\")" "$M/vars.json" &&
	jq -r ".variables.registry_mirrors" "$M/vars.json" | jq -e ".\"registry.k8s.io\" == \"file://$M/images/registry.k8s.io\"" &&
	test -s "$M/files/${KUBE_DIR#/}/release/$KUBE_VERSION/bin/linux/amd64/kubeadm" &&
	test -s "$M/files/${KUBE_DIR#/}/release/$KUBE_VERSION/bin/linux/amd64/kubeadm.sha256" &&
	test -s "$M/images/registry.k8s.io/etcd/$ETCD_TAG.tar" &&
	jq -e ".variables.packages_lock == \"$M/imgforge.lock\" and .variables.packages_mirror == \"file://$M/debs\"" "$M/vars.json" &&
	jq -e ".variables.docker_network == \"none\"" "$M/vars.json" &&
	jq -e ".images[\"kind-node\"].steps[0].packages | length > 0" "$M/imgforge.lock" &&
	test "$(grep -c "^Package: " "$M/debs/Packages")" = \
		"$(jq ".images[\"kind-node\"].steps[0].packages | length" "$M/imgforge.lock")"
'

test_expect_success "a second mirror run fetches nothing" '
	IMGFORGE_CACHE_DIR=$TMP/cache-mirror2 "$IMGF" mirror --only kind-node "${KUBEADM_IMAGES[@]}" \
		--var-file "$KUBE_BUILD_VARS" "$TOP/config/debian-12.json" "$M" >"$TMP/m2.log" 2>&1 ||
		{ cat "$TMP/m2.log"; exit 1; }
	grep -E "mirror: 0 fetched, [1-9][0-9]* already there" "$TMP/m2.log" &&
	! test -e "$TMP/cache-mirror2/downloads/sha256"
'

# The distro packages a manifest records (kind deb), every field, sorted.
debs() {
	jq -S "[.builds[].inputs[] | select(.kind == \"deb\")] | sort_by(.name)" "$1"/*/manifest.json
}

# No network at all: imgforge runs in a network namespace of its own (unshare -n: only
# loopback, and nothing listens there), so no upstream server, the test ones included, is
# reachable; the Docker Engine is a socket path. The servers keep running for other scripts.
test_expect_success "with no upstream server reachable (unshare -n), the build from the mirror gives the same input digests" '
	curl -sS -m 5 -o /dev/null "http://127.0.0.1:$FIXTURE_HTTP_PORT/" &&
	curl -sS -m 5 -o /dev/null "http://$KUBE_REG/v2/" &&
	! unshare -n curl -sS -m 5 -o /dev/null "http://127.0.0.1:$FIXTURE_HTTP_PORT/" 2>/dev/null &&
	! unshare -n curl -sS -m 5 -o /dev/null "http://$KUBE_REG/v2/" 2>/dev/null &&
	IMGFORGE_CACHE_DIR=$TMP/cache-offline OFFLINE=1 build "$TMP/offline" \
		--var-file "$M/vars.json" >"$TMP/offline.log" 2>&1 || { tail -n 40 "$TMP/offline.log"; exit 1; }
	grep -F "from the mirror'"'"'s layout $M/images/registry.k8s.io/etcd/$ETCD_TAG.tar" "$TMP/offline.log" &&
	grep -E "containerd holds registry.k8s.io/etcd:$ETCD_TAG at sha256:[0-9a-f]{64}, as verified" "$TMP/offline.log" &&
	digests "$TMP/online" >"$TMP/d-online" && digests "$TMP/offline" >"$TMP/d-offline" &&
	test "$(wc -l <"$TMP/d-online")" -ge 10 &&
	diff "$TMP/d-online" "$TMP/d-offline" &&
	debs "$TMP/online" >"$TMP/debs-online" && debs "$TMP/offline" >"$TMP/debs-offline" &&
	test "$(jq length "$TMP/debs-online")" -gt 0 &&
	diff "$TMP/debs-online" "$TMP/debs-offline" &&
	grep -q "locked package(s) installed, each verified by sha256 before" "$TMP/offline.log" &&
	test "$(docker run --rm --network none --entrypoint kubeadm "$TAG" version -o short)" = "$KUBE_VERSION"
'

test_expect_success "a tampered blob in the mirror is refused, naming the layout and the blob" '
	cp "$M/images/registry.k8s.io/pause/$PAUSE_TAG.tar" "$TMP/pause.orig" &&
	python3 - "$M/images/registry.k8s.io/pause/$PAUSE_TAG.tar" <<PY
import sys, tarfile, io
p = sys.argv[1]
src = tarfile.open(p + "", "r")
members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
src.close()
out = tarfile.open(p, "w")
for m, data in members:
    if data is not None and m.name.startswith("blobs/sha256/") and len(data) > 1000:
        data = data[:-1] + bytes([data[-1] ^ 1])
    if data is not None:
        m.size = len(data)
        out.addfile(m, io.BytesIO(data))
    else:
        out.addfile(m)
out.close()
PY
	expect_exit 1 build "$TMP/tampered" --var-file "$M/vars.json" &&
	expect_err "$M/images/registry.k8s.io/pause/$PAUSE_TAG.tar" && expect_err "does not match its digest" &&
	test -z "$(docker ps -aq --filter label=io.imgforge.build=kind-node)" &&
	cp "$TMP/pause.orig" "$M/images/registry.k8s.io/pause/$PAUSE_TAG.tar"
'

test_done
