# shellcheck shell=bash
# Real Kubernetes for the end-to-end tests: the from-source mirror of hack/kube-from-source.sh
# (built once per machine, cached by version at a fixed path) served by hack/kube-mirror-serve.sh,
# and the kind CLI built with it, run through tests/lib/kind-docker (the --privileged substitute).
#
#   kube_up "what"     build (cached) and serve the mirror; sets KUBE_DIR, KUBE_REG, KIND, KUBECTL,
#                      KUBE_BUILD_VARS (a --var-file for imgforge: Kubernetes, crictl and images
#                      from the mirror; containerd, runc and CNI from the fixtures' Debian repack)
#   kind_cmd ARGS...   the kind CLI with the docker wrapper first on PATH
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
}

kind_cmd() {
	PATH="$TOP/tests/lib/kind-docker:$PATH" "$KIND" "$@"
}
