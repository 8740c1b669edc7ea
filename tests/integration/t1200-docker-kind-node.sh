#!/usr/bin/env bash
# needs: docker fixtures
# imgforge build --only kind-node against the running Docker Engine, from a debootstrap base
# image and the loopback mirror of Debian's containerd/runc/CNI plus stand-in Kubernetes
# binaries and images (test fixtures). Then the image must boot as a kind node does.
. "$(dirname "$0")/../lib/harness.sh"
docker_up "kind node image build"
fixtures_up "kind node image build"
TAG=imgforge-test/kind-node:t1200-$$
NODE=imgforge-t1200-node-$$
at_exit "docker rm -f $NODE"
at_exit "docker rmi -f $TAG"
export IMGFORGE_CACHE_DIR=$TMP/cache
OUT=$TMP/output/debian-12+kube-v1.31.2
build() {
	"$IMGF" build --only kind-node --var-file "$FIX/vars.json" \
		--var docker_base_image="$BASE" --var kind_node_image="$TAG" \
		--var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" \
		--output-dir "$TMP/output" "$@" "$TOP/config/debian-12.json"
}

test_expect_success "imgforge build --only kind-node succeeds" '
	build >"$TMP/build.log" 2>&1 || { tail -n 60 "$TMP/build.log"; exit 1; }
	# containerd holds each pulled image at the manifest digest verified on the host
	grep -E "containerd holds registry.k8s.io/pause:3.10 at sha256:[0-9a-f]{64}, as verified" "$TMP/build.log"
	docker image inspect "$TAG" >"$TMP/inspect.json"
'

test_expect_success "no build container is left behind" '
	test -z "$(docker ps -aq --filter label=io.imgforge.build=kind-node)"
'

test_expect_success "the image has kind's entrypoint, stop signal and environment" '
	test "$(jq -c ".[0].Config.Entrypoint" "$TMP/inspect.json")" = "[\"/usr/local/bin/entrypoint\",\"/sbin/init\"]" &&
	test "$(jq -r ".[0].Config.StopSignal" "$TMP/inspect.json")" = "SIGRTMIN+3" &&
	jq -r ".[0].Config.Env[]" "$TMP/inspect.json" | grep -qx "container=docker" &&
	test "$(jq -r ".[0].Config.Cmd" "$TMP/inspect.json")" = null
'

test_expect_success "labels carry the imgforge version and every input digest" '
	jq -e ".[0].Config.Labels[\"io.imgforge.version\"]" "$TMP/inspect.json" &&
	c=$(sha256sum "$FIX/www/containerd/v$FIXTURE_CONTAINERD_VERSION/containerd-$FIXTURE_CONTAINERD_VERSION-linux-amd64.tar.gz" | cut -d" " -f1) &&
	test "$(jq -r ".[0].Config.Labels[\"io.imgforge.input.containerd\"]" "$TMP/inspect.json")" = "sha256:$c" &&
	k=$(cut -d" " -f1 "$FIX/www/release/v1.31.2/bin/linux/amd64/kubeadm.sha256") &&
	test "$(jq -r ".[0].Config.Labels[\"io.imgforge.input.kubeadm\"]" "$TMP/inspect.json")" = "sha256:$k"
'

test_expect_success "binaries are in place and run" '
	docker run --rm --entrypoint /bin/sh "$TAG" -c "
		set -e
		/usr/local/bin/containerd --version | grep -F $FIXTURE_CONTAINERD_VERSION
		/usr/local/bin/ctr --version
		test -x /usr/local/bin/containerd-shim-runc-v2
		/usr/local/sbin/runc --version | grep -F $FIXTURE_RUNC_VERSION
		for p in host-local loopback ptp portmap; do test -x /opt/cni/bin/\$p; done
		test ! -e /opt/cni/bin/bridge
		/usr/local/bin/crictl --version | grep -F 1.31.1
		grep -q containerd.sock /etc/crictl.yaml
		test \"\$(kubeadm version -o short)\" = v1.31.2
		kubelet --version | grep -F v1.31.2
		kubectl version --client | grep -F v1.31.2
		jq --version
	" >"$TMP/bins.log" 2>&1 || { cat "$TMP/bins.log"; exit 1; }
'

test_expect_success "kind files: /kind/version, manifests, entrypoint, units" '
	docker run --rm --entrypoint /bin/sh "$TAG" -c "
		set -e
		test \"\$(cat /kind/version)\" = v1.31.2
		grep -q kindnetd /kind/manifests/default-cni.yaml
		grep -q docker.io/kindest/kindnetd /kind/manifests/default-cni.yaml
		grep -q local-path-provisioner /kind/manifests/default-storage.yaml
		test -x /usr/local/bin/entrypoint
		test \"\$(readlink /sbin/init)\" = /lib/systemd/systemd
		test -L /etc/systemd/system/multi-user.target.wants/containerd.service
		test -L /etc/systemd/system/multi-user.target.wants/kubelet.service
		test -f /etc/systemd/system/kubelet.service.d/10-kubeadm.conf
		test \"\$(readlink /etc/systemd/system/systemd-binfmt.service)\" = /dev/null
		grep -q SystemdCgroup /etc/containerd/config.toml
		grep -q sandbox_image.*registry.k8s.io/pause:3.10 /etc/containerd/config.toml
		test -d /etc/kubernetes/manifests
		test ! -s /etc/machine-id
		test -z \"\$(ls /var/lib/apt/lists | grep -v -e lock -e partial)\"
		test ! -e /var/tmp/imgforge-images
	" >"$TMP/files.log" 2>&1 || { cat "$TMP/files.log"; exit 1; }
'

test_expect_success "the image boots unprivileged to systemd running with containerd active" '
	docker run -d --name "$NODE" --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
		--tmpfs /run --tmpfs /tmp -v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns=host \
		"$TAG" >/dev/null &&
	state=
	for i in $(seq 1 120); do
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
	for i in $(seq 1 30); do
		docker exec "$NODE" systemctl is-active containerd >/dev/null 2>&1 && break
		sleep 1
	done
	test "$(docker exec "$NODE" systemctl is-active containerd)" = active
'

test_expect_success "every preloaded image is in namespace k8s.io, pinned" '
	docker exec "$NODE" ctr -n k8s.io images ls >"$TMP/images" &&
	cat "$TMP/images" &&
	for img in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
		grep -q "^registry.k8s.io/$img:v1.31.2 " "$TMP/images" || { echo "missing $img"; exit 1; }
	done &&
	for img in "${FIXTURE_REGISTRY_IMAGES[@]}"; do
		grep -q "^$(fixture_canonical "$img") " "$TMP/images" || { echo "missing $img"; exit 1; }
	done &&
	# Every named image is pinned; the sha256: entries are the ID references CRI adds at boot.
	grep -v -e "^REF " -e "^sha256:" "$TMP/images" >"$TMP/named" &&
	test "$(wc -l <"$TMP/named")" -ge 14 &&
	! grep -v "io.cri-containerd.pinned=pinned" "$TMP/named"
'

test_expect_success "the image holds no content blob containerd would collect (the same after a collection)" '
	B=/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256 &&
	docker run --rm --entrypoint ls "$TAG" "$B" >"$TMP/blobs.image" &&
	test "$(wc -l <"$TMP/blobs.image")" -ge 14 &&
	l=$(docker exec "$NODE" ctr -n k8s.io leases create) &&
	docker exec "$NODE" ctr -n k8s.io leases delete --sync "$l" &&
	docker exec "$NODE" ls "$B" >"$TMP/blobs.node" &&
	diff "$TMP/blobs.image" "$TMP/blobs.node"
'

test_expect_success "the manifest lists every input with its sha256" '
	m=$OUT/manifest.json &&
	jq -e ".builds[0].name == \"kind-node\" and .builds[0].builder_type == \"docker\"" "$m" &&
	jq -e ".builds[0].artifact_id | startswith(\"sha256:\")" "$m" &&
	test "$(jq -r ".builds[0].artifact_id" "$m")" = "$(jq -r ".[0].Id" "$TMP/inspect.json")" &&
	jq -e ".builds[0].custom_data.kubernetes_semver == \"v1.31.2\" and .builds[0].custom_data.distro_name == \"debian\"" "$m" &&
	for f in containerd/v$FIXTURE_CONTAINERD_VERSION/containerd-$FIXTURE_CONTAINERD_VERSION-linux-amd64.tar.gz \
		runc/v$FIXTURE_RUNC_VERSION/runc.amd64 \
		release/v1.31.2/bin/linux/amd64/kubeadm release/v1.31.2/bin/linux/amd64/kubelet \
		release/v1.31.2/bin/linux/amd64/kubectl release/v1.31.2/bin/linux/amd64/kube-proxy.tar; do
		sum=$(sha256sum "$FIX/www/$f" | cut -d" " -f1)
		jq -e --arg s "$sum" --arg u "/$f" ".builds[0].inputs[] | select(.sha256 == \$s and (.url | endswith(\$u)))" "$m" >/dev/null ||
			{ echo "manifest lacks $f $sum"; exit 1; }
	done &&
	jq -e ".builds[0].inputs | map(select(.url | startswith(\"docker://\"))) | length == 6" "$m" &&
	jq -e "[.builds[0].inputs[].sha256 | test(\"^[0-9a-f]{64}$\")] | all" "$m"
'

test_expect_success "a second build needs --force for the existing output directory" '
	expect_exit 1 build &&
	expect_err "already exists (use --force"
'

test_done
