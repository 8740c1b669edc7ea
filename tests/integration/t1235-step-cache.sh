#!/usr/bin/env bash
# needs: docker fixtures
# The step cache with the docker builder: t1200's kind node image with one more step (a shell
# step that writes a variable) before `kind`. A rebuild with nothing changed runs no step and
# gives out the same image; changing the variable reruns only that step and those after it,
# and gives what a build without the cache gives; a damaged entry is built again; `imgforge
# cache ls` and `cache prune` list and remove entries and their images; a host file a step
# copies is part of its key.
. "$(dirname "$0")/../lib/harness.sh"
docker_up "step cache"
fixtures_up "step cache"
TAG=imgforge-test/kind-node:t1235-$$
at_exit "docker rmi -f $TAG"
export IMGFORGE_CACHE_DIR=$TMP/cache SOURCE_DATE_EPOCH=1700000000
OUT=$TMP/output/debian-12+kube-v1.31.2

# kind-node.json with a step "marker" (8 of 10) that writes the variable t1235_marker.
jq '.provisioners |= (.[:7] + [{"type": "shell", "name": "marker",
	"inline": ["echo {{ t1235_marker }} > /etc/t1235-marker"]}] + .[7:])' \
	"$TOP/images/kind-node.json" >"$TMP/kind-node.json"
cat >"$TMP/t1235.json" <<EOF
{"include": ["$TOP/config/debian-12.json"], "variables": {"t1235_marker": "one"},
 "images": ["kind-node.json"]}
EOF
build() { # LOG [ARGS...]
	local log=$1
	shift
	"$IMGF" build --force --var-file "$FIX/vars.json" \
		--var docker_base_image="$BASE" --var kind_node_image="$TAG" \
		--var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" \
		--output-dir "$TMP/output" "$@" "$TMP/t1235.json" >"$TMP/$log.log" 2>&1 ||
		{ tail -n 40 "$TMP/$log.log"; return 1; }
	jq -r ".builds[0].artifact_id" "$OUT/manifest.json" >"$TMP/$log.id"
	jq -S "[.builds[0].inputs[]] | sort_by(.name)" "$OUT/manifest.json" >"$TMP/$log.inputs"
	docker run --rm --entrypoint cat "$TAG" /etc/t1235-marker >"$TMP/$log.marker"
}
ran() { grep -E "kind-node: step [0-9]+/10: [a-z-]+\$" "$TMP/$1.log" | sed 's/.*step //'; }
cached() { grep -E "kind-node: step [0-9]+/10: [a-z-]+: cached \(" "$TMP/$1.log" | wc -l; }
entry() { # STEP: the newest entry of that step
	for f in "$IMGFORGE_CACHE_DIR"/steps/*.json; do
		jq -r --arg f "$f" --arg s "$1" 'select(.step == $s) | "\(.created) \($f)"' "$f" 2>/dev/null
	done | sort -n | tail -n 1 | cut -d" " -f2
}

# The steps whose state is kept (docs/step-cache.md): all but a quick step followed by another
# quick one (containerd from its tarball, runc, cni, kind), and the artifact.
KEPT="(artifact) crictl images kubernetes marker packages sysprep"
test_expect_success "a cold build runs every step and keeps each but a quick one before a quick one" '
	build cold &&
	test "$(ran cold | wc -l)" = 10 &&
	test "$(cached cold)" = 0 &&
	"$IMGF" cache ls >"$TMP/ls.txt" &&
	grep -q "^KEY  *IMAGE  *STEP  *BUILDER  *SIZE  *AGE" "$TMP/ls.txt" &&
	grep -qE "^[0-9a-f]{12}  kind-node  +crictl +docker " "$TMP/ls.txt" &&
	grep -q "^7 entries, " "$TMP/ls.txt" &&
	test "$(grep -E "^[0-9a-f]{12}  " "$TMP/ls.txt" | awk "{print \$3}" | LC_ALL=C sort | tr "\n" " ")" = "$KEPT " &&
	test "$(cat "$TMP/cold.marker")" = one
'

test_expect_success "a rebuild with nothing changed runs no step and gives the same image" '
	build warm &&
	test -z "$(ran warm)" &&
	test "$(cached warm)" = 10 &&
	grep -q "kind-node: nothing changed: the artifact built before is given out again" "$TMP/warm.log" &&
	! grep -q "build container" "$TMP/warm.log" &&
	test -n "$(cat "$TMP/warm.id")" &&
	test "$(cat "$TMP/cold.id")" = "$(cat "$TMP/warm.id")" &&
	test "$(docker image inspect -f "{{.Id}}" "$TAG")" = "$(cat "$TMP/warm.id")" &&
	diff "$TMP/cold.inputs" "$TMP/warm.inputs"
'

test_expect_success "changing a variable a later step reads reruns that step and the ones after" '
	build two --var t1235_marker=two &&
	test "$(cached two)" = 7 &&
	test "$(ran two | tr "\n" " ")" = "8/10: marker 9/10: kind 10/10: sysprep " &&
	grep -q "from the cached image sha256:" "$TMP/two.log" &&
	test "$(cat "$TMP/two.marker")" = two &&
	test "$(cat "$TMP/two.id")" != "$(cat "$TMP/cold.id")" &&
	diff "$TMP/cold.inputs" "$TMP/two.inputs"
'

test_expect_success "--no-cache runs every step and gives the image the cached build gave" '
	build nocache --var t1235_marker=two --no-cache &&
	test "$(ran nocache | wc -l)" = 10 &&
	test "$(cached nocache)" = 0 &&
	test "$(cat "$TMP/nocache.id")" = "$(cat "$TMP/two.id")"
'

test_expect_success "damaged entries (unreadable, or an image without the key) are built again" '
	# What the spoilt records named is no longer known to the cache: removed by hand below.
	lost=$(jq -r .id "$(entry sysprep)" "$(entry marker)") &&
	echo "{ not json" >"$(entry sysprep)" &&
	base_id=$(docker image inspect -f "{{.Id}}" "$BASE") &&
	e=$(entry marker) && jq --arg id "$base_id" ".id = \$id" "$e" >"$e.new" && mv "$e.new" "$e" &&
	build damaged --var t1235_marker=two &&
	for id in $lost; do docker rmi "$id" >/dev/null 2>&1 || true; done &&
	grep -q "kind-node: sysprep: the cache entry [0-9a-f]* is missing or damaged" "$TMP/damaged.log" &&
	grep -q "kind-node: marker: the cache entry [0-9a-f]* is missing or damaged" "$TMP/damaged.log" &&
	test "$(ran damaged | tr "\n" " ")" = "8/10: marker 9/10: kind 10/10: sysprep " &&
	test "$(cat "$TMP/damaged.id")" = "$(cat "$TMP/two.id")" &&
	docker image inspect "$BASE" >/dev/null
'

test_expect_success "cache ls --json: one event per entry with key, step, size and age" '
	"$IMGF" cache ls --json >"$TMP/ls.json" &&
	test "$(jq -r "select(.event == \"cache-entry\") | .step" "$TMP/ls.json" | grep -cx marker)" = 2 &&
	jq -r "select(.event == \"cache-entry\" and .step == \"packages\") | .size > 0 and .age >= 0 and (.key | length) == 64" "$TMP/ls.json" >"$TMP/ls.check" &&
	test "$(cat "$TMP/ls.check")" = true
'

# A small image whose second step copies a host file.
mkdir -p "$TMP/local"
cat >"$TMP/local/config.json" <<EOF
{"variables": {"build_name": "t1235-local", "kubernetes_semver": "v1.31.2"},
 "images": ["image.json"]}
EOF
cat >"$TMP/local/image.json" <<EOF
{"name": "local", "builder": {"type": "docker", "image": "{{ docker_base_image }}"},
 "provisioners": [{"type": "shell", "inline": ["true"]},
   {"type": "file", "source": "$TMP/local/payload", "destination": "/payload"}],
 "post_processors": [{"type": "manifest"}]}
EOF
local_build() { # LOG
	"$IMGF" build --force --var docker_base_image="$BASE" --output-dir "$TMP/local/out" \
		"$TMP/local/config.json" >"$TMP/$1.log" 2>&1 || { tail -n 20 "$TMP/$1.log"; return 1; }
	id=$(jq -r ".builds[0].artifact_id" "$TMP/local/out/t1235-local+kube-v1.31.2/manifest.json")
	echo "docker rmi -f $id" >>"$TMP/local/rmi"
	docker run --rm --entrypoint cat "$id" /payload
}
at_exit "sh '$TMP/local/rmi'"

test_expect_success "a host file a step copies is part of its key: changed, the step runs again" '
	echo a >"$TMP/local/payload" &&
	test "$(local_build local1)" = a &&
	test "$(local_build local2)" = a &&
	grep -q "local: step 2/2: file: cached" "$TMP/local2.log" &&
	echo b >"$TMP/local/payload" &&
	test "$(local_build local3)" = b &&
	grep -q "local: step 1/2: shell: cached" "$TMP/local3.log" &&
	grep -qx "==> local: step 2/2: file" "$TMP/local3.log"
'

test_expect_success "cache prune: --older-than keeps what was just used; --max-size 0 removes all" '
	# Entries are the .json records (beside them, a key'"'"'s KEY.save and KEY.use lock files).
	n=$(ls "$IMGFORGE_CACHE_DIR"/steps/*.json | wc -l) &&
	"$IMGF" cache prune --older-than 1h >"$TMP/prune1.txt" &&
	grep -qx "removed 0 entries, 0B freed" "$TMP/prune1.txt" &&
	test "$(ls "$IMGFORGE_CACHE_DIR"/steps/*.json | wc -l)" = "$n" &&
	ids=$(jq -r "select(.final == false) | .id" "$IMGFORGE_CACHE_DIR"/steps/*.json) &&
	test -n "$ids" &&
	"$IMGF" cache prune --max-size 0 >"$TMP/prune2.txt" &&
	grep -q "^removed $n entries" "$TMP/prune2.txt" &&
	test -z "$(ls "$IMGFORGE_CACHE_DIR"/steps)" &&
	for id in $ids; do ! docker image inspect "$id" >/dev/null 2>&1 || exit 1; done &&
	docker image inspect "$TAG" >/dev/null
'

test_expect_success "cache: a wrong subcommand or option value is a usage error" '
	expect_exit 2 "$IMGF" cache list && expect_err "expected '"'"'ls'"'"' or '"'"'prune'"'"'" &&
	expect_exit 2 "$IMGF" cache prune --older-than soon && expect_err "--older-than '"'"'soon'"'"'" &&
	expect_exit 2 "$IMGF" cache prune --max-size lots && expect_err "--max-size '"'"'lots'"'"'" &&
	expect_exit 2 "$IMGF" cache ls --max-size 1G
'

test_done
