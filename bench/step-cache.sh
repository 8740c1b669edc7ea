#!/usr/bin/env bash
# The step cache, in one run and one empty cache per image: a cold build, a rebuild with
# nothing changed, and a rebuild with kubernetes_semver changed (the fixture mirror serves
# stand-in binaries and images for two versions, FIXTURE_KUBERNETES_VERSION and
# FIXTURE_KUBERNETES_VERSION_NEXT), which reruns the steps from `kubernetes` on (kind-node:
# kubernetes, images, kind, sysprep; capi-qcow2: kubernetes, images, sysprep, then the image
# is written and boot-checked again). Prints the three times and each rebuild's ratio to
# the cold build, and which steps each run ran.
#
#   bench/step-cache.sh [kind-node] [capi-qcow2]     (default: both)
#   BENCH_BOOT_CHECK=true: capi-qcow2 with the boot check (default false: the fixture
#   mirror's crictl and kubeadm are stand-ins, which cannot run a pod sandbox)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/bench-step-cache.XXXXXX)
TAG=imgforge-bench/kind-node:step-cache
IMAGES=${*:-kind-node capi-qcow2}
cleanup() {
	fixtures_stop "$FIX" >/dev/null 2>&1 || true
	for c in "$TMP"/cache-*; do
		[ -d "$c" ] && IMGFORGE_CACHE_DIR=$c "$TOP/imgforge" cache prune >/dev/null 2>&1 || true
	done
	docker rmi -f "$TAG" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
TEST_CACHE=${IMGF_TEST_CACHE:-/var/tmp/imgforge-test-cache}
. "$TOP/tests/lib/fixtures.sh"
. "$TOP/tests/lib/base-image.sh"
. "$TOP/tests/lib/vm-image.sh"
FIX=$TEST_CACHE/fixtures
if ! fixtures_build "$FIX" >/dev/null || ! fixtures_serve "$FIX" >/dev/null; then
	echo "bench: fixtures failed" >&2
	exit 1
fi
make -s -C "$TOP"
export SOURCE_DATE_EPOCH=1700000000
NEXT=$FIXTURE_KUBERNETES_VERSION_NEXT

now() { date +%s.%N; }
timed() { # LOG CMD...: runs CMD into $TMP/LOG.log, prints the seconds it took
	local log=$1 t0 t1
	shift
	t0=$(now)
	"$@" >"$TMP/$log.log" 2>&1 || { tail -n 30 "$TMP/$log.log" >&2; return 1; }
	t1=$(now)
	echo "$t1 - $t0" | bc
}
ran() { grep -cE "$2: step [0-9]+/[0-9]+: [a-z-]+\$" "$TMP/$1.log" || true; }
ran_names() {
	grep -oE "$2: step [0-9]+/[0-9]+: [a-z-]+\$" "$TMP/$1.log" | sed 's/.*: //' | paste -sd, - || true
}
ratio() { echo "scale=4; $1 / $2" | bc; }
report() { # IMAGE COLD WARM CHANGED
	local img=$1
	echo "$img:"
	printf '  cold build (empty cache):           %8.2f s  (%s steps run)\n' "$2" "$(ran "$img-cold" "$img")"
	printf '  rebuild, nothing changed:           %8.2f s  (%s steps run)  ratio %.4f (%.2f%% of cold)\n' \
		"$3" "$(ran "$img-warm" "$img")" "$(ratio "$3" "$2")" "$(echo "100 * $3 / $2" | bc -l)"
	printf '  rebuild, kubernetes_semver changed: %8.2f s  (%s steps run: %s)  ratio %.4f (%.1f%% of cold)\n' \
		"$4" "$(ran "$img-changed" "$img")" "$(ran_names "$img-changed" "$img")" \
		"$(ratio "$4" "$2")" "$(echo "100 * $4 / $2" | bc -l)"
}

kind_node() {
	local base
	if ! base=$(base_image_ensure); then
		echo "bench: base image failed" >&2
		return 1
	fi
	kind() {
		IMGFORGE_CACHE_DIR=$TMP/cache-kind "$TOP/imgforge" build --force --only kind-node \
			--var-file "$FIX/vars.json" --var docker_base_image="$base" \
			--var kind_node_image="$TAG" --var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" \
			--output-dir "$TMP/out-kind" "$@" "$TOP/config/debian-12.json"
	}
	local cold warm changed
	cold=$(timed kind-node-cold kind)
	warm=$(timed kind-node-warm kind)
	changed=$(timed kind-node-changed kind --var "kubernetes_semver=$NEXT")
	report kind-node "$cold" "$warm" "$changed"
}

capi_qcow2() {
	local vmbase sum
	if ! vmbase=$(vm_image_ensure); then
		echo "bench: VM base image failed" >&2
		return 1
	fi
	sum=$(sha256sum "$vmbase" | cut -d' ' -f1)
	export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
	local accel=auto
	# A /dev/kvm that cannot run a guest (nested setups): TCG, without the 15 s probe.
	if [ -e /dev/kvm ] && ! bash "$TOP/hack/kvm-usable.sh"; then
		export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
		accel=tcg
	fi
	capi() {
		IMGFORGE_CACHE_DIR=$TMP/cache-capi "$TOP/imgforge" build --force --only capi-qcow2 \
			--var-file "$FIX/vars.json" --var qemu_base_image_url="$vmbase" \
			--var qemu_base_image_checksum="sha256:$sum" --var disk_size=4G \
			--var qemu_accelerator=$accel --var boot_check="${BENCH_BOOT_CHECK:-false}" \
			--output-dir "$TMP/out-capi" "$@" "$TOP/config/debian-12.json"
	}
	local cold warm changed
	cold=$(timed capi-qcow2-cold capi)
	warm=$(timed capi-qcow2-warm capi)
	changed=$(timed capi-qcow2-changed capi --var "kubernetes_semver=$NEXT")
	echo "(boot check: ${BENCH_BOOT_CHECK:-false}, accelerator: $accel)"
	report capi-qcow2 "$cold" "$warm" "$changed"
}

for img in $IMAGES; do
	case $img in
	kind-node) kind_node ;;
	capi-qcow2) capi_qcow2 ;;
	*)
		echo "bench: unknown image '$img' (kind-node, capi-qcow2)" >&2
		exit 2
		;;
	esac
done
