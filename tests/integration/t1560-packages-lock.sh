#!/usr/bin/env bash
# needs: docker root
# Distro packages pinned (issue 17): `imgforge lock` resolves an image's packages on its base
# (in a build container, with apt) into a lock, the same bytes twice; a build given the lock
# installs exactly the locked versions (read back from the image's dpkg status) and records
# them in the manifest with the locked sha256. Before any target exists, a build fails naming
# the package: for a config package the lock does not know, for a .deb the archive no longer
# has, and, with the lock's packages mirrored (`imgforge mirror --lock`), for a tampered .deb
# and for one missing from the mirror (naming the file too). Without a lock, the packages
# step's cache key holds the archive's Release file: the same Release reuses the step, a
# changed one runs it again. The lock makes a build repeatable after the archive moves on: a
# build from the mirror with no network (another download cache, another time) gives the same
# image ID as the locked build from the archive. (t1540 builds kind-node from the mirror with
# no network.)
. "$(dirname "$0")/../lib/harness.sh"
docker_up "packages lock"
TAG=imgforge-test/pkgs:t1560-$$
at_exit "docker rmi -f $TAG"
PKGS="jq nfs-common" # neither is in the test base image; nfs-common brings ~20 dependencies

cat >"$TMP/pkgs.json" <<EOF
{"name": "pkgs", "builder": {"type": "docker", "image": "{{ docker_base_image }}",
  "tag": "$TAG", "network": "{{ docker_network }}"},
 "provisioners": [{"type": "packages", "packages": ["{{ t1560_packages }}"]}, {"type": "sysprep"}],
 "post_processors": [{"type": "manifest"}]}
EOF
cat >"$TMP/t1560.json" <<EOF
{"include": ["$TOP/config/debian-12.json"],
 "variables": {"t1560_packages": "$PKGS", "docker_base_image": "$BASE"},
 "images": ["pkgs.json"]}
EOF
OUT=debian-12+kube-$(jq -r .variables.kubernetes_semver "$TOP/config/kubernetes.json")

build() { # NAME [ARGS...]: output dir $TMP/out-NAME, log $TMP/NAME.log
	local name=$1
	shift
	"$IMGF" build --output-dir "$TMP/out-$name" "$@" "$TMP/t1560.json" >"$TMP/$name.log" 2>&1 ||
		{ tail -n 40 "$TMP/$name.log"; return 1; }
}
# The build failed before any target existed: no container of it, no "build container" line.
no_target() {
	test -z "$(docker ps -aq --filter label=io.imgforge.build=pkgs)" &&
		! grep -q "build container" "$TMP/err"
}
# "package version sha256" of each package the lock holds for pkgs, sorted.
locked() { jq -r '.images.pkgs.steps[0].packages[] | "\(.package) \(.version) \(.sha256)"' "$1" | sort; }

test_expect_success "imgforge lock resolves the packages on the base into a lock, the same twice" '
	"$IMGF" lock "$TMP/t1560.json" >"$TMP/one.lock" 2>"$TMP/lock1.log" ||
		{ cat "$TMP/lock1.log"; exit 1; }
	"$IMGF" lock "$TMP/t1560.json" >"$TMP/two.lock" 2>"$TMP/lock2.log" ||
		{ cat "$TMP/lock2.log"; exit 1; }
	cmp "$TMP/one.lock" "$TMP/two.lock" &&
	jq -e ".imgforge_lock == 1" "$TMP/one.lock" &&
	jq -e ".images.pkgs.steps[0].requested == [\"jq\", \"nfs-common\"]" "$TMP/one.lock" &&
	jq -e "[.images.pkgs.steps[0].packages[].package] | index(\"jq\") and index(\"nfs-common\") and index(\"libjq1\")" "$TMP/one.lock" &&
	jq -e "[.images.pkgs.steps[0].packages[] | select(.sha256 | test(\"^[0-9a-f]{64}$\") | not)] == []" "$TMP/one.lock" &&
	jq -e ".images.pkgs.archives | length > 0" "$TMP/one.lock" &&
	grep -q "step 1 (packages): [0-9]* package(s) to install" "$TMP/lock1.log" &&
	test -z "$(docker ps -aq --filter label=io.imgforge.build=pkgs)"
'

test_expect_success "a build with the lock installs exactly the locked versions, recorded with their sha256" '
	build locked --lock "$TMP/one.lock" &&
	grep -q "locked package(s) installed, each verified by sha256 before" "$TMP/locked.log" &&
	docker run --rm --network none --entrypoint dpkg-query "$TAG" -W -f "\${Package} \${Version}\n" >"$TMP/dpkg" &&
	locked "$TMP/one.lock" | while read -r p v s; do
		grep -qx "$p $v" "$TMP/dpkg" || { echo "dpkg status lacks $p $v" >&2; exit 1; }
	done &&
	jq -r ".builds[0].inputs[] | select(.kind == \"deb\") | \"\(.package) \(.version) \(.sha256)\"" \
		"$TMP/out-locked/$OUT/manifest.json" | sort >"$TMP/recorded" &&
	locked "$TMP/one.lock" | diff - "$TMP/recorded" &&
	docker run --rm --network none --entrypoint sh "$TAG" -c "test ! -e /var/lib/imgforge-repo" &&
	docker image inspect -f "{{.Id}}" "$TAG" >"$TMP/locked.id" &&
	mkdir -p "$TMP/save-locked" && docker save "$TAG" | tar -x -C "$TMP/save-locked" &&
	test "$(docker run --rm --network none --entrypoint cat "$TAG" /etc/apt/sources.list)" = \
		"$(docker run --rm --network none --entrypoint cat "$BASE" /etc/apt/sources.list)"
'

test_expect_success "a config package the lock does not know fails before the target exists, naming it" '
	expect_exit 1 "$IMGF" build --lock "$TMP/one.lock" --var "t1560_packages=$PKGS socat" \
		--output-dir "$TMP/out-mismatch" "$TMP/t1560.json" &&
	expect_err "package '"'"'socat'"'"' is not in the lock '"'"'$TMP/one.lock'"'"' (image '"'"'pkgs'"'"')" &&
	no_target
'

# (A download cache that holds the file by its sha256 needs no archive: an empty one here.)
test_expect_success "a locked .deb the archive no longer has fails before the target exists, naming it" '
	jq "(.images.pkgs.steps[0].packages[] | select(.package == \"jq\")) |=
		(.filename = \"pool/main/j/jq/jq_0.0-t1560_amd64.deb\" |
		 .url = \"http://deb.debian.org/debian/pool/main/j/jq/jq_0.0-t1560_amd64.deb\")" \
		"$TMP/one.lock" >"$TMP/gone.lock" &&
	IMGFORGE_CACHE_DIR=$TMP/cache-gone expect_exit 1 "$IMGF" build --lock "$TMP/gone.lock" \
		--output-dir "$TMP/out-gone" "$TMP/t1560.json" &&
	expect_err "deb:jq:amd64" && expect_err "jq_0.0-t1560_amd64.deb" &&
	no_target
'

M=$TMP/mirror
test_expect_success "imgforge mirror --lock keeps the locked .debs as an apt repository and points vars.json at it" '
	"$IMGF" mirror --lock "$TMP/one.lock" "$TMP/t1560.json" "$M" >"$TMP/mirror.log" 2>&1 ||
		{ cat "$TMP/mirror.log"; exit 1; }
	jq -e ".variables.packages_mirror == \"file://$M/debs\" and .variables.packages_lock == \"$M/imgforge.lock\"" "$M/vars.json" &&
	jq -e ".variables.docker_network == \"none\"" "$M/vars.json" &&
	locked "$M/imgforge.lock" | diff - <(locked "$TMP/one.lock") &&
	test "$(grep -c "^Package: " "$M/debs/Packages")" = "$(locked "$TMP/one.lock" | wc -l)" &&
	grep -q " Packages.gz$" "$M/debs/Release" &&
	JQ_DEB=$M/debs/$(jq -r ".images.pkgs.steps[0].packages[] | select(.package == \"jq\") | .filename" "$M/imgforge.lock") &&
	test -s "$JQ_DEB" && echo "$JQ_DEB" >"$TMP/jq-deb"
'

test_expect_success "a build from the mirror needs no network (imgforge in its own namespace, the container with none) and gives the locked build's image ID" '
	rm -rf "$TMP/cache-offline" &&
	IMGFORGE_CACHE_DIR=$TMP/cache-offline unshare -n "$IMGF" build --var-file "$M/vars.json" \
		--output-dir "$TMP/out-offline" "$TMP/t1560.json" >"$TMP/offline.log" 2>&1 ||
		{ tail -n 40 "$TMP/offline.log"; exit 1; }
	jq -S "[.builds[0].inputs[] | select(.kind == \"deb\")] | sort_by(.name)" "$TMP/out-locked/$OUT/manifest.json" >"$TMP/deb-locked" &&
	jq -S "[.builds[0].inputs[] | select(.kind == \"deb\")] | sort_by(.name)" "$TMP/out-offline/$OUT/manifest.json" >"$TMP/deb-offline" &&
	diff "$TMP/deb-locked" "$TMP/deb-offline" &&
	test "$(jq length "$TMP/deb-offline")" -gt 10 &&
	docker image inspect -f "{{.Id}}" "$TAG" >"$TMP/offline.id" &&
	if ! cmp -s "$TMP/locked.id" "$TMP/offline.id"; then
		echo "image IDs differ: $(cat "$TMP/locked.id") (from the network) and $(cat "$TMP/offline.id") (from the mirror)"
		mkdir -p "$TMP/save-offline" && docker save "$TAG" | tar -x -C "$TMP/save-offline" &&
		layer() { echo "$TMP/save-$1/$(jq -r ".[0].Layers[0]" "$TMP/save-$1/manifest.json")"; } &&
		python3 "$TOP/tests/lib/layer-diff.py" diff "$(layer locked)" "$(layer offline)"
		exit 1
	fi
'

test_expect_success "a tampered .deb in the mirror fails before the target exists, naming the package and the file" '
	JQ_DEB=$(cat "$TMP/jq-deb") && cp "$JQ_DEB" "$TMP/jq.orig" &&
	printf x >>"$JQ_DEB" &&
	IMGFORGE_CACHE_DIR=$TMP/cache-tampered expect_exit 1 "$IMGF" build --var-file "$M/vars.json" \
		--output-dir "$TMP/out-tampered" "$TMP/t1560.json" &&
	expect_err "deb:jq:amd64" && expect_err "$JQ_DEB" && expect_err "sha256 mismatch" &&
	no_target &&
	cp "$TMP/jq.orig" "$JQ_DEB"
'

test_expect_success "a mirror missing a package fails before the target exists, naming the package and the file" '
	JQ_DEB=$(cat "$TMP/jq-deb") && mv "$JQ_DEB" "$TMP/jq.away" &&
	IMGFORGE_CACHE_DIR=$TMP/cache-missing expect_exit 1 "$IMGF" build --var-file "$M/vars.json" \
		--output-dir "$TMP/out-missing" "$TMP/t1560.json" &&
	expect_err "deb:jq:amd64" && expect_err "$JQ_DEB" &&
	no_target &&
	mv "$TMP/jq.away" "$JQ_DEB"
'

# The archive's Release, as a file the test changes (apt itself reads the real archive).
ran_packages() { grep -cE "pkgs: step 1/2: packages\$" "$TMP/$1.log"; }
test_expect_success "without a lock, the same Release reuses the packages step and a changed one reruns it" '
	printf "Suite: bookworm\nDate: one\n" >"$TMP/InRelease" &&
	export IMGFORGE_CACHE_DIR=$TMP/cache-release &&
	build rel1 --var "apt_release_urls=file://$TMP/InRelease" &&
	build rel2 --var "apt_release_urls=file://$TMP/InRelease" &&
	printf "Suite: bookworm\nDate: two\n" >"$TMP/InRelease" &&
	build rel3 --var "apt_release_urls=file://$TMP/InRelease" &&
	test "$(ran_packages rel1)" = 1 && test "$(ran_packages rel2)" = 0 &&
	test "$(ran_packages rel3)" = 1
'

test_done
