#!/usr/bin/env bash
# needs: docker go
# Real Kubernetes end to end from a LOCAL build, with the shipped config/debian-12.json: a directory laid out as `make WHAT=cmd/NAME`
# leaves it (_output/local/bin/linux/amd64) holding only the seven binaries, no image tars. imgforge
# makes the four control-plane images from the binaries (kube-proxy's with the node's own
# iptables), and the node passes the same real-cluster test as the release build
# (tests/lib/kind-e2e.sh). The same build preloads two additional_images, one from a registry
# and one from a `docker save` tar, and pods using them start with nothing pulled.
. "$(dirname "$0")/../lib/harness.sh"
E2E_WHAT="kind cluster from a local Kubernetes build"
E2E_BUILD_WHAT=" from a local build's binaries, images made from them, two additional images"
E2E_VARS=()
# The shipped debian-12 config (Debian 12 stays supported) on a bookworm base.
E2E_CONFIG=$TOP/config/debian-12.json
E2E_SUITE=bookworm
E2E_OVERRIDES="kubernetes_source kubernetes_local_dir additional_images"
BINS="kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy"

e2e_before_build() {
	LOCAL=$TMP/kubernetes
	local out=$LOCAL/_output/local/bin/linux/amd64 b
	mkdir -p "$out"
	for b in $BINS; do
		cp "$KUBE_DIR/release/$KUBE_VERSION/bin/linux/amd64/$b" "$out/$b" ||
			die "no $b in the from-source mirror"
	done
	# Two extra images: a busybox image saved to a tar, and the same pushed to the mirror.
	EXTRA_LOCAL=imgforge-test/extra-local:v1
	EXTRA_REG=docker.io/imgforge-test/extra-reg:v1
	mkdir -p "$TMP/extra/bin"
	cp /bin/busybox "$TMP/extra/bin/busybox"
	ln -s busybox "$TMP/extra/bin/sh"
	tar -C "$TMP/extra" -c . | docker import \
		--change 'CMD ["/bin/busybox", "sleep", "3600"]' - "$EXTRA_LOCAL" >/dev/null ||
		die "docker import failed"
	at_exit "docker rmi -f $EXTRA_LOCAL"
	docker save -o "$TMP/extra-local.tar" "$EXTRA_LOCAL" || die "docker save failed"
	skopeo copy --quiet --dest-tls-verify=false "docker-daemon:$EXTRA_LOCAL" \
		"docker://$KUBE_REG/docker.io/imgforge-test/extra-reg:v1" || die "skopeo copy failed"
	E2E_VARS=(--var kubernetes_source=local --var kubernetes_local_dir="$LOCAL"
		--var additional_images="$EXTRA_REG $TMP/extra-local.tar")
}

e2e_after_create() {
	test_expect_success "the log says each local file has no upstream checksum, and which images were made" '
		for b in $BINS; do
			grep -F "$b: local file '"'"'$LOCAL/_output/local/bin/linux/amd64/$b'"'"' (no upstream checksum)" \
				"$TMP/build.log" || { echo "no local-file line for $b"; exit 1; }
		done &&
		for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
			grep -F "made registry.k8s.io/$c:$KUBE_VERSION from" "$TMP/build.log" ||
				{ echo "no image made for $c"; exit 1; }
		done
	'

	test_expect_success "the manifest records the local binaries and the image tar as local inputs (path + sha256)" '
		m=$(ls "$TMP"/output/*/manifest.json) &&
		for b in kubeadm kubelet kubectl; do
			want=$(sha256sum "$LOCAL/_output/local/bin/linux/amd64/$b" | cut -d" " -f1)
			jq -e --arg n "$b" --arg s "$want" --arg p "$LOCAL/_output/local/bin/linux/amd64/$b" \
				"[.builds[].inputs[] | select(.name == \$n and .local == true and .sha256 == \$s and .path == \$p)] | length >= 1" \
				"$m" >/dev/null || { jq ".builds[].inputs" "$m"; echo "no local input for $b"; exit 1; }
		done &&
		want=$(sha256sum "$TMP/extra-local.tar" | cut -d" " -f1) &&
		jq -e --arg s "$want" "[.builds[].inputs[] | select(.local == true and .sha256 == \$s)] | length == 1" "$m" >/dev/null &&
		jq -e "[.builds[].inputs[] | select(.name == \"$EXTRA_REG\" and (.url | startswith(\"docker://$KUBE_REG/docker.io/\")))] | length == 1" "$m" >/dev/null
	'

	test_expect_success "kube-proxy runs the made image, its iptables from the node" '
		img=$(k -n kube-system get ds kube-proxy -o jsonpath="{.spec.template.spec.containers[0].image}") &&
		test "$img" = "registry.k8s.io/kube-proxy:$KUBE_VERSION" &&
		k -n kube-system exec ds/kube-proxy -- iptables --version >"$TMP/ipt" 2>&1 &&
		cat "$TMP/ipt" && grep -E "^iptables v[0-9.]+ \((nf_tables|legacy)\)" "$TMP/ipt" &&
		k -n kube-system exec ds/kube-proxy -- iptables-save -t nat | grep -q "^:KUBE-SERVICES" &&
		# kube-dns has two endpoints: its rules need the statistic match (libxt_statistic, libm).
		k -n kube-system exec ds/kube-proxy -- iptables-save -t nat | grep -q -- "-m statistic" &&
		! k -n kube-system logs ds/kube-proxy | grep -F "Failed to execute iptables-restore"
	'

	test_expect_success "additional_images are preloaded tagged and pinned, and pods using them start with no pull" '
		docker exec "$C1-control-plane" ctr -n k8s.io images ls >"$TMP/extra-images" &&
		for img in "$EXTRA_REG" "docker.io/$EXTRA_LOCAL"; do
			grep "^$img " "$TMP/extra-images" | grep -q io.cri-containerd.pinned=pinned ||
				{ cat "$TMP/extra-images"; echo "missing or unpinned: $img"; exit 1; }
		done &&
		k run extra-reg --image="$EXTRA_REG" --image-pull-policy=IfNotPresent --restart=Never &&
		k run extra-local --image="docker.io/$EXTRA_LOCAL" --image-pull-policy=IfNotPresent --restart=Never &&
		k wait --for=condition=Ready pod/extra-reg pod/extra-local --timeout=120s &&
		docker exec "$C1-control-plane" journalctl -u containerd --no-pager >"$TMP/extra-containerd.log" &&
		! grep "PullImage" "$TMP/extra-containerd.log"
	'
}
. "$TOP/tests/lib/kind-e2e.sh"
test_done
