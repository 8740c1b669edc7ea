# shellcheck shell=bash
# Real Kubernetes for the end-to-end tests: the from-source mirror of hack/kube-from-source.sh
# (built once per machine, cached by version at a fixed path) served by hack/kube-mirror-serve.sh,
# and the kind CLI built with it, run through tests/lib/kind-docker (the --privileged substitute).
#
#   kube_up "what"     build (cached) and serve the mirror; sets KUBE_DIR, KUBE_REG, KIND, KUBECTL,
#                      KUBE_BUILD_VARS (a --var-file for imgforge: Kubernetes, crictl and images
#                      from the mirror; containerd, runc and CNI from the fixtures' Debian repack)
#                      and the mirror's versions.env (FLANNEL_VERSION, ...)
#   kind_cmd ARGS...   the kind CLI with the docker wrapper first on PATH
#   kube_kindnetd_standin   push the fixtures' stand-in kindnetd under its canonical name
#   kube_kind_config N      a kind config: a control plane, N workers, no default CNI
#   kube_flannel_up NAME KUBECONFIG   load flannel's images into cluster NAME and apply it
KUBE_VERSION=v1.31.2
KUBE_DIR=${IMGF_KUBE_DIR:-/var/cache/imgforge/kube-from-source/$KUBE_VERSION}

kube_up() {
	local t0=$SECONDS
	if ! bash "$TOP/hack/kube-from-source.sh" "$KUBE_VERSION" "$KUBE_DIR" >"$TMP/kube-from-source.log" 2>&1; then
		tail -n 40 "$TMP/kube-from-source.log"
		die "hack/kube-from-source.sh $KUBE_VERSION $KUBE_DIR failed"
	fi
	say "kube-from-source: $((SECONDS - t0)) s ($(grep -c cached "$TMP/kube-from-source.log") parts cached)"
	at_exit "bash '$TOP/hack/kube-mirror-serve.sh' --stop '$KUBE_DIR'"
	bash "$TOP/hack/kube-mirror-serve.sh" --port 0 "$KUBE_DIR" >"$TMP/kube-serve.log" 2>&1 || {
		cat "$TMP/kube-serve.log"
		die "hack/kube-mirror-serve.sh failed"
	}
	KUBE_REG=127.0.0.1:$(cat "$KUBE_DIR/registry.port")
	KIND=$KUBE_DIR/bin/kind
	KUBECTL=$KUBE_DIR/release/$KUBE_VERSION/bin/linux/amd64/kubectl
	# containerd, runc and the CNI plugins: Debian's, from the fixture mirror (fixtures_up).
	KUBE_BUILD_VARS=$TMP/kube-vars.json
	jq -s '{variables: ((.[0].variables | with_entries(select(.key |
			test("^(containerd|runc|kubernetes_cni)_")))) + .[1].variables)}' \
		"$FIX/vars.json" "$KUBE_DIR/vars.json" >"$KUBE_BUILD_VARS"
	# shellcheck disable=SC1091
	. "$KUBE_DIR/versions.env"
}

# kindnetd (kind's default CNI) cannot be built here. The node image preloads it, so the
# build needs it in the mirror: the fixtures' stand-in, under kindnetd's canonical name. It
# never runs (clusters use flannel with disableDefaultCNI).
kube_kindnetd_standin() {
	local img
	img=$(jq -r .variables.kindnetd_image "$FIX/vars.json")
	skopeo --policy "$FIX/policy.json" copy -q --dest-tls-verify=false --dest-no-creds \
		"oci:$(_fx_layout "$FIX" "${img#*/}"):${img##*:}" \
		"docker://$KUBE_REG/docker.io/kindest/kindnetd:${img##*:}"
}

kube_kind_config() {
	local i
	printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  disableDefaultCNI: true\n'
	printf 'nodes:\n- role: control-plane\n'
	for ((i = 0; i < $1; i++)); do printf -- '- role: worker\n'; done
}

# flannel's images are not in the node image (the CNI is the test's): docker archives of the
# mirror's layouts (made once per script), loaded into every node, then the manifest.
kube_flannel_up() {
	local name=$1 kubeconfig=$2 l tar
	for l in flannel:$FLANNEL_VERSION flannel-cni-plugin:$FLANNEL_CNI_VERSION; do
		tar=$TMP/${l%%:*}.tar
		[ -f "$tar" ] || skopeo --policy "$FIX/policy.json" copy -q "oci:$KUBE_DIR/oci/$l" \
			"docker-archive:$tar:docker.io/flannel/$l" || return 1
		kind_cmd load image-archive "$tar" --name "$name" || return 1
	done
	sed -e "s#FLANNEL_CNI_IMAGE#docker.io/flannel/flannel-cni-plugin:$FLANNEL_CNI_VERSION#" \
		-e "s#FLANNEL_IMAGE#docker.io/flannel/flannel:$FLANNEL_VERSION#" \
		"$TOP/tests/fixtures/kube-flannel.yaml" | "$KUBECTL" --kubeconfig "$kubeconfig" apply -f -
}

kind_cmd() {
	PATH="$TOP/tests/lib/kind-docker:$PATH" "$KIND" "$@"
}
