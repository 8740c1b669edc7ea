#!/usr/bin/env bash
# lane: vm
# needs: vm
# The qemu builder writes containerd's metadata database (meta.db) in bolt.h's canonical form,
# as the docker builder's squash does: two builds whose meta.db hold the same records in
# different page layouts with different times (tests/fixtures/bolt's a.db and b.db) give the
# same file, its mtime SOURCE_DATE_EPOCH. Every other time after SOURCE_DATE_EPOCH is clamped
# to it too. On t1255's tiny ext4 root, no boot check.
. "$(dirname "$0")/../lib/harness.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export IMGFORGE_CACHE_DIR=$TMP/cache SOURCE_DATE_EPOCH=1700000000
why=
require_cmd qemu-img || why="qemu-img is not installed"
[ -n "$why" ] || require_cmd mke2fs || why="mke2fs is not installed"
[ -n "$why" ] || require_cmd debugfs || why="debugfs is not installed"
[ -n "$why" ] || require_cmd guestfish || why="guestfish is not installed"
[ -n "$why" ] || ls /boot/vmlinuz-* >/dev/null 2>&1 || why="no kernel in /boot for the libguestfs appliance"
if [ -n "$why" ]; then
	test_skip "qemu meta.db" "$why"
	test_done
fi
DB=/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db
mkdir -p "$TMP/root/etc" "$TMP/root/bin" "$TMP/root/tmp" "$TMP/root${DB%/*}"
printf 'ID=debian\nVERSION_ID="12"\nNAME="imgforge test root"\n' >"$TMP/root/etc/os-release"
echo 12.0 >"$TMP/root/etc/debian_version"
echo "/dev/sda / ext4 defaults 0 1" >"$TMP/root/etc/fstab"
# Times before SOURCE_DATE_EPOCH are kept; the rest of the base (made now) is clamped.
echo old >"$TMP/root/etc/old" && touch -d @1000000000 "$TMP/root/etc/old"
ln -s os-release "$TMP/root/etc/link"
echo fixed >"$TMP/root/etc/immutable"
mke2fs -q -F -t ext4 -d "$TMP/root" "$TMP/base.raw" 64M >/dev/null || die "mke2fs"
# An immutable file, as syslinux leaves ldlinux.sys: its times are set through the flag.
flags=$(debugfs -R "stat /etc/immutable" "$TMP/base.raw" 2>/dev/null | sed -n "s/.*Flags: \(0x[0-9a-f]*\).*/\1/p")
[ -n "$flags" ] || die "debugfs: no flags for /etc/immutable"
debugfs -w -R "set_inode_field /etc/immutable flags $(printf "0x%x" $((flags | 0x10)))" "$TMP/base.raw" \
	>/dev/null 2>&1 || die "debugfs: set the immutable flag"
cat >"$TMP/image.json" <<JSON
{"name": "qemu-bolt",
 "builder": {"type": "qemu", "base_image_url": "{{ qemu_base_image_url }}",
             "base_image_checksum": "{{ qemu_base_image_checksum }}", "boot_check": false,
             "accelerator": "tcg"},
 "provisioners": [{"type": "file", "source": "{{ db }}", "destination": "$DB"}]}
JSON
cat >"$TMP/config.json" <<JSON
{"variables": {"build_name": "test-qemu-bolt", "kubernetes_semver": "v1.31.2",
  "qemu_base_image_url": "$TMP/base.raw",
  "qemu_base_image_checksum": "sha256:$(sha256sum "$TMP/base.raw" | cut -d" " -f1)",
  "db": "$TOP/tests/fixtures/bolt/a.db"},
 "images": ["image.json"]}
JSON
build() { # N DB
	"$IMGF" build --no-cache --output-dir "$TMP/out$1" --var db="$2" "$TMP/config.json" \
		>"$TMP/build$1.log" 2>&1 || { tail -n 30 "$TMP/build$1.log"; return 1; }
	guestfish --ro -a "$TMP/out$1"/*/*.qcow2 -m /dev/sda download "$DB" "$TMP/meta$1.db" \
		: stat "$DB" >"$TMP/stat$1"
}

test_expect_success "meta.db is rewritten in canonical form, its mtime SOURCE_DATE_EPOCH" '
	build 1 "$TOP/tests/fixtures/bolt/a.db" &&
	grep -q "meta.db rewritten in canonical form (times clamped to 1700000000" "$TMP/build1.log" &&
	! cmp -s "$TMP/meta1.db" "$TOP/tests/fixtures/bolt/a.db" &&
	grep -q "^mtime: 1700000000\$" "$TMP/stat1"
'

test_expect_success "the same records in another layout give the same file" '
	build 2 "$TOP/tests/fixtures/bolt/b.db" &&
	! cmp -s "$TOP/tests/fixtures/bolt/a.db" "$TOP/tests/fixtures/bolt/b.db" &&
	cmp "$TMP/meta1.db" "$TMP/meta2.db"
'

# "PATH ATIME MTIME" for each path in the first build's image, in one appliance.
lstat_times() {
	local p
	for p in "$@"; do
		printf "echo %s\nlstatns %s\n" "$p" "$p"
	done | guestfish --ro -a "$TMP/out1"/*/*.qcow2 -m /dev/sda |
		awk "/^\// { p = \$1 } /^st_atime_sec:/ { a = \$2 } /^st_mtime_sec:/ { print p, a, \$2 }"
}

test_expect_success "every atime and mtime after SOURCE_DATE_EPOCH is clamped to it (an immutable file too, its flag kept), older ones kept" '
	grep -q "file times clamped to 1700000000" "$TMP/build1.log" &&
	lstat_times / /etc /etc/os-release /etc/link /var/lib/containerd "$DB" /etc/immutable /etc/old \
		>"$TMP/times" &&
	cat "$TMP/times" &&
	test "$(grep -c " 1700000000 1700000000\$" "$TMP/times")" = 7 &&
	guestfish --ro -a "$TMP/out1"/*/*.qcow2 -m /dev/sda get-e2attrs /etc/immutable | grep -q i &&
	grep -qx "/etc/old 1000000000 1000000000" "$TMP/times"
'

test_done
