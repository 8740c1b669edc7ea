#!/usr/bin/env bash
# needs: docker go fixtures root
# An arm64 kind node image, built and booted on this amd64 machine: arm64 binaries run through
# binfmt_misc and Debian's qemu-user-static. `--var arch=arm64` selects every input: Debian's
# arm64 containerd, runc and CNI plugins (repacked as upstream's linux-arm64 release files and
# served on loopback, their URLs made from the config's {{ arch }} templates), Kubernetes
# cross-built from source for arm64 as a local build (imgforge makes the control-plane images
# from its binaries), etcd/CoreDNS/pause/storage images for arm64 from a file:// mirror, and an
# arm64 debootstrap base. The image is linux/arm64, the manifest says so, its binaries are
# aarch64, and it boots to systemd `running` with containerd active and the images preloaded
# (with one run-time drop-in for what qemu-user cannot emulate, below).
# An amd64 base, or an amd64 image in the mirror, for an arm64 build is refused.
#
# Then one config, two platforms, one tag (issue 20): the build pushes the arm64 image, and the
# amd64 node image of the same config/debian-12.json (real Kubernetes from the from-source
# mirror, tests/lib/kube.sh), to a real registry (Debian's docker-registry); `imgforge
# push-index` joins them under one tag; a second, clean Docker Engine (its own data root and
# socket) pulls each platform by that tag and gets the image IDs this engine has; and kind boots
# the amd64 one on the second engine, to a Ready node with every pod Ready.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
. "$TOP/tests/lib/kube.sh"
. "$TOP/tests/lib/arm64.sh"
docker_up "arm64 kind node image"
if ! why=$(arm64_usable); then
	test_skip "arm64 kind node image" "this machine cannot run arm64 binaries: $why"
	test_done
fi
require_cmd go || {
	test_skip "arm64 kind node image" "no Go toolchain to build Kubernetes"
	test_done
}
for c in docker-registry dockerd ip jq curl; do
	require_cmd "$c" || {
		test_skip "arm64 kind node image" "'$c' is not installed (hack/install-deps.sh)"
		test_done
	}
done
. "$TOP/tests/lib/registry.sh"
# The amd64 half: the from-source mirror (Kubernetes and the rest, amd64), served on loopback.
kube_up
KUBE_AMD64_VARS=$KUBE_BUILD_VARS
BASE12=$(base_image_ensure "" bookworm) || die "could not make the bookworm base image"
arm64_kube_up || die "hack/kube-from-source.sh --arch arm64 failed"
arm64_fixtures_up "$TEST_CACHE/arm64-fixtures" || die "could not make the arm64 fixtures"
BASE64=$(base_image_ensure arm64) || die "could not make the arm64 base image"
K=$KUBE_ARM64_DIR
# shellcheck disable=SC1091
. "$K/versions.env"
export IMGFORGE_CACHE_DIR=$TMP/cache
# No credentials: the registry is anonymous.
export DOCKER_CONFIG=$TMP/no-docker-config
TAG=imgforge-test/kind-node:t1550-$$
TAG64=imgforge-test/kind-node:t1550-amd64-$$
NODE=imgf-t1550-$$
at_exit "docker rm -f $NODE"
at_exit "docker rmi -f $TAG $TAG64"
start_registry reg
REG=127.0.0.1:$PORT
REPO=$REG/kind/node

# Kubernetes as an arm64 `make` leaves it: binaries only, no image tars.
mkdir -p "$TMP/kube/_output/local/bin/linux/arm64"
for b in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
	ln -s "$K/release/$KUBE_VERSION/bin/linux/arm64/$b" "$TMP/kube/_output/local/bin/linux/arm64/$b"
done

# The arm64 images as `imgforge mirror` lays them out: DIR/images/REGISTRY/REPOSITORY/TAG.tar.
M=$TMP/mirror/images
layout_tar() { # LAYOUT OUT
	mkdir -p "$(dirname "$2")" && tar -C "$1" -cf "$2" .
}
layout_tar "$K/oci/pause" "$M/registry.k8s.io/pause/$PAUSE_TAG.tar"
layout_tar "$K/oci/etcd" "$M/registry.k8s.io/etcd/$ETCD_TAG.tar"
layout_tar "$K/oci/coredns" "$M/registry.k8s.io/coredns/coredns/$COREDNS_VERSION.tar"
layout_tar "$K/oci/local-path-provisioner" "$M/docker.io/kindest/local-path-provisioner/$LOCAL_PATH_TAG.tar"
layout_tar "$K/oci/local-path-helper" "$M/docker.io/kindest/local-path-helper/$LOCAL_PATH_HELPER_TAG.tar"
# kindnetd cannot be built here (t1500 says why) and never runs in these tests: a stand-in.
KINDNETD_TAG=$(jq -r .variables.kindnetd_image "$TOP/config/common.json") && KINDNETD_TAG=${KINDNETD_TAG##*:}
python3 "$TOP/tests/lib/mkimage.py" --out "$TMP/kindnetd" --tag "$KINDNETD_TAG" \
	--name "docker.io/kindest/kindnetd:$KINDNETD_TAG" --arch arm64 >/dev/null
layout_tar "$TMP/kindnetd" "$M/docker.io/kindest/kindnetd/$KINDNETD_TAG.tar"

U=$ARM64_HTTP
cat >"$TMP/vars.json" <<EOF
{
  "variables": {
    "arch": "arm64",
    "containerd_version": "$ARM64_CONTAINERD_VERSION",
    "containerd_url": "$U/containerd/v{{ containerd_version }}/containerd-{{ containerd_version }}-linux-{{ arch }}.tar.gz",
    "containerd_checksum": "file:$U/containerd/v{{ containerd_version }}/containerd-{{ containerd_version }}-linux-{{ arch }}.tar.gz.sha256sum",
    "runc_version": "$ARM64_RUNC_VERSION",
    "runc_url": "$U/runc/v{{ runc_version }}/runc.{{ arch }}",
    "runc_checksum": "file:$U/runc/v{{ runc_version }}/runc.sha256sum",
    "kubernetes_cni_semver": "v$ARM64_CNI_VERSION",
    "kubernetes_cni_url": "$U/cni/{{ kubernetes_cni_semver }}/cni-plugins-linux-{{ arch }}-{{ kubernetes_cni_semver }}.tgz",
    "kubernetes_cni_checksum": "$U/cni/{{ kubernetes_cni_semver }}/cni-plugins-linux-{{ arch }}-{{ kubernetes_cni_semver }}.tgz.sha256",
    "crictl_version": "${CRICTL_VERSION#v}",
    "crictl_url": "file://$K/crictl/v{{ crictl_version }}/crictl-v{{ crictl_version }}-linux-{{ arch }}.tar.gz",
    "crictl_checksum": "file://$K/crictl/v{{ crictl_version }}/crictl-v{{ crictl_version }}-linux-{{ arch }}.tar.gz.sha256",
    "kubernetes_semver": "$KUBE_VERSION",
    "kubernetes_source": "local",
    "kubernetes_local_dir": "$TMP/kube",
    "registry_mirrors": "{\"registry.k8s.io\": \"file://$M/registry.k8s.io\", \"docker.io\": \"file://$M/docker.io\"}",
    "docker_base_image": "$BASE64",
    "kind_node_image": "$TAG"
  }
}
EOF

# The shipped debian-12 config with kind-node's post-processors plus a push to {{ push_ref }}
# (the push post-processor, docs/push.md).
jq '.post_processors += [{"type": "push", "ref": "{{ push_ref }}"}]' \
	"$TOP/images/kind-node.json" >"$TMP/kind-node-push.json"
printf '{"include": ["%s"], "variables": {"push_ref": ""}, "images": ["kind-node-push.json"]}\n' \
	"$TOP/config/debian-12.json" >"$TMP/push.json"
build() { # more arguments...
	"$IMGF" build --only kind-node --var-file "$TMP/vars.json" --output-dir "$TMP/output" \
		--var push_ref="$REPO:$KUBE_VERSION-arm64" "$@" "$TMP/push.json"
}

no_build_container() {
	test -z "$(docker ps -aq --filter label=io.imgforge.build=kind-node --filter ancestor="$BASE64")" &&
		test ! -e "$TMP/output/debian-12+kube-$KUBE_VERSION"
}

test_expect_success "an amd64 base image for an arm64 build is refused, naming both platforms" '
	expect_exit 1 build --var docker_base_image="$BASE" &&
	expect_err "base image '"'"'$BASE'"'"' is linux/amd64, the build is for linux/arm64 (the '"'"'arch'"'"' variable)" &&
	test -z "$(docker ps -aq --filter label=io.imgforge.build=kind-node --filter ancestor="$BASE")" &&
	test ! -e "$TMP/output/debian-12+kube-$KUBE_VERSION"
'

test_expect_success "an amd64 image in the arm64 mirror is refused before any container" '
	mv "$M/registry.k8s.io/pause/$PAUSE_TAG.tar" "$TMP/pause-arm64.tar" &&
	python3 "$TOP/tests/lib/mkimage.py" --out "$TMP/pause-amd64" --tag "$PAUSE_TAG" \
		--name "registry.k8s.io/pause:$PAUSE_TAG" --arch amd64 >/dev/null &&
	layout_tar "$TMP/pause-amd64" "$M/registry.k8s.io/pause/$PAUSE_TAG.tar" &&
	rc=0
	expect_exit 1 build || rc=1
	mv -f "$TMP/pause-arm64.tar" "$M/registry.k8s.io/pause/$PAUSE_TAG.tar"
	test $rc -eq 0 &&
	expect_err "pause/$PAUSE_TAG.tar'"'"': the image is for linux/amd64, expected linux/arm64" &&
	no_build_container
'

test_expect_success "arch=arm64 builds a linux/arm64 kind node image from arm64 inputs, and pushes it" '
	build >"$TMP/build.log" 2>&1 || { tail -n 60 "$TMP/build.log"; exit 1; }
	test "$(docker image inspect -f "{{.Os}}/{{.Architecture}}" "$TAG")" = linux/arm64 &&
	m=$TMP/output/debian-12+kube-$KUBE_VERSION/manifest.json &&
	jq -e --arg r "$REPO:$KUBE_VERSION-arm64" ".builds[0].pushed[0].ref == \$r" "$m" &&
	jq -e ".builds[0].platform == \"linux/arm64/v8\"" "$m" &&
	jq -e "[.builds[0].inputs[] | select(.name == \"containerd\") | .url | endswith(\"linux-arm64.tar.gz\")] == [true]" "$m" &&
	jq -e "[.builds[0].inputs[] | select(.name == \"runc\") | .url | endswith(\"/runc.arm64\")] == [true]" "$m" &&
	jq -e "[.builds[0].inputs[] | select(.name == \"cni-plugins\") | .url | contains(\"linux-arm64\")] == [true]" "$m" &&
	jq -e "[.builds[0].inputs[] | select(.local == true) | .path | select(contains(\"/linux/arm64/\"))] | length >= 7" "$m" &&
	for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
		grep -q "registry.k8s.io/$c:$KUBE_VERSION" "$TMP/build.log" || { echo "no $c image"; exit 1; }
	done
'

test_expect_success "its binaries are aarch64 and run (through qemu-user)" '
	docker run --rm --entrypoint /bin/sh "$TAG" -c "
		set -e
		test \"\$(uname -m)\" = aarch64
		for b in /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl /usr/local/bin/containerd /usr/local/sbin/runc /usr/local/bin/crictl /opt/cni/bin/ptp /bin/systemctl; do
			test \"\$(od -An -tx1 -j18 -N2 \$b | tr -d \" \")\" = b700 || { echo \"\$b is not aarch64\"; exit 1; }
		done
		kubeadm version -o short
	" >"$TMP/run.log" 2>&1 || { cat "$TMP/run.log"; exit 1; }
	grep -qx "$KUBE_VERSION" "$TMP/run.log"
'

# qemu-user (Debian's 7.2) cannot do what systemd's credential setup does: a unit with
# LoadCredential= fails "Failed to set up credentials: Invalid argument" (243/CREDENTIALS) under
# it, and systemd-tmpfiles-setup.service has one. This run-time drop-in, mounted by the test
# and not in the image, empties that list; a native arm64 host needs none.
printf "[Service]\nLoadCredential=\n" >"$TMP/qemu-user.conf"
test_expect_success "the arm64 image boots unprivileged to systemd running with containerd active" '
	docker run -d --name "$NODE" --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
		--tmpfs /run --tmpfs /tmp -v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns=host \
		-v "$TMP/qemu-user.conf:/etc/systemd/system/systemd-tmpfiles-setup.service.d/10-qemu-user.conf:ro" \
		"$TAG" >/dev/null &&
	state=
	for i in $(seq 1 300); do
		state=$(docker exec "$NODE" systemctl is-system-running 2>/dev/null || true)
		case $state in running|degraded) break ;; esac
		sleep 1
	done
	echo "system state: $state"
	if [ "$state" != running ]; then
		docker exec "$NODE" systemctl --failed --no-pager || true
		docker logs "$NODE" 2>&1 | tail -n 30
		exit 1
	fi
	for i in $(seq 1 60); do
		docker exec "$NODE" systemctl is-active containerd >/dev/null 2>&1 && break
		sleep 1
	done
	test "$(docker exec "$NODE" systemctl is-active containerd)" = active
'

test_expect_success "the preloaded images are arm64, in k8s.io, pinned" '
	docker exec "$NODE" ctr -n k8s.io images ls >"$TMP/images" &&
	cat "$TMP/images" &&
	for i in registry.k8s.io/kube-apiserver:$KUBE_VERSION registry.k8s.io/kube-proxy:$KUBE_VERSION \
		registry.k8s.io/pause:$PAUSE_TAG registry.k8s.io/etcd:$ETCD_TAG \
		registry.k8s.io/coredns/coredns:$COREDNS_VERSION docker.io/kindest/kindnetd:$KINDNETD_TAG; do
		line=$(grep "^$i " "$TMP/images") || { echo "$i is not preloaded"; exit 1; }
		case $line in *linux/arm64*) ;; *) echo "$i is not linux/arm64: $line"; exit 1 ;; esac
		case $line in *io.cri-containerd.pinned=pinned*) ;; *) echo "$i is not pinned"; exit 1 ;; esac
	done
'

# One config, two platforms, one tag.
test_expect_success "the amd64 node image of the same config is built from the from-source mirror and pushed" '
	"$IMGF" build --only kind-node --var-file "$KUBE_AMD64_VARS" --var docker_base_image="$BASE12" \
		--var kind_node_image="$TAG64" --var push_ref="$REPO:$KUBE_VERSION-amd64" \
		--output-dir "$TMP/output64" "$TMP/push.json" >"$TMP/build64.log" 2>&1 ||
		{ tail -n 60 "$TMP/build64.log"; exit 1; }
	test "$(docker image inspect -f "{{.Os}}/{{.Architecture}}" "$TAG64")" = linux/amd64 &&
	m=$TMP/output64/debian-12+kube-$KUBE_VERSION/manifest.json &&
	jq -e --arg r "$REPO:$KUBE_VERSION-amd64" ".builds[0].pushed[0].ref == \$r" "$m" &&
	grep -E "pushed .$REPO:$KUBE_VERSION-amd64. as sha256:[0-9a-f]{64}" "$TMP/build64.log"
'

test_expect_success "push-index joins the amd64 and the arm64 image under one tag, each with its platform" '
	"$IMGF" push-index "$REPO:$KUBE_VERSION" "$REPO:$KUBE_VERSION-amd64" "$REPO:$KUBE_VERSION-arm64" \
		>"$TMP/index.out" 2>"$TMP/index.err" || { cat "$TMP/index.err"; exit 1; }
	grep -qE "^$REPO:$KUBE_VERSION@sha256:[0-9a-f]{64}\$" "$TMP/index.out" &&
	curl -fsS -H "Accept: application/vnd.oci.image.index.v1+json" \
		"http://$REG/v2/kind/node/manifests/$KUBE_VERSION" >"$TMP/index.json" &&
	test "sha256:$(sha256sum <"$TMP/index.json" | cut -d" " -f1)" = "$(sed "s/.*@//" "$TMP/index.out")" &&
	jq . "$TMP/index.json" &&
	jq -e ".mediaType == \"application/vnd.oci.image.index.v1+json\" and (.manifests | length) == 2" "$TMP/index.json" &&
	jq -e ".manifests[0].platform.os == \"linux\" and .manifests[0].platform.architecture == \"amd64\"" "$TMP/index.json" &&
	jq -e ".manifests[1].platform.os == \"linux\" and .manifests[1].platform.architecture == \"arm64\"" "$TMP/index.json" &&
	for a in amd64 arm64; do
		d=$(jq -r ".builds[0].pushed[0].digest" "$TMP/output$([ $a = amd64 ] && echo 64)/debian-12+kube-$KUBE_VERSION/manifest.json") &&
		jq -e --arg d "$d" --arg a "$a" "[.manifests[] | select(.platform.architecture == \$a) | .digest] == [\$d]" "$TMP/index.json" ||
			{ echo "the index does not name the pushed $a manifest $d"; exit 1; }
	done
'

# The second engine, and kind's cluster on it, go before the engine stops (cleanups run in
# order). Its cluster gets a network made here: the one kind makes has a fixed IPv6 subnet
# (from the name "kind"), which this engine's kind network, of scripts running at once, also has.
C=imgf-t1550-$$
NET=imgf-t1550-$$
export KUBECONFIG=$TMP/kubeconfig
d2kind() { DOCKER_HOST=unix://$D2/sock KIND_EXPERIMENTAL_DOCKER_NETWORK=$NET kind_cmd "$@"; }
at_exit "d2kind delete cluster --name $C"
at_exit "d2 network rm $NET"
# It stores images as this one does (storage drivers differ in how an export shows hard links).
dockerd2_up "$(docker info -f "{{.Driver}}")" || die "the second Docker Engine did not come up"

test_expect_success "a second, clean Docker Engine pulls each platform by the one tag: the IDs this engine has" '
	test -z "$(d2 images -aq)" &&
	d2 pull -q --platform linux/amd64 "$REPO:$KUBE_VERSION" &&
	test "$(d2 image inspect -f "{{.Id}} {{.Os}}/{{.Architecture}}" "$REPO:$KUBE_VERSION")" = \
		"$(docker image inspect -f "{{.Id}}" "$TAG64") linux/amd64" &&
	d2 tag "$REPO:$KUBE_VERSION" "$TAG64" &&
	d2 pull -q --platform linux/arm64 "$REPO:$KUBE_VERSION" &&
	test "$(d2 image inspect -f "{{.Id}} {{.Os}}/{{.Architecture}}" "$REPO:$KUBE_VERSION")" = \
		"$(docker image inspect -f "{{.Id}}" "$TAG") linux/arm64" &&
	test "$(d2 image inspect -f "{{.Id}}" "$TAG64")" = "$(docker image inspect -f "{{.Id}}" "$TAG64")"
'

test_expect_success "kind boots the pulled amd64 image on the second engine: the node is Ready" '
	sub= &&
	for i in $(seq 200 250); do
		ip route | grep -q "^10\.$i\." || { sub=10.$i.0.0/24; break; }
	done &&
	d2 network create -d bridge --subnet "$sub" "$NET" >/dev/null &&
	kube_kind_config 0 >"$TMP/kind.yaml" &&
	t0=$SECONDS &&
	d2kind create cluster --name "$C" --image "$TAG64" --config "$TMP/kind.yaml" \
		--kubeconfig "$KUBECONFIG" --wait 0s >"$TMP/create.log" 2>&1 || { cat "$TMP/create.log"; exit 1; }
	test -n "$(d2 ps -q --filter label=io.x-k8s.kind.cluster=$C)" &&
	test -z "$(docker ps -aq --filter label=io.x-k8s.kind.cluster=$C)" &&
	"$KUBECTL" wait --for=condition=Ready nodes --all --timeout=300s &&
	echo "node Ready $((SECONDS - t0)) s after kind create cluster" &&
	"$KUBECTL" get nodes -o wide &&
	test "$("$KUBECTL" get nodes -o jsonpath="{.items[0].status.nodeInfo.kubeletVersion} {.items[0].status.nodeInfo.architecture}")" = "$KUBE_VERSION amd64"
'

test_expect_success "every pod on it runs and is Ready (control plane, etcd, CoreDNS, kube-proxy, CNI, storage)" '
	kube_pods_ready &&
	"$KUBECTL" get pods -A --no-headers >"$TMP/pods" &&
	cat "$TMP/pods" &&
	for p in etcd- kube-apiserver- kube-controller-manager- kube-scheduler- kube-proxy- coredns-; do
		grep -q "^kube-system  *$p" "$TMP/pods" || { echo "no $p pod"; exit 1; }
	done &&
	grep -q "^local-path-storage  *local-path-provisioner-" "$TMP/pods"
'

test_expect_success "kind delete cluster on the second engine leaves no node container" '
	d2kind delete cluster --name "$C" >"$TMP/delete.log" 2>&1 || { cat "$TMP/delete.log"; exit 1; }
	test -z "$(d2 ps -aq --filter label=io.x-k8s.kind.cluster=$C)"
'

test_done
