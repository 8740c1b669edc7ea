#!/usr/bin/env bash
# The step cache on the kind-node build, in one run and one empty cache: a cold build, a
# rebuild with nothing changed, and a rebuild after a change the `kubernetes` step reads
# (kubernetes_http_source spelled with `localhost` instead of 127.0.0.1: same files, another
# config), which reruns the same steps a kubernetes_semver change does: kubernetes, images,
# kind, sysprep. The fixture mirror serves one Kubernetes version only, hence that stand-in.
# Prints the three times and each rebuild's ratio to the cold build.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-step-cache.XXXXXX)
TAG=imgforge-bench/kind-node:step-cache
cleanup() {
	fixtures_stop "$FIX" >/dev/null 2>&1 || true
	IMGFORGE_CACHE_DIR=$TMP/cache "$TOP/imgforge" cache prune >/dev/null 2>&1 || true
	docker rmi -f "$TAG" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
. "$TOP/tests/lib/fixtures.sh"
. "$TOP/tests/lib/base-image.sh"
FIX=$TEST_CACHE/fixtures
if ! fixtures_build "$FIX" >/dev/null || ! fixtures_serve "$FIX" >/dev/null; then
	echo "bench: fixtures failed" >&2
	exit 1
fi
if ! BASE=$(base_image_ensure); then
	echo "bench: base image failed" >&2
	exit 1
fi
make -s -C "$TOP"
export IMGFORGE_CACHE_DIR=$TMP/cache SOURCE_DATE_EPOCH=1700000000
src=$(jq -r .variables.kubernetes_http_source "$FIX/vars.json")

now() { date +%s.%N; }
build() { # NAME [ARGS...]: prints the seconds it took
	local name=$1 t0 t1
	shift
	t0=$(now)
	"$TOP/imgforge" build --force --only kind-node --var-file "$FIX/vars.json" \
		--var docker_base_image="$BASE" --var kind_node_image="$TAG" \
		--var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" --output-dir "$TMP/out" \
		"$@" "$TOP/config/debian-12.json" >"$TMP/$name.log" 2>&1 ||
		{ tail -n 30 "$TMP/$name.log" >&2; return 1; }
	t1=$(now)
	echo "$t1 - $t0" | bc
}
ran() { grep -cE "kind-node: step [0-9]+/[0-9]+: [a-z-]+\$" "$TMP/$1.log" || true; }

cold=$(build cold)
warm=$(build warm)
changed=$(build changed --var "kubernetes_http_source=${src/127.0.0.1/localhost}")
ratio() { echo "scale=4; $1 / $2" | bc; }
printf 'cold build (empty cache):          %7.2f s  (%s steps run)\n' "$cold" "$(ran cold)"
printf 'rebuild, nothing changed:          %7.2f s  (%s steps run)  ratio %.4f (%.2f%% of cold)\n' \
	"$warm" "$(ran warm)" "$(ratio "$warm" "$cold")" "$(echo "100 * $warm / $cold" | bc -l)"
printf 'rebuild, kubernetes step changed:  %7.2f s  (%s steps run)  ratio %.4f (%.1f%% of cold)\n' \
	"$changed" "$(ran changed)" "$(ratio "$changed" "$cold")" "$(echo "100 * $changed / $cold" | bc -l)"
