#!/usr/bin/env bash
# needs: docker go fixtures
# Kubernetes from a server tarball, and bad Kubernetes sources. A kubernetes-server-linux-amd64
# .tar.gz made of the from-source mirror's files (the upstream layout: kubernetes/server/bin/NAME)
# builds a kind node image by file:// URL with its .sha256 beside it; only the needed members are
# taken. A tarball without kubelet, a local directory without kubelet, an unknown source type, a
# local binary whose version disagrees with kubernetes_semver and a dynamically linked binary to
# make an image of each fail in `validate` or before any container exists, naming what was
# expected. No binary from a tarball or local build runs on the host: versions are read from
# the files (the Go build information, or the linker's -X stamp of a -trimpath build). (A local
# build booting a real cluster is t1520.)
. "$(dirname "$0")/../lib/harness.sh"
. "$TOP/tests/lib/kube.sh"
docker_up "Kubernetes sources"
fixtures_up "Kubernetes sources"
require_cmd go || {
	test_skip "Kubernetes sources" "no Go toolchain to build Kubernetes"
	test_done
}
kube_up
export IMGFORGE_CACHE_DIR=$TMP/cache
TAG=imgforge-test/kind-node:t1530-$$
at_exit "docker rmi -f $TAG"
REL=$KUBE_DIR/release/$KUBE_VERSION/bin/linux/amd64
MEMBERS="kubeadm kubelet kubectl kube-apiserver.tar kube-controller-manager.tar kube-scheduler.tar kube-proxy.tar"

# A server tarball of the mirror's files (+ the rest of a real one's members, as stand-ins).
make_tarball() { # OUT MEMBERS...
	local out=$1 d=$TMP/tarball-tree m
	shift
	rm -rf "$d" && mkdir -p "$d/kubernetes/server/bin" "$d/kubernetes/addons" &&
		echo "stand-in" >"$d/kubernetes/LICENSES" &&
		for m in "$@"; do ln -s "$REL/$m" "$d/kubernetes/server/bin/$m"; done &&
		tar -C "$d" -chf - kubernetes | gzip -1 >"$out" &&
		(cd "$(dirname "$out")" && sha256sum "$(basename "$out")" >"$out.sha256")
}

build() { # more arguments...
	"$IMGF" build --only kind-node --var-file "$KUBE_BUILD_VARS" \
		--var docker_base_image="$BASE" --var kind_node_image="$TAG" \
		--output-dir "$TMP/output" "$@" "$TOP/config/debian-12.json"
}

no_build_container() {
	test -z "$(docker ps -aq --filter label=io.imgforge.build=kind-node)" &&
		test ! -e "$TMP/output/debian-12+kube-$KUBE_VERSION"
}

test_expect_success "a kind node image from a server tarball by URL, checksum beside it" '
	mkdir -p "$TMP/dl" &&
	make_tarball "$TMP/dl/kubernetes-server-linux-amd64.tar.gz" $MEMBERS &&
	build --var kubernetes_source=tarball \
		--var kubernetes_tarball="file://$TMP/dl/kubernetes-server-linux-amd64.tar.gz" \
		>"$TMP/build.log" 2>&1 || { tail -n 40 "$TMP/build.log"; exit 1; }
	grep -F "kubernetes: 3 file(s) from kubernetes-server-linux-amd64.tar.gz, nothing else unpacked" "$TMP/build.log" &&
	grep -F "images: 4 file(s) from kubernetes-server-linux-amd64.tar.gz, nothing else unpacked" "$TMP/build.log" &&
	for b in kubeadm kubelet kubectl; do
		grep -F "kubernetes: $b: version $KUBE_VERSION (its -X version stamp" "$TMP/build.log" &&
			grep -F "read from the file, not run)" "$TMP/build.log" || { echo "$b not read"; exit 1; }
	done &&
	for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
		grep -q "registry.k8s.io/$c:$KUBE_VERSION " "$TMP/build.log" || { echo "no $c image"; exit 1; }
	done &&
	test "$(docker run --rm --entrypoint kubeadm "$TAG" version -o short)" = "$KUBE_VERSION" &&
	m=$TMP/output/debian-12+kube-$KUBE_VERSION/manifest.json &&
	want=$(cut -d" " -f1 "$TMP/dl/kubernetes-server-linux-amd64.tar.gz.sha256") &&
	jq -e --arg s "$want" "[.builds[].inputs[] | select(.name == \"kubernetes-server\" and .sha256 == \$s and (.url | startswith(\"file://\")))] | length == 2" "$m"
'

test_expect_success "a tarball without kubelet fails before any container, naming the tarball and the member" '
	docker rmi -f "$TAG" >/dev/null 2>&1; rm -rf "$TMP/output"
	mkdir -p "$TMP/bad" &&
	make_tarball "$TMP/bad/kubernetes-server-linux-amd64.tar.gz" kubeadm kubectl kube-apiserver.tar &&
	expect_exit 1 build --var kubernetes_source=tarball \
		--var kubernetes_tarball="$TMP/bad/kubernetes-server-linux-amd64.tar.gz" &&
	expect_err "kubelet" && expect_err "not found" &&
	expect_err "tarball '"'"'$TMP/bad/kubernetes-server-linux-amd64.tar.gz'"'"'" &&
	expect_err "kubernetes/server/bin/NAME" &&
	no_build_container
'

test_expect_success "an unknown source type fails validate, naming the value and the known ones" '
	expect_exit 1 "$IMGF" validate --var kubernetes_source=git "$TOP/config/debian-12.json" &&
	expect_err "kubernetes_source: unknown source '"'"'git'"'"' (known: '"'"'release'"'"', '"'"'tarball'"'"', '"'"'local'"'"')"
'

test_expect_success "a local directory without kubelet fails validate, naming the directory and the binary" '
	mkdir -p "$TMP/nokubelet/_output/bin" &&
	for b in kubeadm kubectl; do ln -s "$REL/$b" "$TMP/nokubelet/_output/bin/$b"; done &&
	expect_exit 1 "$IMGF" validate --var kubernetes_source=local \
		--var kubernetes_local_dir="$TMP/nokubelet" "$TOP/config/debian-12.json" &&
	expect_err "local_dir: '"'"'$TMP/nokubelet'"'"' has no '"'"'kubelet'"'"'"
'

test_expect_success "a local binary whose version disagrees with kubernetes_semver fails before any container" '
	mkdir -p "$TMP/local/_output/bin" &&
	for b in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
		ln -s "$REL/$b" "$TMP/local/_output/bin/$b"
	done &&
	expect_exit 1 build --var kubernetes_source=local --var kubernetes_local_dir="$TMP/local" \
		--var kubernetes_semver=v1.36.99 &&
	expect_err "kubeadm" &&
	expect_err "carries version '"'"'$KUBE_VERSION'"'"' (its -X version stamp), expected '"'"'v1.36.99'"'"' (kubernetes_semver)" &&
	no_build_container
'

test_expect_success "arch=arm64: every Kubernetes input is the arm64 one, and an amd64 local binary is refused" '
	"$IMGF" inspect --json --only kind-node --var arch=arm64 --var kubernetes_source=tarball \
		"$TOP/config/debian-12.json" >"$TMP/arm64.json" &&
	jq -e ".images[0].provisioners[] | select(.type == \"kubernetes\") | .source == \"https://dl.k8s.io/release/$KUBE_VERSION/bin/linux/arm64\" and .tarball == \"https://dl.k8s.io/release/$KUBE_VERSION/kubernetes-server-linux-arm64.tar.gz\"" "$TMP/arm64.json" &&
	jq -e ".variables.containerd_url.value | endswith(\"linux-arm64.tar.gz\")" "$TMP/arm64.json" &&
	jq -e ".variables.kubernetes_cni_url.value | contains(\"linux-arm64\")" "$TMP/arm64.json" &&
	jq -e ".variables.runc_url.value | endswith(\"runc.arm64\")" "$TMP/arm64.json" &&
	expect_exit 1 build --var kubernetes_source=local --var kubernetes_local_dir="$TMP/local" --var arch=arm64 &&
	expect_err "$TMP/local/_output/bin/kubeadm'"'"' is built for amd64, expected arm64" &&
	no_build_container
'

test_expect_success "a dynamically linked binary is refused for an image made of it alone" '
	rm -f "$TMP/local/_output/bin/kube-scheduler" &&
	cp /bin/true "$TMP/local/_output/bin/kube-scheduler" &&
	expect_exit 1 build --var kubernetes_source=local --var kubernetes_local_dir="$TMP/local" &&
	expect_err "kube-scheduler" && expect_err "is dynamically linked" &&
	expect_err "CGO_ENABLED=0" &&
	no_build_container
'

test_done
