#!/usr/bin/env bash
# needs: docker fixtures root
# The step cache in a registry (issue 20 part 2), with two engines on this machine: engine A
# (the host's) builds t1200's kind node image cold with --cache-to, exporting each kept step and
# the finished image; engine B (a second dockerd, empty image store, empty IMGFORGE_CACHE_DIR)
# builds the same config with --cache-from, runs no step and takes the finished image alone
# (no step's state, no squash); with kubernetes_semver changed B runs only the steps from
# `kubernetes` on; both give the image ID engine A gives. A blob tampered with in the registry's
# storage (the finished image's, a step's) makes its step run again, with a warning naming the
# blob and the step.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
for c in docker-registry jq curl dockerd ip; do
	if ! require_cmd "$c"; then
		test_skip "the step cache in a registry" "'$c' is not installed (hack/install-deps.sh)"
		test_done
	fi
done
docker_up "the step cache in a registry"
fixtures_up "the step cache in a registry"
. "$TOP/tests/lib/registry.sh"
export SOURCE_DATE_EPOCH=1700000000
# No credentials: the registry is anonymous.
export DOCKER_CONFIG=$TMP/no-docker-config
TAG=imgforge-test/kind-node:t1247-$$
at_exit "docker rmi -f $TAG"

start_registry reg
REG=127.0.0.1:$PORT
CACHE=$REG/imgforge/cache
# The base image comes from the registry too: B pulls it, A has it under that name.
BASE_REF=$REG/t1247/debian:base
{ docker tag "$BASE" "$BASE_REF" && docker push -q "$BASE_REF" >/dev/null; } || die "push the base image"
at_exit "docker rmi $BASE_REF"
# B stores images as A does: storage drivers differ in how an export shows hard links
# (fuse-overlayfs gives each name of a file its own inode), and the squashed layer with them.
dockerd2_up "$(docker info -f "{{.Driver}}")" || die "the second Docker Engine did not come up"

# build ENGINE LOG [ARGS...]: kind-node on engine a (the host's) or b, a cache dir of its own
# per LOG (empty for a b build), the output under $TMP/LOG.
build() {
	local engine=$1 log=$2 host=unix:///var/run/docker.sock
	shift 2
	[ "$engine" = a ] || host=unix://$D2/sock
	DOCKER_HOST=$host IMGFORGE_CACHE_DIR=$TMP/cache-$engine${CACHE_SUFFIX:-} \
		"$IMGF" build --force --only kind-node --var-file "$FIX/vars.json" \
		--var docker_base_image="$BASE_REF" --var kind_node_image="$TAG" \
		--var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" \
		--output-dir "$TMP/$log" "$@" "$TOP/config/debian-12.json" >"$TMP/$log.log" 2>&1 ||
		{ tail -n 40 "$TMP/$log.log"; return 1; }
	jq -r ".builds[0].artifact_id" "$TMP/$log"/*/manifest.json >"$TMP/$log.id"
}
ran() { grep -E "kind-node: step [0-9]+/9: [a-z-]+\$" "$TMP/$1.log" | sed 's/.*step //'; }
cached() { grep -cE "kind-node: step [0-9]+/9: [a-z-]+: cached \(" "$TMP/$1.log"; }
tags() { curl -fsS "http://$REG/v2/imgforge/cache/tags/list" | jq -r ".tags[]" | sort; }

# The steps whose state is kept (docs/step-cache.md): all but a quick step followed by another
# quick one (containerd from its tarball, runc, cni, kind).
KEPT="packages crictl kubernetes images sysprep"
test_expect_success "engine A builds cold with --cache-to: every step runs, every kept one and the image are exported" '
	build a cold --cache-to "$CACHE" &&
	test "$(ran cold | wc -l)" = 9 &&
	test "$(grep -c "kind-node: step .* exported to .$CACHE:step-[0-9a-f]\{64\}." "$TMP/cold.log")" = 5 &&
	test "$(sed -n "s/.*kind-node: step .\([a-z]*\). exported to .*/\1/p" "$TMP/cold.log" | tr "\n" " ")" = "$KEPT " &&
	grep -q "kind-node: the finished image exported to .$CACHE:step-[0-9a-f]\{64\}." "$TMP/cold.log" &&
	tags >"$TMP/tags" &&
	test "$(grep -cE "^step-[0-9a-f]{64}\$" "$TMP/tags")" = 6 &&
	test "$(grep -cE "^step-[0-9a-f]{64}\\.record\$" "$TMP/tags")" = 6 &&
	# each entry, the finished image'"'"'s too, is the local step cache'"'"'s key
	test "$(jq -r .key "$TMP/cache-a/steps/"*.json | wc -l)" = 6 &&
	for k in $(jq -r .key "$TMP/cache-a/steps/"*.json); do
		grep -qx "step-$k.record" "$TMP/tags" || exit 1
	done
'

test_expect_success "engine B is empty: no image, no cache" '
	test -z "$(d2 images -aq)" && test ! -e "$TMP/cache-b"
'

test_expect_success "engine B builds with --cache-from: no step runs, the same image ID as engine A" '
	build b warm --cache-from "$CACHE" &&
	test -z "$(ran warm)" &&
	test "$(cached warm)" = 9 &&
	# the finished image alone: no step'"'"'s state is pulled, nothing exported, squashed, loaded
	grep -q "kind-node: the finished image comes from the registry cache .$CACHE." "$TMP/warm.log" &&
	! grep -q "come from the registry cache" "$TMP/warm.log" &&
	test -z "$(d2 images -q --filter label=io.imgforge.cache.key)" &&
	! grep -q "squashed" "$TMP/warm.log" &&
	! grep -q "is not used" "$TMP/warm.log" &&
	test -n "$(cat "$TMP/cold.id")" &&
	test "$(cat "$TMP/warm.id")" = "$(cat "$TMP/cold.id")" &&
	test "$(d2 image inspect -f "{{.Id}}" "$TAG")" = "$(cat "$TMP/cold.id")"
'

test_expect_success "kubernetes_semver changed: B runs only the steps from kubernetes on, as A does" '
	CACHE_SUFFIX=-next build b next-b --cache-from "$CACHE" --var kubernetes_semver=v1.31.3 &&
	test "$(cached next-b)" = 5 &&
	test "$(ran next-b | tr "\n" " ")" = "6/9: kubernetes 7/9: images 8/9: kind 9/9: sysprep " &&
	grep -q "kind-node: steps 1 to 5 of 9 come from the registry cache" "$TMP/next-b.log" &&
	build a next-a --var kubernetes_semver=v1.31.3 &&
	test "$(ran next-a | tr "\n" " ")" = "6/9: kubernetes 7/9: images 8/9: kind 9/9: sysprep " &&
	test "$(cat "$TMP/next-b.id")" = "$(cat "$TMP/next-a.id")" &&
	test "$(cat "$TMP/next-b.id")" != "$(cat "$TMP/cold.id")"
'

# The sysprep step's own layer (A's cold build): the last of its state's manifest.
key9=$(sed -n "s/.*step 'sysprep' exported to '.*:step-\([0-9a-f]\{64\}\)'.*/\1/p" "$TMP/cold.log")
blob=$(curl -fsS -H "Accept: application/vnd.oci.image.manifest.v1+json" \
	"http://$REG/v2/imgforge/cache/manifests/step-$key9" 2>/dev/null | jq -r ".layers[-1].digest" 2>/dev/null)
# The finished image's one layer.
keyf=$(sed -n "s/.*the finished image exported to '.*:step-\([0-9a-f]\{64\}\)'.*/\1/p" "$TMP/cold.log")
fblob=$(curl -fsS -H "Accept: application/vnd.oci.image.manifest.v1+json" \
	"http://$REG/v2/imgforge/cache/manifests/step-$keyf" 2>/dev/null | jq -r ".layers[-1].digest" 2>/dev/null)
tamper() { # DIGEST
	local data=$TMP/reg/storage/docker/registry/v2/blobs/sha256/${1:7:2}/${1#sha256:}/data
	test -f "$data" && printf "tampered" | dd of="$data" bs=1 seek=512 conv=notrunc status=none
}

test_expect_success "blobs tampered with in the registry: a warning names each, its step runs again" '
	tamper "$fblob" && tamper "$blob" &&
	d2 image prune -af >/dev/null &&
	CACHE_SUFFIX=-tampered build b tampered --cache-from "$CACHE" &&
	grep "warning" "$TMP/tampered.log" >"$TMP/tampered.warn" &&
	grep -q "the finished image.s cache entry [0-9a-f]\{12\} in .$CACHE. is not used" "$TMP/tampered.warn" &&
	grep -q "blob '"'"'$fblob'"'"': sha256 mismatch" "$TMP/tampered.warn" &&
	grep -q "step 9/9 '"'"'sysprep'"'"': the cache entry [0-9a-f]\{12\} in .$CACHE. is not used" "$TMP/tampered.warn" &&
	grep -q "blob '"'"'$blob'"'"': sha256 mismatch" "$TMP/tampered.warn" &&
	# kind (8) is quick and not kept: B goes on from images (7)
	test "$(ran tampered | tr "\n" " ")" = "8/9: kind 9/9: sysprep " &&
	test "$(cached tampered)" = 7 &&
	test "$(cat "$TMP/tampered.id")" = "$(cat "$TMP/cold.id")"
'

test_done
