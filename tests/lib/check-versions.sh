#!/usr/bin/env bash
# make check-versions: the shipped config/debian-13.json kind node image on every supported
# Kubernetes minor (the newest patch the Go module proxy serves of each), each built from
# source at that version (hack/kube-from-source.sh, cached by version) and booted by kind
# v0.33.0 (tests/integration/t1500-kind-cluster.sh: the default minor with a worker too, the
# others one node). Prints a table: build time, node Ready, all pods Ready; then the closing
# "N passed, N failed, N skipped" over the runs.
set -u
cd "$(dirname "$0")/../.."
default=$(jq -r .variables.kubernetes_semver config/kubernetes.json)
versions=${IMGF_CHECK_VERSIONS:-v1.35.8 v1.36.5 $default}
results=$(mktemp)
passed=0 failed=0 skipped=0
for v in $versions; do
	echo "*** $v"
	workers=0
	[ "$v" != "$default" ] || workers=1
	out=$(IMGF_KUBE_VERSION=$v E2E_RESULTS=$results E2E_WORKERS_TOO=$workers \
		E2E_OVERRIDES="kubernetes_semver kubernetes_series" \
		bash tests/integration/t1500-kind-cluster.sh 2>&1)
	printf '%s\n' "$out"
	summary=$(printf '%s\n' "$out" | grep -E '^# [^ ]+: passed=[0-9]+ failed=[0-9]+ skipped=[0-9]+$' | tail -n 1)
	if [ -z "$summary" ]; then
		failed=$((failed + 1))
		echo "$v - - -" >>"$results"
		continue
	fi
	passed=$((passed + $(echo "$summary" | sed -E 's/.*passed=([0-9]+).*/\1/')))
	failed=$((failed + $(echo "$summary" | sed -E 's/.*failed=([0-9]+).*/\1/')))
	skipped=$((skipped + $(echo "$summary" | sed -E 's/.*skipped=([0-9]+).*/\1/')))
done
echo
echo "| Kubernetes | build (s) | node Ready (s) | all pods Ready (s) |"
echo "|---|---|---|---|"
while read -r v b r p; do
	echo "| $v | $b | $r | $p |"
done <"$results"
rm -f "$results"
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
