#!/usr/bin/env bash
# lane: vm
# needs: vm
# Twin images in the step cache: two qemu images with the same builder and steps — as the
# shipped capi-qcow2 and capi-ova, one with the manifest post-processor, the other with ova
# and manifest — built at once in one `imgforge build --parallel-builds 2`, on t1255's tiny
# ext4 root (no real OS, no boot check). They share each step's key: one entry and one disk
# per step, never a disk removed while the other build stands on it (issue 19, item 4: the
# second save used to delete the qcow2 that was the first build's live backing file). Both
# succeed, the cache holds exactly one intact chain afterwards, a rebuild gives both images
# out again, and prune empties it.
. "$(dirname "$0")/../lib/harness.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export IMGFORGE_CACHE_DIR=$TMP/cache
why=
require_cmd qemu-img || why="qemu-img is not installed"
[ -n "$why" ] || require_cmd mke2fs || why="mke2fs is not installed"
[ -n "$why" ] || require_cmd guestfish || why="guestfish is not installed"
[ -n "$why" ] || ls /boot/vmlinuz-* >/dev/null 2>&1 || why="no kernel in /boot for the libguestfs appliance"
if [ -n "$why" ]; then
	test_skip "qemu twin images in the step cache" "$why"
	test_done
fi
mkdir -p "$TMP/root/etc" "$TMP/root/bin" "$TMP/root/usr/bin" "$TMP/root/tmp"
printf 'ID=debian\nVERSION_ID="12"\nNAME="imgforge test root"\n' >"$TMP/root/etc/os-release"
echo 12.0 >"$TMP/root/etc/debian_version"
echo "/dev/sda / ext4 defaults 0 1" >"$TMP/root/etc/fstab"
mke2fs -q -F -t ext4 -d "$TMP/root" "$TMP/base.raw" 64M >/dev/null || die "mke2fs"
# The same builder and steps; only the post-processors differ, as between the shipped pair.
for twin in qcow2 ova; do
	pp='{"type": "manifest"}'
	[ $twin = ova ] && pp='{"type": "ova"}, {"type": "manifest"}'
	cat >"$TMP/twin-$twin.json" <<EOF
{"name": "twin-$twin",
 "builder": {"type": "qemu", "base_image_url": "{{ qemu_base_image_url }}",
             "base_image_checksum": "{{ qemu_base_image_checksum }}", "boot_check": false,
             "accelerator": "tcg"},
 "provisioners": [
   {"type": "file", "name": "first", "content": "{{ a }}\n", "destination": "/etc/a"},
   {"type": "file", "name": "second", "content": "{{ b }}\n", "destination": "/etc/b"}],
 "post_processors": [$pp]}
EOF
done
cat >"$TMP/config.json" <<EOF
{"variables": {"build_name": "test-twins", "kubernetes_semver": "v1.31.2",
  "qemu_base_image_url": "$TMP/base.raw",
  "qemu_base_image_checksum": "sha256:$(sha256sum "$TMP/base.raw" | cut -d" " -f1)",
  "distro_name": "debian", "distro_version": "12", "containerd_version": "2.0.0",
  "kubernetes_cni_semver": "v1.6.0", "a": "one", "b": "two"},
 "images": ["twin-qcow2.json", "twin-ova.json"]}
EOF
OUT=$TMP/out/test-twins+kube-v1.31.2
IMG=$OUT/test-twins+kube-v1.31.2.qcow2
build() { # LOG [ARGS...]
	local log=$1
	shift
	"$IMGF" build --force --parallel-builds 2 --output-dir "$TMP/out" "$@" "$TMP/config.json" \
		>"$TMP/$log.log" 2>&1 || { tail -n 40 "$TMP/$log.log"; return 1; }
}
disks() { ls "$IMGFORGE_CACHE_DIR"/steps/qemu/*.qcow2 2>/dev/null | sort; }
step_ids() { jq -r 'select(.final == false) | .id' "$IMGFORGE_CACHE_DIR"/steps/*.json | sort; }
# Every entry's disk is there with the sha256 its sidecar records, and its chain passes.
chain_intact() {
	local d
	for d in $(jq -r '.id' "$IMGFORGE_CACHE_DIR"/steps/*.json); do
		test -f "$d" && test "$(cut -c1-64 "$d.sha256")" = "$(sha256sum "$d" | cut -d" " -f1)" &&
			qemu-img check -q "$d" || { echo "damaged: $d"; return 1; }
	done
}

test_expect_success "the twins build at once and both succeed" '
	build cold &&
	grep -q "twin-qcow2: done in" "$TMP/cold.log" &&
	grep -q "twin-ova: done in" "$TMP/cold.log" &&
	test -f "$OUT/test-twins+kube-v1.31.2.ova" &&
	qemu-img check -q "$IMG" &&
	test "$(guestfish --ro -a "$IMG" -m /dev/sda cat /etc/a : cat /etc/b | grep . | tr "\n" " ")" = "one two "
'

test_expect_success "they share one entry and one disk per step: the cache is one intact chain" '
	test "$(jq -r "select(.final == false) | .key" "$IMGFORGE_CACHE_DIR"/steps/*.json | sort -u | wc -l)" = 2 &&
	test "$(step_ids | wc -l)" = 2 &&
	test "$(disks)" = "$(step_ids)" &&
	first=$(jq -r "select(.step == \"first\") | .id" "$IMGFORGE_CACHE_DIR"/steps/*.json) &&
	second=$(jq -r "select(.step == \"second\") | .id" "$IMGFORGE_CACHE_DIR"/steps/*.json) &&
	test "$(qemu-img info --output=json "$second" | jq -r ".\"backing-filename\"")" = "$first" &&
	chain_intact &&
	! grep -q "missing or damaged" "$TMP/cold.log"
'

test_expect_success "the build that came second went on from the disks of the first" '
	shared=$(grep -c "is cached by another build with the same steps" "$TMP/cold.log" || true) &&
	hits=$(grep -cE "twin-[a-z0-9]+: step [0-9]/2: [a-z]+: cached \(" "$TMP/cold.log" || true) &&
	test $((shared + hits)) -ge 2
'

test_expect_success "a rebuild with nothing changed gives both images out again" '
	build warm &&
	grep -q "twin-qcow2: nothing changed: the artifact built before is given out again" "$TMP/warm.log" &&
	grep -q "twin-ova: nothing changed: the artifact built before is given out again" "$TMP/warm.log" &&
	! grep -q "starting the libguestfs appliance" "$TMP/warm.log" &&
	! grep -q "missing or damaged" "$TMP/warm.log" &&
	chain_intact
'

test_expect_success "changing a step reruns it in both, the cache still one chain per key" '
	build changed --var b=three &&
	test "$(step_ids | wc -l)" = 3 && test "$(disks)" = "$(step_ids)" &&
	chain_intact &&
	! grep -q "missing or damaged" "$TMP/changed.log" &&
	test "$(guestfish --ro -a "$IMG" -m /dev/sda cat /etc/b)" = three
'

test_expect_success "prune empties the cache, leaving no disk and no lock behind" '
	"$IMGF" cache prune >/dev/null &&
	test -z "$(find "$IMGFORGE_CACHE_DIR"/steps -type f)"
'

test_done
