#!/usr/bin/env bash
# needs: docker
# --parallel-builds: two docker images built at once, their lines prefixed, their events
# carrying the image; a failure cancels the other (nothing left), --on-error=abort lets it
# finish, and SIGINT stops both.
. "$(dirname "$0")/../lib/harness.sh"
F=$TOP/tests/fixtures/config

test_expect_success "--parallel-builds takes a positive number" '
	for n in 0 -1 two 2x ""; do
		expect_exit 2 "$IMGF" build --parallel-builds "$n" "$F/simple.json" || exit 1
		expect_err "--parallel-builds '"'"'$n'"'"': expected a positive number of builds"
	done
	expect_exit 2 "$IMGF" build "$F/simple.json" --parallel-builds &&
	expect_err "option '"'"'--parallel-builds'"'"' needs a value" &&
	expect_exit 2 "$IMGF" validate --parallel-builds 2 "$F/simple.json" &&
	expect_err "unknown option" &&
	expect_exit 0 "$IMGF" build --help && grep -q -- "--parallel-builds N" "$TMP/out"
'

docker_up "parallel builds"
export IMGFORGE_CACHE_DIR=$TMP/cache
A=t1240-alpha
B=t1240-beta
# Two cheap images from the base: alpha sleeps `slow_seconds`, beta sleeps `beta_seconds`
# and then exits `beta_exit`.
cat >"$TMP/par.json" <<EOF
{
  "variables": {"build_name": "test-par", "kubernetes_semver": "v1.37.2",
                "docker_base_image": "$BASE", "slow_seconds": "3", "beta_seconds": "1",
                "beta_exit": "0"},
  "images": ["alpha.json", "beta.json"]
}
EOF
cat >"$TMP/alpha.json" <<EOF
{
  "name": "$A",
  "builder": {"type": "docker", "image": "{{ docker_base_image }}", "squash": false},
  "provisioners": [
    {"type": "shell", "name": "who", "inline": ["echo alpha > /who", "echo alpha says hi"]},
    {"type": "shell", "name": "slow", "inline": ["sleep {{ slow_seconds }}", "echo alpha slept"]}
  ]
}
EOF
cat >"$TMP/beta.json" <<EOF
{
  "name": "$B",
  "builder": {"type": "docker", "image": "{{ docker_base_image }}", "squash": false},
  "provisioners": [
    {"type": "shell", "name": "who", "inline": ["echo beta > /who", "echo beta says hi", "sleep {{ beta_seconds }}"]},
    {"type": "shell", "name": "maybe-fail", "inline": ["echo beta exits {{ beta_exit }}", "exit {{ beta_exit }}"]}
  ]
}
EOF
containers_of() {
	docker ps -aq --filter "label=io.imgforge.build=$1"
}
no_build_containers() {
	test -z "$(containers_of $A)" && test -z "$(containers_of $B)"
}
remove_images() {
	docker images -q --filter "label=io.imgforge.image=$A" | xargs -r docker rmi -f
	docker images -q --filter "label=io.imgforge.image=$B" | xargs -r docker rmi -f
}
at_exit "containers_of $A | xargs -r docker rm -f; containers_of $B | xargs -r docker rm -f"
at_exit remove_images
OUT=$TMP/output/test-par+kube-v1.37.2

test_expect_success "two images build at once: both outputs, events with the image, overlapping" '
	expect_exit 0 "$IMGF" build --json --output-dir "$TMP/output" "$TMP/par.json" &&
	cp "$TMP/out" "$TMP/events.json" &&
	test "$(jq -r "[.builds[].name] | join(\" \")" "$OUT/manifest.json")" = "$A $B" &&
	for i in 0 1; do
		id=$(jq -r ".builds[$i].artifact_id" "$OUT/manifest.json")
		want=$(jq -r ".builds[$i].name" "$OUT/manifest.json" | sed "s/t1240-//")
		test "$(docker run --rm "$id" cat /who)" = "$want" || exit 1
	done &&
	jq -se "any(.[]; .event == \"parallel-builds\" and .images == 2 and .at_once == 2)" "$TMP/events.json" &&
	# Everything a build says names its image; only the run itself speaks without one.
	jq -r "select(.image == null) | .event + \" \" + (.message // \"\")" "$TMP/events.json" >"$TMP/anon" &&
	cat "$TMP/anon" &&
	! grep -vE "^(parallel-builds ?|log building 2 images, 2 at once|log manifest: .*)$" "$TMP/anon" &&
	jq -se "any(.[]; .event == \"output\" and .step == \"who\" and (.data | contains(\"alpha says hi\")) and .image == \"$A\")" "$TMP/events.json" &&
	jq -se "any(.[]; .event == \"output\" and .step == \"who\" and (.data | contains(\"beta says hi\")) and .image == \"$B\")" "$TMP/events.json" &&
	jq -se "all(.[] | select(.event == \"log\" and (.message | startswith(\"committed\"))); .image != null)" "$TMP/events.json" &&
	# Overlap: each build started before the other was done.
	jq -se "([.[] | select(.event == \"build-start\") | .time] | max) <
		([.[] | select(.event == \"build-done\") | .time] | min)" "$TMP/events.json" &&
	no_build_containers
'

test_expect_success "each line of a parallel build carries its image" '
	remove_images >/dev/null 2>&1
	expect_exit 0 "$IMGF" build --force --output-dir "$TMP/output" "$TMP/par.json" &&
	cat "$TMP/err" &&
	grep -qxF "    $A: who: alpha says hi" "$TMP/err" &&
	grep -qxF "    $B: who: beta says hi" "$TMP/err" &&
	grep -qxF "==> $A: step 2/2: slow" "$TMP/err" &&
	grep -qE "^==> $B: committed " "$TMP/err" &&
	! grep -E "$A: $A:|$B: $B:" "$TMP/err" &&
	! grep -vE "^(==> |    )($A|$B): |^==> building 2 images, 2 at once$|^==> manifest: " "$TMP/err"
'

test_expect_success "commits into the shared output directory take turns" '
	remove_images >/dev/null 2>&1
	# Squashed commits take seconds: without the turns they would overlap.
	for f in par alpha beta; do
		sed -e "s/\"squash\": false/\"squash\": true/" -e "s/alpha.json/alpha-sq.json/" \
			-e "s/beta.json/beta-sq.json/" "$TMP/$f.json" >"$TMP/$f-sq.json"
	done
	expect_exit 0 "$IMGF" build --json --var slow_seconds=1 --force --output-dir "$TMP/output" \
		"$TMP/par-sq.json" &&
	jq -c "select(.event == \"phase\" or .event == \"build-done\")" "$TMP/out" &&
	jq -se "[.[] | select(.event == \"phase\" and .phase == \"wait-outputs\")] | length == 1" "$TMP/out" &&
	jq -se "([.[] | select(.event == \"phase\" and .phase == \"wait-outputs\") | .image] | first) as \$w |
		([.[] | select(.event == \"build-done\" and .image != \$w) | .time] | first) <=
		([.[] | select(.event == \"log\" and .image == \$w and (.message | startswith(\"squashed\"))) | .time] | first)" "$TMP/out"
'

test_expect_success "--parallel-builds 1 builds one after the other, as before" '
	remove_images >/dev/null 2>&1
	expect_exit 0 "$IMGF" build --parallel-builds 1 --json --force --output-dir "$TMP/output" \
		"$TMP/par.json" &&
	jq -se "([.[] | select(.event == \"build-done\" and .image == \"$A\") | .time] | first) <
		([.[] | select(.event == \"build-start\" and .image == \"$B\") | .time] | first)" "$TMP/out" &&
	! jq -se "any(.[]; .event == \"parallel-builds\")" "$TMP/out" &&
	remove_images >/dev/null 2>&1 &&
	expect_exit 0 "$IMGF" build --parallel-builds 1 --force --output-dir "$TMP/output" "$TMP/par.json" &&
	grep -qxF "    who: alpha says hi" "$TMP/err" &&
	grep -qxF "==> $B: step 2/2: maybe-fail" "$TMP/err"
'

test_expect_success "a failure cancels the other build: exit 1, no container, output or temp" '
	remove_images >/dev/null 2>&1
	start=$(date +%s)
	expect_exit 1 "$IMGF" build --json --var slow_seconds=300 --var beta_exit=7 \
		--output-dir "$TMP/output-fail" "$TMP/par.json" &&
	took=$(( $(date +%s) - start )) &&
	cat "$TMP/err" &&
	test "$took" -lt 120 &&
	expect_err "image '"'"'$B'"'"': step 2/2 '"'"'maybe-fail'"'"' (shell)" &&
	expect_err "exited with status 7" &&
	jq -se "any(.[]; .event == \"cancelled\" and .image == \"$A\")" "$TMP/out" &&
	jq -se "any(.[]; .event == \"error\" and .status == 1)" "$TMP/out" &&
	! jq -se "any(.[]; .event == \"build-done\")" "$TMP/out" &&
	no_build_containers &&
	test -z "$(docker images -q --filter label=io.imgforge.image=$A)" &&
	test ! -e "$TMP/output-fail" &&
	test -z "$(ls -A "$IMGFORGE_CACHE_DIR/tmp" 2>/dev/null)"
'

test_expect_success "the human log says which build failed and which was cancelled" '
	expect_exit 1 "$IMGF" build --var slow_seconds=300 --var beta_exit=7 \
		--output-dir "$TMP/output-fail" "$TMP/par.json" &&
	cat "$TMP/err" &&
	expect_err "==> warning: image '"'"'$B'"'"' failed: cancelling the other builds" &&
	expect_err "==> warning: $A: cancelled: another image failed" &&
	expect_err "imgforge: error: image '"'"'$B'"'"': step 2/2" &&
	no_build_containers
'

test_expect_success "--on-error=abort: the failed build keeps its container, the other finishes" '
	expect_exit 1 "$IMGF" build --on-error=abort --var beta_exit=7 \
		--output-dir "$TMP/output-abort" "$TMP/par.json" &&
	cat "$TMP/err" &&
	name=$(grep -oE "keeping build container '"'"'[^'"'"']+'"'"'" "$TMP/err" | cut -d"'"'"'" -f2) &&
	test -n "$name" &&
	test "$(containers_of $B)" = "$(docker ps -aq --filter name=^/$name\$)" &&
	test "$(docker exec "$name" cat /who)" = beta &&
	docker rm -f "$name" >/dev/null &&
	test -z "$(containers_of $A)" &&
	o=$TMP/output-abort/test-par+kube-v1.37.2 &&
	test "$(jq -r "[.builds[].name] | join(\" \")" "$o/manifest.json")" = "$A" &&
	test "$(docker run --rm "$(jq -r ".builds[0].artifact_id" "$o/manifest.json")" cat /who)" = alpha &&
	! grep -q cancelled "$TMP/err"
'

test_expect_success "SIGINT stops both builds and leaves nothing" '
	remove_images >/dev/null 2>&1
	"$IMGF" build --var slow_seconds=300 --var beta_seconds=300 \
		--output-dir "$TMP/output-int" "$TMP/par.json" >"$TMP/int.log" 2>&1 &
	pid=$!
	for i in $(seq 600); do
		[ -n "$(docker ps -q --filter label=io.imgforge.build=$A)" ] &&
			[ -n "$(docker ps -q --filter label=io.imgforge.build=$B)" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	sleep 2
	start=$(date +%s)
	kill -INT $pid
	rc=0; wait $pid || rc=$?
	cat "$TMP/int.log"
	test "$rc" -eq 130 &&
	test $(( $(date +%s) - start )) -lt 60 &&
	grep -q "$A: .*interrupted\|image '"'"'$A'"'"': .*interrupted" "$TMP/int.log" &&
	no_build_containers &&
	test ! -e "$TMP/output-int" &&
	test -z "$(ls -A "$IMGFORGE_CACHE_DIR/tmp" 2>/dev/null)"
'

# A docker image and a VM image at once: the qemu builder (libguestfs) in a build process of
# its own. The VM's base is a tiny ext4 filesystem (as in t1255), no boot check; TCG, because
# where /dev/kvm passes the probe but the appliance then hangs, no test should depend on it.
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
why=
require_cmd qemu-img || why="qemu-img is not installed"
[ -n "$why" ] || require_cmd mke2fs || why="mke2fs is not installed"
[ -n "$why" ] || ls /boot/vmlinuz-* >/dev/null 2>&1 || why="no kernel in /boot for the libguestfs appliance"
if [ -n "$why" ]; then
	test_skip "a docker and a qemu image at once" "$why"
	test_done
fi
vm_accel_env
mkdir -p "$TMP/root/etc" "$TMP/root/bin" "$TMP/root/usr/bin" "$TMP/root/tmp"
printf 'ID=debian\nVERSION_ID="12"\nNAME="imgforge test root"\n' >"$TMP/root/etc/os-release"
echo 12.0 >"$TMP/root/etc/debian_version"
echo "/dev/sda / ext4 defaults 0 1" >"$TMP/root/etc/fstab"
mke2fs -q -F -t ext4 -d "$TMP/root" "$TMP/base.raw" 64M >/dev/null || die "mke2fs"
cat >"$TMP/mix.json" <<EOF
{
  "variables": {"build_name": "test-mix", "kubernetes_semver": "v1.31.2",
                "docker_base_image": "$BASE", "slow_seconds": "1", "beta_seconds": "1", "beta_exit": "0", "vm_says": "vm",
                "qemu_base_image_url": "$TMP/base.raw",
                "qemu_base_image_checksum": "sha256:$(sha256sum "$TMP/base.raw" | cut -d" " -f1)"},
  "images": ["vm.json", "beta.json"]
}
EOF
cat >"$TMP/vm.json" <<'EOF'
{
  "name": "t1240-vm",
  "builder": {"type": "qemu", "base_image_url": "{{ qemu_base_image_url }}",
              "base_image_checksum": "{{ qemu_base_image_checksum }}", "boot_check": false,
              "accelerator": "tcg"},
  "provisioners": [{"type": "file", "content": "{{ vm_says }}\n", "destination": "/who"}]
}
EOF
# The VM's work directory, named in the log, must be gone.
vm_work_dir_gone() {
	local d
	d=$(grep -oE "/[^ ]*/imgforge-qemu-[^/ ]+" "$1" | head -n1)
	test -n "$d" && test ! -e "$d"
}

test_expect_success "a docker and a qemu image build at once, both outputs in place" '
	remove_images >/dev/null 2>&1
	expect_exit 0 "$IMGF" build --json --output-dir "$TMP/output-mix" "$TMP/mix.json" &&
	o=$TMP/output-mix/test-mix+kube-v1.31.2 &&
	test "$(jq -r "[.builds[].name] | join(\" \")" "$o/manifest.json")" = "t1240-vm $B" &&
	qemu-img check -q "$o/test-mix+kube-v1.31.2.qcow2" &&
	test "$(cat "$o/test-mix+kube-v1.31.2.qcow2.sha256")" = \
		"$(sha256sum "$o/test-mix+kube-v1.31.2.qcow2" | cut -d" " -f1)" &&
	jq -se "([.[] | select(.event == \"build-start\") | .time] | max) <
		([.[] | select(.event == \"build-done\") | .time] | min)" "$TMP/out" &&
	jq -r "select(.event == \"log\" and .image == \"t1240-vm\") | .message" "$TMP/out" >"$TMP/vm.log" &&
	vm_work_dir_gone "$TMP/vm.log"
'

# The VM must have work to do when beta fails: with the step cached from the test before, it
# would be done in no time and there would be nothing left to cancel.
test_expect_success "a failed docker build cancels the VM build, which leaves nothing" '
	expect_exit 1 "$IMGF" build --var beta_exit=7 --var vm_says=never-built --output-dir "$TMP/output-mix-fail" "$TMP/mix.json" &&
	cat "$TMP/err" &&
	expect_err "==> warning: t1240-vm: cancelled: another image failed" &&
	expect_err "imgforge: error: image '"'"'$B'"'"': step 2/2" &&
	{ ! grep -q imgforge-qemu- "$TMP/err" || vm_work_dir_gone "$TMP/err"; } &&
	no_build_containers &&
	test ! -e "$TMP/output-mix-fail" &&
	test -z "$(ls -A "$IMGFORGE_CACHE_DIR/tmp" 2>/dev/null)"
'

# Twins: two images with the same builder and steps (as capi-qcow2 and capi-ova) built at once
# share each step's cache entry; neither save removes the image the other build stands on.
TA=t1240-twin-a
TB=t1240-twin-b
for t in $TA $TB; do
	cat >"$TMP/$t.json" <<EOF
{
  "name": "$t",
  "builder": {"type": "docker", "image": "{{ docker_base_image }}", "squash": false},
  "provisioners": [
    {"type": "shell", "name": "one", "inline": ["sleep 2", "echo one > /one"]},
    {"type": "shell", "name": "two", "inline": ["sleep 1", "echo two > /two"]}
  ]
}
EOF
done
jq --arg a "$TA.json" --arg b "$TB.json" '.images = [$a, $b]' "$TMP/par.json" >"$TMP/twins.json"
remove_twins() {
	for t in $TA $TB; do
		docker images -q --filter "label=io.imgforge.image=$t" | xargs -r docker rmi -f
		docker images -q --filter "label=io.imgforge.cache.image=$t" | xargs -r docker rmi -f
	done
}
at_exit "containers_of $TA | xargs -r docker rm -f; containers_of $TB | xargs -r docker rm -f"
at_exit remove_twins
TC=$TMP/twin-cache

test_expect_success "twin images built at once share each step's entry, none removed under the other" '
	IMGFORGE_CACHE_DIR=$TC expect_exit 0 "$IMGF" build --parallel-builds 2 --force \
		--output-dir "$TMP/output-twins" "$TMP/twins.json" &&
	cat "$TMP/err" &&
	for i in 0 1; do
		id=$(jq -r ".builds[$i].artifact_id" "$TMP/output-twins/test-par+kube-v1.37.2/manifest.json")
		test "$(docker run --rm "$id" cat /one /two | tr "\n" " ")" = "one two " || exit 1
	done &&
	test "$(jq -r "select(.final == false) | .key" "$TC"/steps/*.json | sort -u | wc -l)" = 2 &&
	test "$(jq -r "select(.final == false) | .id" "$TC"/steps/*.json | wc -l)" = 2 &&
	for id in $(jq -r ".id" "$TC"/steps/*.json); do
		docker image inspect "$id" >/dev/null || exit 1
	done &&
	shared=$(grep -c "is cached by another build with the same steps" "$TMP/err" || true) &&
	hits=$(grep -cE "t1240-twin-[ab]: step [0-9]/2: [a-z]+: cached \(" "$TMP/err" || true) &&
	test $((shared + hits)) -ge 2 &&
	! grep -q "missing or damaged" "$TMP/err" &&
	test -z "$(containers_of $TA)" && test -z "$(containers_of $TB)" &&
	# one step image per key: nothing saved twice and left behind
	for t in $TA $TB; do
		docker images -aq --no-trunc --filter "label=io.imgforge.cache.image=$t"
	done | sort -u >"$TMP/twin-cached" &&
	for t in $TA $TB; do
		docker images -aq --no-trunc --filter "label=io.imgforge.image=$t"
	done | sort -u >"$TMP/twin-final" &&
	test "$(comm -23 "$TMP/twin-cached" "$TMP/twin-final" | wc -l)" = 2
'

test_expect_success "twins: a rebuild gives both out again; prune leaves no image and no lock" '
	IMGFORGE_CACHE_DIR=$TC expect_exit 0 "$IMGF" build --parallel-builds 2 --force \
		--output-dir "$TMP/output-twins" "$TMP/twins.json" &&
	grep -q "$TA: nothing changed" "$TMP/err" && grep -q "$TB: nothing changed" "$TMP/err" &&
	ids=$(jq -r "select(.final == false) | .id" "$TC"/steps/*.json) &&
	# squash: false images are the step images'"'"' children: the images go first, their
	# cached parents stay for prune
	for t in $TA $TB; do
		docker images -q --filter "label=io.imgforge.image=$t" | xargs -r docker rmi --no-prune -f >/dev/null
	done &&
	IMGFORGE_CACHE_DIR=$TC expect_exit 0 "$IMGF" cache prune &&
	test -z "$(find "$TC/steps" -type f)" &&
	for id in $ids; do
		! docker image inspect "$id" >/dev/null 2>&1 || exit 1
	done
'

test_done
