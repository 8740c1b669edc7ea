#!/usr/bin/env bash
# needs: none
# What the builders check at validate time, before anything is fetched or created: values that
# end up in Engine API paths, libvirt XML or the guest's shell. No Docker or libvirt needed.
. "$(dirname "$0")/../lib/harness.sh"
F=$TOP/tests/fixtures/config
SUM=sha256:0000000000000000000000000000000000000000000000000000000000000000

test_expect_success "docker: an image that is no image reference is refused with file, key and value" '
	expect_exit 1 "$IMGF" validate --var docker_base_image=../../containers/x "$F/simple.json" &&
	expect_err "simple-image.json: builder (docker): image: invalid image reference '"'"'../../containers/x'"'"'" &&
	expect_exit 1 "$IMGF" validate --var "docker_base_image=debian:bookworm?all=1" "$F/simple.json" &&
	expect_err "image: invalid image reference '"'"'debian:bookworm?all=1'"'"'"
'

test_expect_success "docker: references and image IDs are accepted" '
	for ref in debian:bookworm imgforge-test/debian:bookworm-1a2b localhost:5000/a/b:1 \
		"debian@$SUM" sha256:dfa41c1d21ae; do
		expect_exit 0 "$IMGF" validate --var docker_base_image="$ref" "$F/simple.json" || exit 1
	done
'

# A qemu image definition with a name of our choosing.
qemu_config() { # NAME
	mkdir -p "$TMP/q"
	sed "s|\"qemu-failing\"|$(printf "%s" "$1" | jq -R .)|" "$F/qemu-failing-image.json" >"$TMP/q/qemu-failing-image.json"
	cp "$F/qemu-failing.json" "$TMP/q/"
}

test_expect_success "qemu: an image name outside the safe set is refused (it names the libvirt domain)" '
	qemu_config "x</name><on_crash>preserve</on_crash><name>y" &&
	expect_exit 1 "$IMGF" validate "$TMP/q/qemu-failing.json" &&
	expect_err "qemu-failing-image.json: builder (qemu): name: '"'"'x</name><on_crash>preserve</on_crash><name>y'"'"'" &&
	expect_err "expected letters, digits" &&
	qemu_config "a b" && expect_exit 1 "$IMGF" validate "$TMP/q/qemu-failing.json" &&
	qemu_config "capi-qcow2_v1.2" && expect_exit 0 "$IMGF" validate "$TMP/q/qemu-failing.json"
'

test_expect_success "qemu: kubernetes_semver must be a version (it reaches the guest's shell)" '
	for v in "v1.31.2;reboot" "\$(reboot)" "v1.31.2=x" "~root" "v1.31" "1.31.2-" "v1.31.2 x"; do
		expect_exit 1 "$IMGF" validate --var "kubernetes_semver=$v" "$F/qemu-failing.json" || exit 1
		expect_err "kubernetes_semver: '"'"'$v'"'"' is not a version like v1.31.2" || exit 1
	done
	for v in v1.31.2 1.31.2 v1.32.0-alpha.1.123+abcdef v1.31.2-1; do
		expect_exit 0 "$IMGF" validate --var "kubernetes_semver=$v" "$F/qemu-failing.json" || exit 1
	done
'

test_expect_success "qemu: arch other than amd64 is refused (the VM is qemu-system-x86_64); docker takes it" '
	expect_exit 1 "$IMGF" validate --var arch=arm64 "$TOP/config/debian-12.json" &&
	expect_err "capi-qcow2.json: builder (qemu): arch: '"'"'arm64'"'"': the qemu builder makes amd64 images only" &&
	expect_exit 0 "$IMGF" validate --only kind-node --var arch=arm64 "$TOP/config/debian-12.json"
'

test_expect_success "qemu: firmware other than bios or uefi is refused, naming it; bios and uefi are taken" '
	for fw in efi BIOS "" "uefi;reboot"; do
		expect_exit 1 "$IMGF" validate --var "firmware=$fw" "$TOP/config/debian-13.json" || exit 1
		expect_err "capi-qcow2.json: builder (qemu): firmware: '"'"'$fw'"'"': expected bios or uefi" || exit 1
	done
	expect_exit 0 "$IMGF" validate --var firmware=bios "$TOP/config/debian-13.json" &&
	expect_exit 0 "$IMGF" validate --var firmware=uefi --var boot_check=false "$TOP/config/debian-13.json"
'

test_expect_success "qemu: a refused firmware leaves nothing behind (build stops before any fetch)" '
	export IMGFORGE_CACHE_DIR=$TMP/fw-cache
	expect_exit 1 "$IMGF" build --var firmware=efi --output-dir "$TMP/fw-out" "$TOP/config/debian-13.json" &&
	expect_err "firmware: '"'"'efi'"'"': expected bios or uefi" &&
	test ! -e "$TMP/fw-out" && test -z "$(ls -A "$TMP/fw-cache" 2>/dev/null)"
'

test_done
