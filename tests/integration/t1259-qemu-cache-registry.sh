#!/usr/bin/env bash
# lane: vm
# needs: vm
# The qemu builder's step cache in a registry (issue 20 part 2), on t1256's tiny ext4 root and
# three file steps, Debian's docker-registry on a loopback port: machine A (a step cache of its
# own) builds cold with --cache-to, each step's qcow2 overlay pushed as it is made as an OCI
# artifact (its one layer the overlay, media type application/vnd.imgforge.qemu.overlay.v1+qcow2)
# with its record; machine B (an empty IMGFORGE_CACHE_DIR) builds with --cache-from, takes
# every step from the registry (each overlay verified by digest and stacked on the one below),
# runs none, and its image holds what A's holds; with the last step's input changed B runs only
# that step; an overlay tampered with in the registry's storage is named in a warning and its
# step and those after it run again; A with everything cached exports its cached steps to a
# repository that lacks them, bottom first. Quick steps (two sysprep steps, run by busybox in
# the root) are kept once, with the last of them: what is exported and taken stands on the
# kept step below it.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# TCG for imgforge (accelerator: tcg) and guestfish alike, as t1256.
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export DOCKER_CONFIG=$TMP/no-docker-config
why=
for c in qemu-img mke2fs guestfish docker-registry curl jq; do
	[ -n "$why" ] || require_cmd "$c" || why="$c is not installed"
done
[ -n "$why" ] || ls /boot/vmlinuz-* >/dev/null 2>&1 || why="no kernel in /boot for the libguestfs appliance"
if [ -n "$why" ]; then
	test_skip "the qemu step cache in a registry" "$why"
	test_done
fi
. "$TOP/tests/lib/registry.sh"
start_registry reg
REG=127.0.0.1:$PORT
CACHE=$REG/imgforge/qemu-cache

mkdir -p "$TMP/root/etc" "$TMP/root/bin" "$TMP/root/usr/bin" "$TMP/root/tmp" "$TMP/root/dev" "$TMP/root/proc" "$TMP/root/sys"
# A shell for the sysprep steps: busybox-static (hack/install-deps.sh) and the applets
# sysprep's script calls.
if [ -x /bin/busybox ]; then
	cp /bin/busybox "$TMP/root/bin/busybox"
	for a in sh rm grep chmod find; do ln -s busybox "$TMP/root/bin/$a"; done
fi
printf 'ID=debian\nVERSION_ID="12"\nNAME="imgforge test root"\n' >"$TMP/root/etc/os-release"
echo 12.0 >"$TMP/root/etc/debian_version"
echo "/dev/sda / ext4 defaults 0 1" >"$TMP/root/etc/fstab"
mke2fs -q -F -t ext4 -d "$TMP/root" "$TMP/base.raw" 64M >/dev/null || die "mke2fs"
cat >"$TMP/image.json" <<'EOF'
{"name": "qemu-reg",
 "builder": {"type": "qemu", "base_image_url": "{{ qemu_base_image_url }}",
             "base_image_checksum": "{{ qemu_base_image_checksum }}", "boot_check": false,
             "accelerator": "tcg"},
 "provisioners": [
   {"type": "file", "name": "first", "content": "{{ a }}\n", "destination": "/etc/a"},
   {"type": "file", "name": "second", "content": "{{ b }}\n", "destination": "/etc/b"},
   {"type": "file", "name": "third", "content": "{{ c }}\n", "destination": "/etc/c"}]}
EOF
cat >"$TMP/config.json" <<EOF
{"variables": {"build_name": "test-qemu-reg", "kubernetes_semver": "v1.31.2",
  "qemu_base_image_url": "$TMP/base.raw",
  "qemu_base_image_checksum": "sha256:$(sha256sum "$TMP/base.raw" | cut -d" " -f1)",
  "a": "one", "b": "one", "c": "one"},
 "images": ["image.json"]}
EOF

cat >"$TMP/quick.json" <<'EOF'
{"name": "qemu-quick",
 "builder": {"type": "qemu", "base_image_url": "{{ qemu_base_image_url }}",
             "base_image_checksum": "{{ qemu_base_image_checksum }}", "boot_check": false,
             "accelerator": "tcg"},
 "provisioners": [
   {"type": "file", "name": "first", "content": "{{ a }}\n", "destination": "/etc/a"},
   {"type": "sysprep", "name": "prepone"},
   {"type": "sysprep", "name": "preptwo"},
   {"type": "file", "name": "last", "content": "{{ c }}\n", "destination": "/etc/c"}]}
EOF
jq '.images = ["quick.json"]' "$TMP/config.json" >"$TMP/config-quick.json"

# build LOG [ARGS...]: a machine of its own per LOG (its step cache $TMP/cache-LOG, empty at
# first; that of $ON when set), the image in $TMP/out-LOG.
build() {
	local log=$1
	shift
	IMGFORGE_CACHE_DIR=$TMP/cache-${ON:-$log} "$IMGF" build --force --output-dir "$TMP/out-$log" "$@" \
		"$TMP/${CONFIG:-config}.json" >"$TMP/$log.log" 2>&1 || { tail -n 30 "$TMP/$log.log"; return 1; }
}
img() { echo "$TMP/out-$1/test-qemu-reg+kube-v1.31.2/test-qemu-reg+kube-v1.31.2.qcow2"; }
ran() { grep -E "qemu-reg: step [0-9]/3: [a-z]+\$" "$TMP/$1.log" | sed 's/.*step //' | tr "\n" " "; }
cached() { grep -cE "qemu-reg: step [0-9]/3: [a-z]+: cached \(" "$TMP/$1.log" || true; }
# content LOG: /etc/a, /etc/b, /etc/c of its image, and the sha256 of a tar of its whole tree
# into $TMP/LOG.tree (one appliance)
content() {
	guestfish --ro -a "$(img "$1")" -m /dev/sda cat /etc/a : cat /etc/b : cat /etc/c : \
		tar-out / "$TMP/$1.tar" numericowner:true | grep . | tr "\n" " " &&
		sha256sum <"$TMP/$1.tar" | cut -d" " -f1 >"$TMP/$1.tree"
}
key_of() { sed -n "s/.*step '$2' exported to '.*:step-\([0-9a-f]\{64\}\)'.*/\1/p" "$TMP/$1.log"; }
manifest() {
	curl -fsS -H "Accept: application/vnd.oci.image.manifest.v1+json" \
		"http://$REG/v2/imgforge/qemu-cache/manifests/$1"
}

test_expect_success "A builds cold with --cache-to: every step runs and its overlay is exported as it is made" '
	build a --cache-to "$CACHE" &&
	test "$(ran a)" = "1/3: first 2/3: second 3/3: third " &&
	test "$(grep -c "qemu-reg: step .* exported to .$CACHE:step-[0-9a-f]\{64\}." "$TMP/a.log")" = 3 &&
	test "$(content a)" = "one one one " &&
	curl -fsS "http://$REG/v2/imgforge/qemu-cache/tags/list" | jq -r ".tags[]" >"$TMP/tags" &&
	test "$(grep -cE "^step-[0-9a-f]{64}\$" "$TMP/tags")" = 3 &&
	test "$(grep -cE "^step-[0-9a-f]{64}\\.record\$" "$TMP/tags")" = 3
'

test_expect_success "each state is an OCI artifact: one layer, the step disk as A keeps it, its config names the key below" '
	k2=$(key_of a second) && k1=$(key_of a first) &&
	manifest "step-$k2" >"$TMP/m2.json" &&
	jq -e ".artifactType == \"application/vnd.imgforge.step.v1\" and (.layers | length) == 1 and
		.layers[0].mediaType == \"application/vnd.imgforge.qemu.overlay.v1+qcow2\" and
		.config.mediaType == \"application/vnd.imgforge.step.config.v1+json\"" "$TMP/m2.json" &&
	d=$(jq -r ".layers[0].digest" "$TMP/m2.json") &&
	disk=$(jq -r --arg k "$k2" "select(.key == \$k) | .id" "$TMP/cache-a/steps/"*.json) &&
	test "sha256:$(sha256sum <"$disk" | cut -d" " -f1)" = "$d" &&
	c=$(jq -r ".config.digest" "$TMP/m2.json") &&
	curl -fsS "http://$REG/v2/imgforge/qemu-cache/blobs/$c" | jq -e --arg k "$k2" --arg b "$k1" \
		".imgforge.key == \$k and .imgforge.below == \$b"
'

test_expect_success "B, an empty step cache, builds with --cache-from: no step runs, its image holds the tree of A" '
	build b --cache-from "$CACHE" &&
	test -z "$(ran b)" && test "$(cached b)" = 3 &&
	grep -q "qemu-reg: steps 1 to 3 of 3 come from the registry cache .$CACHE." "$TMP/b.log" &&
	! grep -q "warning: qemu-reg" "$TMP/b.log" &&
	test "$(ls "$TMP/cache-b/steps/qemu/"*.qcow2 | wc -l)" = 3 &&
	test "$(content b)" = "one one one " &&
	test "$(cat "$TMP/b.tree")" = "$(cat "$TMP/a.tree")" &&
	jq -S ".builds[0].inputs" "$TMP/out-a"/*/manifest.json >"$TMP/a.inputs" &&
	jq -S ".builds[0].inputs" "$TMP/out-b"/*/manifest.json | diff -u "$TMP/a.inputs" -
'

test_expect_success "the input of the last step changed: B takes the first two from the registry and runs only the third" '
	build b2 --cache-from "$CACHE" --var c=two &&
	test "$(ran b2)" = "3/3: third " && test "$(cached b2)" = 2 &&
	grep -q "qemu-reg: steps 1 to 2 of 3 come from the registry cache" "$TMP/b2.log" &&
	test "$(content b2)" = "one one two "
'

test_expect_success "an overlay tampered with in the registry: a warning names it and the step, which runs again with the rest" '
	k2=$(key_of a second) &&
	blob=$(manifest "step-$k2" | jq -r ".layers[0].digest") &&
	data=$TMP/reg/storage/docker/registry/v2/blobs/sha256/${blob:7:2}/${blob#sha256:}/data &&
	test -f "$data" &&
	printf "tampered" | dd of="$data" bs=1 seek=70000 conv=notrunc status=none &&
	build b3 --cache-from "$CACHE" &&
	grep "warning" "$TMP/b3.log" >"$TMP/b3.warn" &&
	grep -q "step 2/3 '"'"'second'"'"': the cache entry [0-9a-f]\{12\} in .$CACHE. is not used" "$TMP/b3.warn" &&
	grep -q "blob '"'"'$blob'"'"': sha256 mismatch" "$TMP/b3.warn" &&
	test "$(ran b3)" = "2/3: second 3/3: third " && test "$(cached b3)" = 1 &&
	test "$(content b3)" = "one one one "
'

test_expect_success "A again, nothing changed, --cache-to a repository that has nothing: every cached step is exported, none runs" '
	ON=a build a-again --cache-to "$REG/imgforge/other" &&
	test -z "$(ran a-again)" &&
	grep -q "nothing changed: the artifact built before is given out again" "$TMP/a-again.log" &&
	test "$(grep -c "qemu-reg: step .* exported to .$REG/imgforge/other:step-" "$TMP/a-again.log")" = 3 &&
	for s in first second third; do
		test "$(manifest "step-$(key_of a $s)" | jq -r ".layers[0].digest")" = \
			"$(curl -fsS -H "Accept: application/vnd.oci.image.manifest.v1+json" \
				"http://$REG/v2/imgforge/other/manifests/step-$(key_of a $s)" | jq -r ".layers[0].digest")" || exit 1
	done
'

test_expect_success "quick steps in a run are kept once, with the last: A exports the kept steps, each on the kept one below, and B takes them all" '
	test -x "$TMP/root/bin/busybox" &&
	CONFIG=config-quick build qa --cache-to "$REG/imgforge/quick" &&
	test "$(grep -cE "qemu-quick: step [0-9]/4: [a-z]+\$" "$TMP/qa.log")" = 4 &&
	grep "qemu-quick: step .* exported to .$REG/imgforge/quick:step-" "$TMP/qa.log" |
		sed "s/.*step .\([a-z]*\). exported.*/\1/" | tr "\n" " " >"$TMP/qa.exported" &&
	test "$(cat "$TMP/qa.exported")" = "first preptwo last " &&
	k=$(key_of qa preptwo) && kb=$(key_of qa first) &&
	c=$(curl -fsS -H "Accept: application/vnd.oci.image.manifest.v1+json" \
		"http://$REG/v2/imgforge/quick/manifests/step-$k" | jq -r ".config.digest") &&
	curl -fsS "http://$REG/v2/imgforge/quick/blobs/$c" | jq -e --arg b "$kb" ".imgforge.below == \$b" &&
	CONFIG=config-quick build qb --cache-from "$REG/imgforge/quick" &&
	! grep -qE "qemu-quick: step [0-9]/4: [a-z]+\$" "$TMP/qb.log" &&
	test "$(grep -cE "qemu-quick: step [0-9]/4: [a-z]+: cached \(" "$TMP/qb.log")" = 4 &&
	grep -q "qemu-quick: steps 1 to 4 of 4 come from the registry cache" "$TMP/qb.log" &&
	! grep -q "warning: qemu-quick" "$TMP/qb.log"
'

test_done
