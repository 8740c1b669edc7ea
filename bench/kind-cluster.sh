#!/usr/bin/env bash
# Real Kubernetes figures: the kind node image build (imgforge, the shipped config/debian-13.json,
# the from-source mirror of hack/kube-from-source.sh at the shipped versions) and
# `kind create cluster --image` until every node is Ready and every pod is Ready (the image's
# default CNI: flannel from the mirror, as in t1500). IMGF_KUBE_VERSION picks another version. Then kind's own
# `kind build node-image --type file` from the same bits, where this machine allows it: the
# attempt and its outcome are printed either way.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-kind-cluster.XXXXXX)
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
TAG=imgforge-bench/kind-node:real
NAME=imgf-bench
FIX=$TEST_CACHE/fixtures
# The harness's helpers, without its test bookkeeping.
say() { printf '# %s\n' "$*"; }
die() { echo "bench: $*" >&2; exit 1; }
at_exit() { :; }
. "$TOP/tests/lib/fixtures.sh"
. "$TOP/tests/lib/base-image.sh"
. "$TOP/tests/lib/kube.sh"
cleanup() {
	kind_cmd delete cluster --name "$NAME" >/dev/null 2>&1 || true
	docker rmi -f "$TAG" >/dev/null 2>&1 || true
	fixtures_stop "$FIX" >/dev/null 2>&1 || true
	bash "$TOP/hack/kube-mirror-serve.sh" --stop "$KUBE_DIR" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
if ! fixtures_build "$FIX" >/dev/null || ! fixtures_serve "$FIX" >/dev/null; then
	die "fixtures failed"
fi
BASE=$(base_image_ensure "" trixie) || die "base image failed"
make -s -C "$TOP"
kube_up
K="$KUBECTL --kubeconfig $TMP/kubeconfig"
now() { date +%s.%N; }
secs() { printf "%.1f" "$(echo "$2 - $1" | bc)"; }

echo "== imgforge build --only kind-node (cold download cache)"
t0=$(now)
IMGFORGE_CACHE_DIR=$TMP/cache "$TOP/imgforge" build --only kind-node --var-file "$KUBE_BUILD_VARS" \
	--var docker_base_image="$BASE" --var kind_node_image="$TAG" --output-dir "$TMP/out" \
	"$TOP/config/debian-13.json" >"$TMP/build.log" 2>&1 || { tail -n 30 "$TMP/build.log"; exit 1; }
t1=$(now)
build=$(secs "$t0" "$t1")
echo "build: $build s; image $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"

echo "== kind create cluster --image $TAG ($KUBERNETES_VERSION, kind $KIND_VERSION) until all nodes and pods are Ready"
kube_kind_config 0 >"$TMP/kind.yaml"
t2=$(now)
kind_cmd create cluster --name "$NAME" --image "$TAG" --config "$TMP/kind.yaml" \
	--kubeconfig "$TMP/kubeconfig" --wait 0s >"$TMP/create.log" 2>&1 || { cat "$TMP/create.log"; exit 1; }
t3=$(now)
$K wait --for=condition=Ready nodes --all --timeout=300s >/dev/null
t4=$(now)
$K wait --for=condition=Ready pods --all -A --timeout=300s >/dev/null
t5=$(now)
echo "kind create cluster: $(secs "$t2" "$t3") s; node Ready: $(secs "$t2" "$t4") s; all pods Ready: $(secs "$t2" "$t5") s"
t6=$(now)
kind_cmd delete cluster --name "$NAME" >/dev/null 2>&1
echo "kind delete cluster: $(secs "$t6" "$(now)") s"

echo "== kind build node-image --type file, from the same bits"
# kind wants a kubernetes-server-linux-ARCH.tar.gz: kubernetes/server/bin with the binaries,
# the image tars and their .docker_tag files, and kubernetes/version.
srv=$TMP/srv/kubernetes/server/bin
mkdir -p "$srv"
bin=$KUBE_DIR/release/$KUBERNETES_VERSION/bin/linux/amd64
for f in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
	cp "$bin/$f" "$srv/"
done
for f in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
	cp "$bin/$f.tar" "$srv/" && echo "$KUBERNETES_VERSION" >"$srv/$f.docker_tag"
done
echo "$KUBERNETES_VERSION" >"$TMP/srv/kubernetes/version"
tar -C "$TMP/srv" -czf "$TMP/kubernetes-server-linux-amd64.tar.gz" kubernetes
t7=$(now)
if kind_cmd build node-image --type file "$TMP/kubernetes-server-linux-amd64.tar.gz" \
	--image imgforge-bench/kind-own:real >"$TMP/kind-build.log" 2>&1; then
	t8=$(now)
	echo "kind build node-image: $(secs "$t7" "$t8") s (ratio to imgforge: $(echo "scale=2; ($t8 - $t7) / $build" | bc))"
	docker rmi -f imgforge-bench/kind-own:real >/dev/null 2>&1 || true
else
	echo "kind build node-image could not run here after $(secs "$t7" "$(now)") s; its last words:"
	tail -n 5 "$TMP/kind-build.log" | sed 's/^/  /'
fi
