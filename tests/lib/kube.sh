# shellcheck shell=bash
# Real Kubernetes for the end-to-end tests: the from-source mirror of hack/kube-from-source.sh
# (built once per machine, cached by version at a fixed path) served by hack/kube-mirror-serve.sh,
# and the kind CLI built with it, run through tests/lib/kind-docker (the --privileged substitute).
#
#   kube_up "what"     build (cached) and serve the mirror; sets KUBE_DIR, KUBE_REG, KIND, KUBECTL,
#                      KUBE_BUILD_VARS (the mirror's --var-file: Kubernetes, containerd, runc, the
#                      CNI plugins, crictl and the images from the mirror, built from source at
#                      the shipped versions; flannel as kind's default CNI) and the mirror's
#                      versions.env (CONTAINERD_VERSION, FLANNEL_VERSION, ...)
#   kind_cmd ARGS...   the kind CLI with the docker wrapper first on PATH
#   kube_kind_config N      a kind config: a control plane and N workers (the image's default CNI)
#   kube_pods_ready    wait until every pod of the cluster in $KUBECONFIG is Running (or
#                      Succeeded) and Ready; else print the ones that are not, and fail
# The version is the shipped kubernetes_semver (config/kubernetes.json), or IMGF_KUBE_VERSION.
KUBE_VERSION=${IMGF_KUBE_VERSION:-$(jq -r .variables.kubernetes_semver "$TOP/config/kubernetes.json")}
KUBE_DIR=${IMGF_KUBE_DIR:-/var/cache/imgforge/kube-from-source/$KUBE_VERSION}

kube_up() {
	local t0=$SECONDS
	if ! bash "$TOP/hack/kube-from-source.sh" "$KUBE_VERSION" "$KUBE_DIR" >"$TMP/kube-from-source.log" 2>&1; then
		tail -n 40 "$TMP/kube-from-source.log"
		die "hack/kube-from-source.sh $KUBE_VERSION $KUBE_DIR failed"
	fi
	say "kube-from-source: $((SECONDS - t0)) s ($(grep -c cached "$TMP/kube-from-source.log") parts cached)"
	# The registry is shared with scripts running at once; the last one stops it.
	at_exit "kube_release"
	shared_acquire "$KUBE_DIR"
	bash "$TOP/hack/kube-mirror-serve.sh" --port 0 "$KUBE_DIR" >"$TMP/kube-serve.log" 2>&1 || {
		shared_unlock
		cat "$TMP/kube-serve.log"
		die "hack/kube-mirror-serve.sh failed"
	}
	shared_hold "$KUBE_DIR"
	KUBE_REG=127.0.0.1:$(cat "$KUBE_DIR/registry.port")
	KIND=$KUBE_DIR/bin/kind
	KUBECTL=$KUBE_DIR/release/$KUBE_VERSION/bin/linux/amd64/kubectl
	KUBE_BUILD_VARS=$KUBE_DIR/vars.json
	# shellcheck disable=SC1091
	. "$KUBE_DIR/versions.env"
}

kube_release() {
	if shared_release "$KUBE_DIR"; then
		bash "$TOP/hack/kube-mirror-serve.sh" --stop "$KUBE_DIR"
	fi
	shared_unlock
}

kube_kind_config() {
	local i
	printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n'
	printf 'nodes:\n- role: control-plane\n'
	for ((i = 0; i < $1; i++)); do printf -- '- role: worker\n'; done
}

kind_cmd() {
	PATH="$TOP/tests/lib/kind-docker:$PATH" "$KIND" "$@"
}

kube_pods_ready() {
	local i bad
	for i in $(seq 1 120); do
		bad=$("$KUBECTL" get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name,PHASE:.status.phase,READY:.status.conditions[?\(@.type==\"Ready\"\)].status |
			awk '$3 != "Succeeded" && !($3 == "Running" && $4 == "True")')
		[ -n "$bad" ] || return 0
		sleep 2
	done
	echo "not ready: $bad"
	"$KUBECTL" get pods -A -o wide
	return 1
}
