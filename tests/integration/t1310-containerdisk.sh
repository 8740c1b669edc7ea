#!/usr/bin/env bash
# needs: docker
# The containerdisk post-processor's image as the Docker Engine holds it, after the
# post-processor loaded it: the engine knows the tag under the ID the OCI layout's config
# digest gives (the same image as NAME.containerdisk.tar), linux/amd64, one layer; a container
# of it shows /disk/NAME.qcow2 owned 107:107 mode 0440 under `ls -ln` (run with the host's
# static busybox bind-mounted: a containerDisk has no shell), the qemu user 107 reads the
# qcow2's exact bytes from it, and `docker export` of a container lists disk/ and the qcow2
# with that owner and mode. `docker cp` gives back a file qemu-img reads as the qcow2. skopeo
# reads NAME.containerdisk.tar (oci-archive:) as the same image.
# No VM: the disk is a small qcow2 made with qemu-img and qemu-io, and the post-processor runs
# as `imgforge build` runs it after the qemu builder, through bench/imgf-bench.c's `pp`.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
TEST_CLAIM=1
NAME='ubuntu-2204+kube-v1.31.2'
NAME_RE='ubuntu-2204\+kube-v1\.31\.2' # NAME in an extended regular expression
TAG=imgforge-test/containerdisk:t1310-$$

for cmd in qemu-img qemu-io jq skopeo; do
	if ! require_cmd "$cmd"; then
		test_skip "containerDisk loaded into the engine" "$cmd is not installed"
		test_done
	fi
done
if ! docker_available; then
	test_skip "containerDisk loaded into the engine" "no Docker Engine reachable"
	test_done
fi
if [ ! -x /bin/busybox ] || ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
	test_skip "containerDisk loaded into the engine" "no static /bin/busybox (Debian package busybox-static)"
	test_done
fi
B=${IMGF_BUILD_DIR:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
make -C "$TOP" -s "B=$B" "$B/bench/imgf-bench" >"$TMP/make.log" 2>&1 ||
	{ cat "$TMP/make.log"; die "building $B/bench/imgf-bench failed"; }
DISK=$TMP/out/$NAME.qcow2
CD=$TMP/out/$NAME.containerdisk.tar
at_exit "docker rmi -f $TAG >/dev/null 2>&1"

test_expect_success "the post-processor writes NAME.containerdisk.tar and its .sha256 and loads the image" '
	mkdir -p "$TMP/out"
	qemu-img create -q -f qcow2 "$DISK" 64M
	qemu-io -f qcow2 -c "write -P 0xab 0 1M" -c "write -P 0xcd 32M 64k" "$DISK" >/dev/null
	SOURCE_DATE_EPOCH=1700000000 "$B/bench/imgf-bench" pp "$DISK" \
		"[{\"type\": \"containerdisk\", \"image\": \"$TAG\"}]" >"$TMP/pp.log" 2>&1 ||
		{ cat "$TMP/pp.log"; exit 1; }
	grep -qF "loaded '\''$TAG'\''" "$TMP/pp.log"
	printf "%s  %s\n" "$(cat "$CD.sha256")" "$CD" | sha256sum -c -
'

test_expect_success "the engine holds the layout's image: same ID, linux/amd64, one layer" '
	mkdir "$TMP/oci" && tar -xf "$CD" -C "$TMP/oci"
	man=$(jq -r ".manifests[0].digest" "$TMP/oci/index.json")
	cfg=$(jq -r ".config.digest" "$TMP/oci/blobs/sha256/${man#sha256:}")
	docker image inspect "$TAG" >"$TMP/inspect.json"
	[ "$(jq -r ".[0].Id" "$TMP/inspect.json")" = "$cfg" ]
	[ "$(jq -r ".[0].Os + \"/\" + .[0].Architecture" "$TMP/inspect.json")" = linux/amd64 ]
	[ "$(jq -r ".[0].RootFS.Layers | length" "$TMP/inspect.json")" = 1 ]
'

test_expect_success "skopeo reads NAME.containerdisk.tar as the same image: linux/amd64, the engine's one layer" '
	skopeo inspect "oci-archive:$CD" >"$TMP/skopeo.json"
	[ "$(jq -r ".Os + \"/\" + .Architecture" "$TMP/skopeo.json")" = linux/amd64 ]
	jq -c .Layers "$TMP/skopeo.json" >"$TMP/skopeo.layers"
	jq -c ".[0].RootFS.Layers" "$TMP/inspect.json" | diff -u - "$TMP/skopeo.layers"
'

test_expect_success "a container of it shows /disk/NAME.qcow2 as 107:107 0440, readable by the qemu user" '
	docker run --rm -v /bin/busybox:/.busybox/busybox:ro "$TAG" /.busybox/busybox ls -ln /disk/ \
		>"$TMP/ls" 2>&1 || { cat "$TMP/ls"; exit 1; }
	cat "$TMP/ls"
	grep -qE "^-r--r----- +1 +107 +107 +$(stat -c %s "$DISK") .* $NAME_RE\.qcow2$" "$TMP/ls"
	[ "$(grep -vc "^total " "$TMP/ls")" -eq 1 ] # nothing else in /disk
	docker run --rm --user 107:107 -v /bin/busybox:/.busybox/busybox:ro "$TAG" \
		/.busybox/busybox sha256sum "/disk/$NAME.qcow2" >"$TMP/sum"
	[ "$(cut -d" " -f1 "$TMP/sum")" = "$(sha256sum <"$DISK" | cut -d" " -f1)" ]
'

test_expect_success "docker export lists disk/ and the qcow2 with that owner and mode; docker cp gives the qcow2" '
	cid=$(docker create "$TAG" /none)
	docker export "$cid" | tar -tvf - --numeric-owner >"$TMP/export" || { docker rm "$cid"; exit 1; }
	docker cp "$cid:/disk/$NAME.qcow2" - | tar -xf - -C "$TMP" || { docker rm "$cid"; exit 1; }
	docker rm "$cid" >/dev/null
	grep -E "disk/" "$TMP/export"
	grep -qE "^dr-xr-xr-x 107/107 .* disk/$" "$TMP/export"
	grep -qE "^-r--r----- 107/107 .* disk/$NAME_RE\.qcow2$" "$TMP/export"
	cmp "$DISK" "$TMP/$NAME.qcow2"
	qemu-img info --output=json "$TMP/$NAME.qcow2" | jq -e ".format == \"qcow2\" and .[\"virtual-size\"] == 67108864"
'

test_done
