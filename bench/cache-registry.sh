#!/usr/bin/env bash
# The step cache in a registry, timed (issue 20's targets): a cold kind-node build on this
# engine with --cache-to (every step runs and is exported), the same build again with nothing
# changed (every step cached locally), and the same config on a second, empty Docker Engine
# with an empty IMGFORGE_CACHE_DIR and --cache-from (no step runs: every state is pulled from
# the registry). Prints each time, each one's ratio to the cold build, and each build's peak
# RSS (GNU time's maximum resident set size of the imgforge process).
#
#   bench/cache-registry.sh [fixtures|real]
#     fixtures (default): the loopback fixture mirror, config/debian-12.json on the bookworm
#                         base (stand-in binaries and images: a 262 MiB image)
#     real:               the from-source mirror of hack/kube-from-source.sh (real Kubernetes,
#                         containerd, runc, CNI plugins, images: a 1 GB image), the shipped
#                         config/debian-13.json on a trixie base
# Targets: nothing changed under 2 % of cold; --cache-from on a fresh engine under 25 % of
# cold; peak RSS under 64 MiB.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:-fixtures}
TMP=$(mktemp -d /tmp/bench-cache-registry.XXXXXX)
TEST_NAME=bench-cache-registry
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
TAG=imgforge-bench/kind-node:cache-registry-$$
# The helpers of tests/lib/registry.sh want the harness's at_exit and die.
cleanups=()
at_exit() { cleanups+=("$1"); }
die() {
	echo "bench: $*" >&2
	exit 1
}
cleanup() {
	local c
	for c in "${cleanups[@]+"${cleanups[@]}"}"; do eval "$c" >/dev/null 2>&1 || true; done
	# Engine A's step images (engine B's go with its data root).
	if [ -d "$TMP/cache-a" ]; then
		IMGFORGE_CACHE_DIR=$TMP/cache-a "$TOP/imgforge" cache prune >/dev/null 2>&1 || true
	fi
	docker rmi -f "$TAG" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
for c in docker-registry dockerd ip jq curl /usr/bin/time bc; do
	command -v "$c" >/dev/null || die "'$c' is not installed (hack/install-deps.sh --test; GNU time: Debian's time)"
done
. "$TOP/tests/lib/base-image.sh"
. "$TOP/tests/lib/registry.sh"
. "$TOP/tests/lib/shared.sh"
make -s -C "$TOP"
# No credentials: the registry is anonymous.
export DOCKER_CONFIG=$TMP/no-docker-config SOURCE_DATE_EPOCH=1700000000

case $MODE in
fixtures)
	. "$TOP/tests/lib/fixtures.sh"
	FIX=$TEST_CACHE/fixtures
	if ! fixtures_build "$FIX" >/dev/null || ! fixtures_serve "$FIX" >/dev/null; then
		die "fixtures failed"
	fi
	at_exit "fixtures_stop '$FIX'"
	base=$(base_image_ensure) || die "base image failed"
	CONFIG=$TOP/config/debian-12.json
	ARGS=(--var-file "$FIX/vars.json" --var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES")
	;;
real)
	KUBE_VERSION=${IMGF_KUBE_VERSION:-$(jq -r .variables.kubernetes_semver "$TOP/config/kubernetes.json")}
	KUBE_DIR=${IMGF_KUBE_DIR:-/var/cache/imgforge/kube-from-source/$KUBE_VERSION}
	bash "$TOP/hack/kube-from-source.sh" "$KUBE_VERSION" "$KUBE_DIR" >"$TMP/kube-from-source.log" 2>&1 ||
		die "hack/kube-from-source.sh failed (log: $TMP/kube-from-source.log)"
	# Served as tests/lib/kube.sh does: shared with tests running at once, stopped by the
	# last user.
	set +e
	shared_acquire "$KUBE_DIR"
	set -e
	at_exit "if shared_release '$KUBE_DIR'; then bash '$TOP/hack/kube-mirror-serve.sh' --stop '$KUBE_DIR'; fi; shared_unlock"
	bash "$TOP/hack/kube-mirror-serve.sh" --port 0 "$KUBE_DIR" >"$TMP/kube-serve.log" 2>&1 ||
		{ shared_unlock; die "hack/kube-mirror-serve.sh failed"; }
	shared_hold "$KUBE_DIR"
	base=$(base_image_ensure "" trixie) || die "base image failed"
	CONFIG=$TOP/config/debian-13.json
	ARGS=(--var-file "$KUBE_DIR/vars.json")
	;;
*) die "unknown mode '$MODE' (fixtures, real)" ;;
esac

# (tests/lib/registry.sh is written for the harness, which runs without `set -e`.)
set +e
start_registry reg
set -e
REG=127.0.0.1:$PORT
CACHE=$REG/imgforge/cache
# The base comes from the registry too: B pulls it, as a fresh runner would.
BASE_REF=$REG/bench/debian:base
{ docker tag "$base" "$BASE_REF" && docker push -q "$BASE_REF" >/dev/null; } || die "push the base image"
at_exit "docker rmi $BASE_REF"
set +e
dockerd2_up "$(docker info -f "{{.Driver}}")" || die "the second Docker Engine did not come up"
set -e

now() { date +%s.%N; }
# build ENGINE NAME [ARGS...]: prints the seconds; $TMP/NAME.rss gets the peak RSS in KiB
build() {
	local engine=$1 name=$2 host=unix:///var/run/docker.sock t0 t1
	shift 2
	[ "$engine" = a ] || host=unix://$D2/sock
	t0=$(now)
	DOCKER_HOST=$host IMGFORGE_CACHE_DIR=$TMP/cache-$engine \
		/usr/bin/time -f %M -o "$TMP/$name.rss" "$TOP/imgforge" build --force --only kind-node \
		"${ARGS[@]}" --var docker_base_image="$BASE_REF" --var kind_node_image="$TAG" \
		--output-dir "$TMP/out-$name" "$@" "$CONFIG" >"$TMP/$name.log" 2>&1 ||
		{ tail -n 30 "$TMP/$name.log" >&2; return 1; }
	t1=$(now)
	echo "$t1 - $t0" | bc
}
ran() { grep -cE "kind-node: step [0-9]+/[0-9]+: [a-z-]+\$" "$TMP/$1.log" || true; }
id() { jq -r ".builds[0].artifact_id" "$TMP/out-$1"/*/manifest.json; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "# $MODE: $(basename "$CONFIG"), load at start $(load)"
cold=$(build a cold --cache-to "$CACHE") || die "the cold build failed"
warm=$(build a warm) || die "the warm build failed"
from=$(build b from --cache-from "$CACHE") || die "the --cache-from build failed"
[ "$(id cold)" = "$(id from)" ] || die "engine B's image $(id from) is not engine A's $(id cold)"
row() { # WHAT NAME SECONDS
	printf '%-44s %8.2f s  %2s steps run  %6.2f %% of cold  peak RSS %5.1f MiB\n' "$1" "$3" \
		"$(ran "$2")" "$(echo "100 * $3 / $cold" | bc -l)" "$(echo "$(cat "$TMP/$2.rss") / 1024" | bc -l)"
}
row "cold, --cache-to (engine A)" cold "$cold"
row "nothing changed (engine A, local cache)" warm "$warm"
row "--cache-from, fresh engine B, empty cache" from "$from"
echo "# the same image ID on both engines: $(id from); load at end $(load)"
