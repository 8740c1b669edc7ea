#!/usr/bin/env bash
# lane: vm
# needs: vm
# The step cache with the qemu builder, on t1255's tiny ext4 root (no real OS, no boot
# check) and two file steps: each step's disk is kept as a qcow2 overlay whose backing file
# is the previous step's; a rebuild starts from the deepest cached disk and runs nothing, a
# changed variable reruns only the step that reads it, a disk that no longer has the sha256
# recorded for it is removed and its step run again. The finished image is kept too (a hard
# link in CACHE/steps/qemu/artifacts): a rebuild with nothing changed gives it out again
# without an appliance or a VM.
. "$(dirname "$0")/../lib/harness.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# TCG for imgforge (accelerator: tcg) and guestfish alike: the test is about the cache, and
# an appliance under a nested KVM that passes the probe has been seen to stall here.
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export IMGFORGE_CACHE_DIR=$TMP/cache
why=
require_cmd qemu-img || why="qemu-img is not installed"
[ -n "$why" ] || require_cmd mke2fs || why="mke2fs is not installed"
[ -n "$why" ] || require_cmd guestfish || why="guestfish is not installed"
[ -n "$why" ] || ls /boot/vmlinuz-* >/dev/null 2>&1 || why="no kernel in /boot for the libguestfs appliance"
if [ -n "$why" ]; then
	test_skip "qemu step cache" "$why"
	test_done
fi
mkdir -p "$TMP/root/etc" "$TMP/root/bin" "$TMP/root/usr/bin" "$TMP/root/tmp"
printf 'ID=debian\nVERSION_ID="12"\nNAME="imgforge test root"\n' >"$TMP/root/etc/os-release"
echo 12.0 >"$TMP/root/etc/debian_version"
echo "/dev/sda / ext4 defaults 0 1" >"$TMP/root/etc/fstab"
mke2fs -q -F -t ext4 -d "$TMP/root" "$TMP/base.raw" 64M >/dev/null || die "mke2fs"
cat >"$TMP/image.json" <<'EOF'
{"name": "qemu-steps",
 "builder": {"type": "qemu", "base_image_url": "{{ qemu_base_image_url }}",
             "base_image_checksum": "{{ qemu_base_image_checksum }}", "boot_check": false,
             "accelerator": "tcg"},
 "provisioners": [
   {"type": "file", "name": "first", "content": "{{ a }}\n", "destination": "/etc/a"},
   {"type": "file", "name": "second", "content": "{{ b }}\n", "destination": "/etc/b"}]}
EOF
cat >"$TMP/config.json" <<EOF
{"variables": {"build_name": "test-qemu-steps", "kubernetes_semver": "v1.31.2",
  "qemu_base_image_url": "$TMP/base.raw",
  "qemu_base_image_checksum": "sha256:$(sha256sum "$TMP/base.raw" | cut -d" " -f1)",
  "a": "one", "b": "one"},
 "images": ["image.json"]}
EOF
OUT=$TMP/out/test-qemu-steps+kube-v1.31.2
build() { # LOG [ARGS...]
	local log=$1
	shift
	"$IMGF" build --force --output-dir "$TMP/out" "$@" "$TMP/config.json" >"$TMP/$log.log" 2>&1 ||
		{ tail -n 30 "$TMP/$log.log"; return 1; }
}
ran() { grep -E "qemu-steps: step [0-9]/2: [a-z]+\$" "$TMP/$1.log" | sed 's/.*step //' | tr "\n" " "; }
cached() { grep -cE "qemu-steps: step [0-9]/2: [a-z]+: cached \(" "$TMP/$1.log" || true; }
disks() { ls "$IMGFORGE_CACHE_DIR"/steps/qemu/*.qcow2 2>/dev/null | wc -l; }
artifacts() { ls "$IMGFORGE_CACHE_DIR"/steps/qemu/artifacts/*.qcow2 2>/dev/null | wc -l; }
artifact_of() { jq -r "select(.final) | \"\\(.created) \\(.id)\"" "$IMGFORGE_CACHE_DIR"/steps/*.json |
	sort -n | tail -n 1 | cut -d" " -f2; }
IMG=$OUT/test-qemu-steps+kube-v1.31.2.qcow2
disk_of() { jq -r --arg s "$1" 'select(.step == $s) | "\(.created) \(.id)"' "$IMGFORGE_CACHE_DIR"/steps/*.json |
	sort -n | tail -n 1 | cut -d" " -f2; }

test_expect_success "a cold build keeps each step's disk, the second backed by the first" '
	build cold &&
	test "$(ran cold)" = "1/2: first 2/2: second " &&
	test "$(disks)" = 2 &&
	first=$(disk_of first) && second=$(disk_of second) &&
	test "$(qemu-img info --output=json "$second" | jq -r ".\"backing-filename\"")" = "$first" &&
	test "$(cat "$second.sha256")" = "$(sha256sum "$second" | cut -d" " -f1)" &&
	qemu-img check -q "$OUT/test-qemu-steps+kube-v1.31.2.qcow2"
'

test_expect_success "the finished image is kept as an artifact entry, a link to the output" '
	test "$(artifacts)" = 1 &&
	art=$(artifact_of) &&
	test "$(stat -c %i "$art")" = "$(stat -c %i "$IMG")" &&
	test "$(cat "$art.sha256")" = "$(sha256sum "$IMG" | cut -d" " -f1)" &&
	test "$(cat "$IMG.sha256")" = "$(cat "$art.sha256")" &&
	"$IMGF" cache ls >"$TMP/ls.out" &&
	grep -q "(artifact)" "$TMP/ls.out" &&
	sha256sum "$IMG" | cut -d" " -f1 >"$TMP/cold.sha" &&
	jq -S ".builds[0].inputs" "$OUT/manifest.json" >"$TMP/cold.inputs"
'

test_expect_success "a rebuild with nothing changed gives the image out again: no appliance, no VM" '
	build warm &&
	! grep -q "starting the libguestfs appliance" "$TMP/warm.log" &&
	test -z "$(ran warm)" && test "$(cached warm)" = 2 &&
	grep -q "qemu-steps: nothing changed: the artifact built before is given out again" "$TMP/warm.log" &&
	! grep -q "starts from the cached step disk" "$TMP/warm.log" &&
	! grep -q "writing the compressed image" "$TMP/warm.log" &&
	test "$(sha256sum "$IMG" | cut -d" " -f1)" = "$(cat "$TMP/cold.sha")" &&
	test "$(cat "$IMG.sha256")" = "$(cat "$TMP/cold.sha")" &&
	jq -S ".builds[0].inputs" "$OUT/manifest.json" >"$TMP/warm.inputs" &&
	diff -u "$TMP/cold.inputs" "$TMP/warm.inputs" &&
	test "$(artifacts)" = 1
'

test_expect_success "changing the variable the second step reads reruns only that step" '
	build two --var b=two &&
	test "$(ran two)" = "2/2: second " && test "$(cached two)" = 1 &&
	test "$(disks)" = 3
'

test_expect_success "a cached disk changed behind the cache is removed and its step run again" '
	d=$(disk_of second) &&
	printf "x" | dd of="$d" bs=1 seek=70000 conv=notrunc 2>/dev/null &&
	build damaged --var b=two &&
	grep -q "qemu-steps: second: the cache entry [0-9a-f]* is missing or damaged" "$TMP/damaged.log" &&
	test "$(ran damaged)" = "2/2: second " &&
	test ! -e "$d" &&
	test "$(guestfish --ro -a "$OUT/test-qemu-steps+kube-v1.31.2.qcow2" -m /dev/sda cat /etc/a : cat /etc/b | grep . | tr "\n" " ")" = "one two "
'

test_expect_success "a cached image changed behind the cache is removed and the image built again" '
	art=$(artifact_of) &&
	printf "x" | dd of="$art" bs=1 seek=70000 conv=notrunc 2>/dev/null &&
	build artdamaged --var b=two &&
	grep -q "qemu-steps: artifact: the cache entry [0-9a-f]* is missing or damaged" "$TMP/artdamaged.log" &&
	grep -q "starts from the cached step disk" "$TMP/artdamaged.log" &&
	grep -q "writing the compressed image" "$TMP/artdamaged.log" &&
	test ! -e "$art" &&
	new=$(artifact_of) && test -e "$new" &&
	test "$(cat "$new.sha256")" = "$(sha256sum "$new" | cut -d" " -f1)" &&
	qemu-img check -q "$IMG"
'

test_expect_success "--no-cache runs every step and replaces the cached image" '
	old=$(artifact_of) &&
	build nocache --var b=two --no-cache &&
	test "$(ran nocache)" = "1/2: first 2/2: second " &&
	grep -q "writing the compressed image" "$TMP/nocache.log" &&
	test ! -e "$old" && test -e "$(artifact_of)"
'

test_expect_success "cache prune removes the disks, the images and their sidecars" '
	test "$(artifacts)" -ge 1 &&
	"$IMGF" cache prune >/dev/null &&
	test "$(disks)" = 0 && test "$(artifacts)" = 0 &&
	test -z "$(find "$IMGFORGE_CACHE_DIR"/steps/qemu -type f)" &&
	qemu-img check -q "$IMG"
'

test_done
