#!/usr/bin/env bash
# needs: docker fixtures
# Squashed, reproducible kind node images: the same config built twice (a few seconds apart,
# other output and cache directories, same SOURCE_DATE_EPOCH) gives the same image ID, an
# image of one layer with numeric owners, mtimes clamped to SOURCE_DATE_EPOCH, names in
# order and no whiteouts. The packages are the shipped list (config/common.json's
# kind_base_packages, open-iscsi and nfs-common among them, installed from the Debian archive),
# so every postinst that writes a per-machine identity runs. The fixtures are t1200's.
. "$(dirname "$0")/../lib/harness.sh"
docker_up "reproducible kind node image"
fixtures_up "reproducible kind node image"
TAG=imgforge-test/kind-node:t1230-$$
# syft: hack/install-syft.sh (started in the background by .ci/run; this waits for it or builds it).
SYFT=
if bash "$TOP/hack/install-syft.sh" >"$TMP/install-syft.log" 2>&1; then
	SYFT=${SYFT_BINDIR:-/usr/local/bin}/syft
else
	tail -n 20 "$TMP/install-syft.log"
fi
export SOURCE_DATE_EPOCH=1700000000
build() { # NAME: output and download cache of their own
	IMGFORGE_CACHE_DIR=$TMP/cache-$1 "$IMGF" build --only kind-node --var-file "$FIX/vars.json" \
		--var docker_base_image="$BASE" --var kind_node_image="$TAG" \
		--output-dir "$TMP/out-$1" "$TOP/config/debian-12.json" >"$TMP/$1.log" 2>&1 ||
		{ tail -n 40 "$TMP/$1.log"; return 1; }
	id=$(jq -r ".builds[0].artifact_id" "$TMP/out-$1/debian-12+kube-v1.31.2/manifest.json")
	echo "$id" >"$TMP/$1.id"
	# The image as the engine holds it, unpacked: manifest.json, config, layer(s).
	mkdir -p "$TMP/save-$1"
	if [ "$1" = one ] && [ -n "$SYFT" ]; then # syft reads the image as docker save wrote it
		docker save -o "$TMP/one.tar" "$id" && tar -xf "$TMP/one.tar" -C "$TMP/save-one" || return 1
	else
		docker save "$id" | tar -x -C "$TMP/save-$1"
	fi
	# A later build with the same tag leaves this one untagged: remove it by ID.
	docker rmi -f "$id" >/dev/null 2>&1 || true
}
layer() { echo "$TMP/save-$1/$(jq -r '.[0].Layers[0]' "$TMP/save-$1/manifest.json")"; }
config() { echo "$TMP/save-$1/$(jq -r '.[0].Config' "$TMP/save-$1/manifest.json")"; }
at_exit "docker rmi -f $TAG"

test_expect_success "the first build succeeds" 'build one'

test_expect_success "the image is one layer, created at SOURCE_DATE_EPOCH" '
	test "$(jq ".[0].Layers | length" "$TMP/save-one/manifest.json")" = 1 &&
	test "$(jq ".rootfs.diff_ids | length" "$(config one)")" = 1 &&
	test "$(jq -r .created "$(config one)")" = 2023-11-14T22:13:20Z &&
	test "$(jq -r ".history[0].created" "$(config one)")" = 2023-11-14T22:13:20Z &&
	grep -q "mtimes clamped to 1700000000, SOURCE_DATE_EPOCH" "$TMP/one.log"
'

test_expect_success "the layer has numeric owners, clamped mtimes, names in order, no whiteouts" '
	python3 "$TOP/tests/lib/layer-diff.py" check "$(layer one)" "$SOURCE_DATE_EPOCH" &&
	test "sha256:$(sha256sum <"$(layer one)" | cut -d" " -f1)" = "$(jq -r ".rootfs.diff_ids[0]" "$(config one)")" &&
	! tar -tf "$(layer one)" | grep -qx -e .dockerenv -e dev/console
'

test_expect_success "entrypoint, stop signal, env and labels are the image definition's" '
	c=$(config one) &&
	test "$(jq -c .config.Entrypoint "$c")" = "[\"/usr/local/bin/entrypoint\",\"/sbin/init\"]" &&
	test "$(jq -r .config.StopSignal "$c")" = "SIGRTMIN+3" &&
	test "$(jq -c .config.Env "$c")" = "[\"container=docker\",\"$(jq -r .config.Env[1] "$c")\"]" &&
	jq -r ".config.Env[1]" "$c" | grep -q "^PATH=/usr/local/sbin:" &&
	jq -e ".config.Labels[\"io.imgforge.input.containerd\"] | startswith(\"sha256:\")" "$c" &&
	jq -e ".config.Labels[\"io.imgforge.build\"] == null" "$c"
'

test_expect_success "nothing of the squash is left in the build directories" '
	test -z "$(find "$TMP/cache-one/tmp" -mindepth 1 2>/dev/null)" &&
	name=$(grep -oE "build container '"'"'[^'"'"']+'"'"'" "$TMP/one.log" | cut -d"'"'"'" -f2) &&
	test -n "$name" &&
	test -z "$(docker ps -aq --filter "name=^$name\$")"
'

test_expect_success "the shipped packages are in, with no per-machine identity left" '
	l=$(layer one) &&
	mkdir -p "$TMP/root-one" &&
	tar -xf "$l" -C "$TMP/root-one" var/lib/dpkg/status etc/machine-id etc/iscsi &&
	for p in open-iscsi nfs-common jq; do
		grep -qx "Package: $p" "$TMP/root-one/var/lib/dpkg/status" || { echo "no $p"; exit 1; }
	done &&
	test ! -s "$TMP/root-one/etc/machine-id" &&
	grep -qx GenerateName=yes "$TMP/root-one/etc/iscsi/initiatorname.iscsi" &&
	! grep -q "^InitiatorName=" "$TMP/root-one/etc/iscsi/initiatorname.iscsi" &&
	! tar -tf "$l" | grep -E -x -e "etc/ssh/ssh_host_.*" -e var/lib/systemd/random-seed \
		-e var/lib/systemd/credential.secret -e var/lib/dbus/machine-id -e "etc/nvme/host(nqn|id)"
'

# Checked by a tool no one here wrote: syft's dpkg cataloger on the image, and syft's SPDX
# reader (spdx/tools-golang) on imgforge's SBOM.
if [ -n "$SYFT" ]; then
	test_expect_success "syft finds every Debian package of the SBOM at its version, and reads the SBOM as SPDX" '
		sbom=$TMP/out-one/debian-12+kube-v1.31.2/kind-node.spdx.json &&
		jq -e --arg id "$(cut -d: -f2 "$TMP/one.id")" \
			"any(.packages[]; .checksums[0].checksumValue == \$id and .primaryPackagePurpose == \"CONTAINER\")" "$sbom" &&
		jq -r ".packages[] | select(((.externalRefs // [])[0].referenceLocator // \"\") | startswith(\"pkg:deb/\")) | \"\(.name) \(.versionInfo)\"" \
			"$sbom" | LC_ALL=C sort -u >"$TMP/sbom.debs" &&
		test "$(wc -l <"$TMP/sbom.debs")" -ge 20 &&
		"$SYFT" scan "docker-archive:$TMP/one.tar" -q --override-default-catalogers dpkg \
			-o "syft-json=$TMP/syft.json" &&
		jq -r ".artifacts[] | select(.type == \"deb\") | \"\(.name) \(.version)\"" "$TMP/syft.json" |
			LC_ALL=C sort -u >"$TMP/syft.debs" &&
		LC_ALL=C comm -23 "$TMP/sbom.debs" "$TMP/syft.debs" >"$TMP/missing" &&
		if [ -s "$TMP/missing" ]; then
			echo "in the SBOM but not found by syft:" && cat "$TMP/missing" && exit 1
		fi &&
		"$SYFT" convert "$sbom" -q -o "syft-json=$TMP/converted.json" &&
		jq -r ".artifacts[] | select((.purl // \"\") | startswith(\"pkg:deb/\")) | \"\(.name) \(.version)\"" \
			"$TMP/converted.json" | LC_ALL=C sort -u | diff -u "$TMP/sbom.debs" -
	'
	rm -f "$TMP/one.tar"
else
	TEST_CLAIM=1 test_skip "syft finds every Debian package of the SBOM" "hack/install-syft.sh failed (above)"
fi

sleep 2 # another second on the clock: nothing may depend on when the build ran

test_expect_success "a second build of the same config gives the same image ID" '
	build two &&
	python3 "$TOP/tests/lib/layer-diff.py" diff "$(layer one)" "$(layer two)" >"$TMP/diff.txt" &&
	if [ -s "$TMP/diff.txt" ]; then
		echo "files that differ between the two builds:" && cat "$TMP/diff.txt"
	fi &&
	diff <(jq -S . "$(config one)") <(jq -S . "$(config two)") &&
	test -n "$(cat "$TMP/two.id")" &&
	test "$(cat "$TMP/one.id")" = "$(cat "$TMP/two.id")"
'

test_expect_success "containerd's meta.db is in canonical form: transactions 0 and 1, no free pages" '
	grep -q "1 bolt database rewritten" "$TMP/one.log" &&
	tar -xf "$(layer one)" -C "$TMP" var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db &&
	python3 -c "
import struct, sys
b = open(sys.argv[1], \"rb\").read()
txids = [struct.unpack_from(\"<Q\", b, i * 4096 + 16 + 48)[0] for i in (0, 1)]
free = struct.unpack_from(\"<H\", b, 2 * 4096 + 10)[0]
hwm = struct.unpack_from(\"<Q\", b, 16 + 40)[0]
assert txids == [0, 1] and free == 0 and hwm * 4096 == len(b), (txids, free, hwm, len(b))
" "$TMP/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db"
'

# The squash, and its absence, on the small fixture image.
F=$TOP/tests/fixtures/config
test_expect_success "squash: false keeps the base image's layers and adds one per step" '
	cp "$F"/simple*.json "$F"/base.json "$TMP/" &&
	sed -i "s|\"type\": \"docker\",|\"type\": \"docker\", \"squash\": false,|" "$TMP/simple-image.json" &&
	IMGFORGE_CACHE_DIR=$TMP/cache-simple "$IMGF" build --var docker_base_image="$BASE" \
		--output-dir "$TMP/out-simple" "$TMP/simple.json" >"$TMP/simple.log" 2>&1 ||
		{ cat "$TMP/simple.log"; exit 1; }
	id=$(jq -r ".builds[0].artifact_id" "$TMP/out-simple/test-simple+kube-v1.31.2/manifest.json")
	n=$(docker image inspect -f "{{len .RootFS.Layers}}" "$id")
	base=$(docker image inspect -f "{{len .RootFS.Layers}}" "$BASE")
	docker rmi -f "$id" >/dev/null
	test "$n" = $((base + 2)) &&
	! grep -q squashed "$TMP/simple.log"
'

test_expect_success "a bad SOURCE_DATE_EPOCH stops the build before it starts" '
	SOURCE_DATE_EPOCH=yesterday expect_exit 1 env IMGFORGE_CACHE_DIR="$TMP/cache-bad" "$IMGF" build \
		--var docker_base_image="$BASE" --output-dir "$TMP/out-bad" "$F/simple.json" &&
	expect_err "SOURCE_DATE_EPOCH '"'"'yesterday'"'"': expected a number of seconds" &&
	! grep -q "build container" "$TMP/err" &&
	test ! -e "$TMP/out-bad"
'

test_done
