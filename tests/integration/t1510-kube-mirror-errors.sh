#!/usr/bin/env bash
# needs: docker go fixtures
# Bad input around the from-source mirror: a Kubernetes version the Go module proxy does not
# serve fails hack/kube-from-source.sh at once, naming the module and the version (so does a
# containerd, runc or CNI version given to it); a mirror
# missing one binary fails imgforge's build before any container exists, naming the URL and
# the variable it came from.
. "$(dirname "$0")/../lib/harness.sh"
. "$TOP/tests/lib/kube.sh"
docker_up "from-source mirror errors"
fixtures_up "from-source mirror errors"
require_cmd go || {
	test_skip "from-source mirror errors" "no Go toolchain to build Kubernetes"
	test_done
}

test_expect_success "a version the module proxy does not serve fails early, naming module and version" '
	expect_exit 1 bash "$TOP/hack/kube-from-source.sh" --only kubernetes v1.31.99 "$TMP/kfs" &&
	expect_err "the Go module proxy does not serve module '"'"'k8s.io/kubernetes'"'"' version '"'"'v1.31.99'"'"'" &&
	test ! -e "$TMP/kfs/release/v1.31.99/bin/linux/amd64/kubeadm"
'

test_expect_success "every version the harness builds is a parameter: an unserved containerd, runc or CNI fails at once, naming the module" '
	for p in "containerd KFS_CONTAINERD=v2.99.0 github.com/containerd/containerd/v2 v2.99.0" \
		"runc KFS_RUNC=1.99.0 github.com/opencontainers/runc v1.99.0" \
		"cni KFS_CNI=v1.99.0 github.com/containernetworking/plugins v1.99.0"; do
		set -- $p
		expect_exit 1 env "$2" bash "$TOP/hack/kube-from-source.sh" --only "$1" "$KUBE_VERSION" "$TMP/kfs-$1" &&
		expect_err "the Go module proxy does not serve module '"'"'$3'"'"' version '"'"'$4'"'"'" || exit 1
	done
'

test_expect_success "a version that is not a release version is refused before anything is fetched" '
	expect_exit 1 bash "$TOP/hack/kube-from-source.sh" latest "$TMP/kfs2" &&
	expect_err "version '"'"'latest'"'"' is not a Kubernetes release version" &&
	test ! -e "$TMP/kfs2"
'

kube_up
export IMGFORGE_CACHE_DIR=$TMP/cache

test_expect_success "a mirror missing kubelet fails before the build container exists" '
	# The mirror with every file but kubelet (links, so nothing is copied).
	v=$KUBE_VERSION
	src=$KUBE_DIR/release/$v/bin/linux/amd64
	dst=$TMP/partial/release/$v/bin/linux/amd64
	mkdir -p "$dst" &&
	for f in "$src"/*; do
		case $(basename "$f") in kubelet | kubelet.sha256) continue ;; esac
		ln -s "$f" "$dst/"
	done &&
	before=$(docker ps -aq | wc -l) &&
	expect_exit 1 "$IMGF" build --only kind-node --var-file "$KUBE_BUILD_VARS" \
		--var kubernetes_http_source="file://$TMP/partial/release" \
		--var docker_base_image="$BASE" --var kind_node_image=imgforge-test/kind-node:t1510-$$ \
		--output-dir "$TMP/output" "$TOP/config/debian-12.json" &&
	expect_err "file://$TMP/partial/release/$v/bin/linux/amd64/kubelet" &&
	expect_err "kubernetes_http_source" &&
	test "$(docker ps -aq | wc -l)" = "$before" &&
	test -z "$(docker ps -aq --filter label=io.imgforge.build=kind-node)" &&
	test ! -e "$TMP/output/debian-12+kube-$v" &&
	! grep -q "build container" "$TMP/err"
'

test_done
