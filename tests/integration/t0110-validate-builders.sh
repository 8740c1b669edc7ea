#!/usr/bin/env bash
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

test_done
