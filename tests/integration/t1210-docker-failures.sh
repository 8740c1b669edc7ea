#!/usr/bin/env bash
# needs: docker fixtures
# Failure paths of the docker builder: nothing half-made is left behind.
. "$(dirname "$0")/../lib/harness.sh"
docker_up "docker failure paths"
fixtures_up "docker failure paths"
F=$TOP/tests/fixtures/config
export IMGFORGE_CACHE_DIR=$TMP/cache
no_build_containers() {
	test -z "$(docker ps -aq --filter "label=io.imgforge.build=$1")"
}

test_expect_success "shell and file steps build an image from the base" '
	TAG=imgforge-test/simple:t1210-$$
	"$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output" "$F/simple.json" \
		>"$TMP/simple.log" 2>&1 || { cat "$TMP/simple.log"; exit 1; }
	id=$(jq -r ".builds[0].artifact_id" "$TMP/output/test-simple+kube-v1.31.2/manifest.json")
	trap "docker rmi -f $id >/dev/null 2>&1" EXIT
	test "$(docker run --rm "$id" cat /greeting)" = "hello from base on amd64" &&
	test "$(docker run --rm "$id" cat /shadowed)" = file &&
	test "$(docker run --rm "$id" stat -c %a /shadowed)" = 644 &&
	no_build_containers simple
'

test_expect_success "file downloads bring target files and trees to the host" '
	"$IMGF" build --var docker_base_image="$BASE" --var download_dir="$TMP/dl" \
		--output-dir "$TMP/output" "$F/download.json" >"$TMP/dl.log" 2>&1 || { cat "$TMP/dl.log"; exit 1; }
	id=$(jq -r ".builds[0].artifact_id" "$TMP/output/test-download+kube-v1.31.2/manifest.json")
	docker rmi -f "$id" >/dev/null 2>&1
	test "$(cat "$TMP/dl/data/sub/report.txt")" = report &&
	test "$(stat -c %a "$TMP/dl/data/sub/report.txt")" = 600 &&
	test "$(readlink "$TMP/dl/data/link")" = sub/report.txt &&
	grep -q "^12" "$TMP/dl/debian_version"
'

test_expect_success "a failing step fails the build, names the step and removes the container" '
	expect_exit 1 "$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output" "$F/failing.json" &&
	expect_err "step 2/3 '"'"'the-failing-step'"'"' (shell)" &&
	expect_err "exited with status 3" &&
	grep -q "about to fail" "$TMP/err" &&
	no_build_containers failing &&
	! docker image inspect imgforge-test/failing:1 >/dev/null 2>&1 &&
	test ! -e "$TMP/output/test-failing+kube-v1.31.2"
'

test_expect_success "--force: a failed build leaves the previous output as it was" '
	o=$TMP/output-force/test-failing+kube-v1.31.2
	mkdir -p "$o" && echo old >"$o/old-output"
	expect_exit 1 "$IMGF" build --force --var docker_base_image="$BASE" \
		--output-dir "$TMP/output-force" "$F/failing.json" &&
	expect_err "exited with status 3" &&
	test "$(cat "$o/old-output")" = old &&
	test "$(ls -A "$TMP/output-force")" = test-failing+kube-v1.31.2
'

test_expect_success "--force: a build that succeeds replaces the previous output" '
	o=$TMP/output-force/test-simple+kube-v1.31.2
	mkdir -p "$o" && echo old >"$o/old-output"
	"$IMGF" build --force --var docker_base_image="$BASE" --output-dir "$TMP/output-force" \
		"$F/simple.json" >"$TMP/force.log" 2>&1 || { cat "$TMP/force.log"; exit 1; }
	id=$(jq -r ".builds[0].artifact_id" "$o/manifest.json")
	docker rmi -f "$id" >/dev/null 2>&1
	test ! -e "$o/old-output" &&
	test "$(ls -A "$TMP/output-force" | sort | tr "\n" " ")" = "test-failing+kube-v1.31.2 test-simple+kube-v1.31.2 "
'

test_expect_success "--on-error=abort keeps the container and says where it is" '
	expect_exit 1 "$IMGF" build --on-error=abort --var docker_base_image="$BASE" \
		--output-dir "$TMP/output" "$F/failing.json" &&
	name=$(grep -oE "keeping build container '"'"'[^'"'"']+'"'"'" "$TMP/err" | cut -d"'"'"'" -f2) &&
	test -n "$name" &&
	trap "docker rm -f $name >/dev/null 2>&1" EXIT &&
	test "$(docker exec "$name" cat /marker)" = before &&
	! docker exec "$name" test -e /never
'

test_expect_success "a base image that cannot be pulled is named, and nothing is left" '
	expect_exit 1 "$IMGF" build --var docker_base_image=imgforge-test/no-such-image:404 \
		--output-dir "$TMP/output-pull" "$F/simple.json" &&
	expect_err "pull base image '"'"'imgforge-test/no-such-image:404'"'"'" &&
	no_build_containers simple &&
	test ! -e "$TMP/output-pull"
'

test_expect_success "pull=never refuses a missing base image without asking the registry" '
	cp "$F"/simple*.json "$F"/base.json "$TMP/" &&
	sed -i "s|\"type\": \"docker\",|\"type\": \"docker\", \"pull\": \"never\",|" "$TMP/simple-image.json" &&
	expect_exit 1 "$IMGF" build --var docker_base_image=imgforge-test/no-such-image:404 \
		--output-dir "$TMP/output-pull" "$TMP/simple.json" &&
	expect_err "base image '"'"'imgforge-test/no-such-image:404'"'"' is not present and pull is '"'"'never'"'"'"
'

test_expect_success "a tampered artifact fails before anything is committed, naming both digests" '
	mkdir -p "$TMP/www/runc"
	rv=$FIXTURE_RUNC_VERSION
	cp -r "$FIX/www/runc/v$rv" "$TMP/www/runc/"
	printf "tampered" >>"$TMP/www/runc/v$rv/runc.amd64"
	python3 "$TOP/tests/lib/httpd.py" --root "$TMP/www" >"$TMP/httpd.port" 2>/dev/null &
	hpid=$!
	trap "kill $hpid" EXIT
	for i in $(seq 50); do [ -s "$TMP/httpd.port" ] && break; sleep 0.1; done
	port=$(head -n1 "$TMP/httpd.port")
	good=$(sha256sum "$FIX/www/runc/v$rv/runc.amd64" | cut -d" " -f1)
	bad=$(sha256sum "$TMP/www/runc/v$rv/runc.amd64" | cut -d" " -f1)
	tag=imgforge-test/tampered:t1210-$$
	expect_exit 1 env IMGFORGE_CACHE_DIR="$TMP/fresh-cache" "$IMGF" build --only kind-node \
		--var-file "$FIX/vars.json" --var docker_base_image="$BASE" --var kind_node_image="$tag" \
		--var runc_url="http://127.0.0.1:$port/runc/v$rv/runc.amd64" \
		--var runc_checksum="file:http://127.0.0.1:$port/runc/v$rv/runc.sha256sum" \
		--output-dir "$TMP/output" "$TOP/config/debian-12.json" &&
	expect_err "sha256 mismatch" && expect_err "$good" && expect_err "$bad" &&
	! docker image inspect "$tag" >/dev/null 2>&1 &&
	no_build_containers kind-node &&
	test ! -e "$TMP/output/debian-12+kube-v1.31.2" &&
	test ! -e "$TMP/fresh-cache/downloads/sha256/$bad" &&
	test ! -e "$TMP/fresh-cache/downloads/sha256/$good" &&
	test -z "$(ls -A "$TMP/fresh-cache/downloads/partial" 2>/dev/null)" &&
	test -z "$(ls -A "$TMP/fresh-cache/tmp" 2>/dev/null)"
'

test_expect_success "an etcd_image at another tag than kubeadm asks for fails naming both, nothing left" '
	tag=imgforge-test/etcd-mismatch:t1210-$$
	# The fixture registry holds etcd at kubeadm'"'"'s tag; the same image at another one too.
	skopeo --policy "$FIX/policy.json" copy -q --src-tls-verify=false --dest-tls-verify=false \
		--src-no-creds --dest-no-creds "docker://127.0.0.1:$FIXTURE_REGISTRY_PORT/etcd:3.5.15-0" \
		"docker://127.0.0.1:$FIXTURE_REGISTRY_PORT/etcd:3.4.0-0" &&
	expect_exit 1 "$IMGF" build --only kind-node --var-file "$FIX/vars.json" \
		--var docker_base_image="$BASE" --var kind_node_image="$tag" \
		--var etcd_image=registry.k8s.io/etcd:3.4.0-0 \
		--var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" \
		--output-dir "$TMP/output" "$TOP/config/debian-12.json" &&
	expect_err "'"'"'registry.k8s.io/etcd:3.4.0-0'"'"' is preloaded, but kubeadm v1.31.2 asks for '"'"'registry.k8s.io/etcd:3.5.15-0'"'"'" &&
	! docker image inspect "$tag" >/dev/null 2>&1 &&
	no_build_containers kind-node &&
	test ! -e "$TMP/output/debian-12+kube-v1.31.2"
'

test_expect_success "SIGINT in the middle of a build leaves no container, image or output" '
	tag=imgforge-test/interrupted:t1210-$$
	"$IMGF" build --only kind-node --var-file "$FIX/vars.json" --var docker_base_image="$BASE" \
		--var kind_node_image="$tag" --var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" \
		--output-dir "$TMP/output" "$TOP/config/debian-12.json" >"$TMP/int.log" 2>&1 &
	pid=$!
	for i in $(seq 600); do
		[ -n "$(docker ps -q --filter label=io.imgforge.build=kind-node)" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	test -n "$(docker ps -q --filter label=io.imgforge.build=kind-node)"
	sleep 1
	kill -INT $pid
	rc=0; wait $pid || rc=$?
	cat "$TMP/int.log"
	test "$rc" -eq 130 &&
	grep -q interrupted "$TMP/int.log" &&
	no_build_containers kind-node &&
	! docker image inspect "$tag" >/dev/null 2>&1 &&
	test ! -e "$TMP/output/debian-12+kube-v1.31.2" &&
	test -z "$(ls -A "$TMP/cache/tmp" 2>/dev/null)"
'

test_done
