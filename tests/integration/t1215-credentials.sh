#!/usr/bin/env bash
# needs: docker
# Credentials in a mirror URL (https://user:token@mirror/...) are used for the download but
# never leave the process: not in the log, the --json events, an error, inspect's output or
# manifest.json, where the userinfo reads "***".
# shellcheck disable=SC2016 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
docker_up "credentials in URLs"
require_cmd jq || {
	test_skip "credentials in URLs" "needs jq"
	test_done
}
export IMGFORGE_CACHE_DIR=$TMP/cache IMGFORGE_RETRY_BASE_MS=10
SECRET=s3cr3t-t0ken-$$

# A stand-in runc (a test fixture: it only reports a version) served on loopback.
mkdir -p "$TMP/www"
printf '#!/bin/sh\necho "runc version 1.2.1"\n' >"$TMP/www/runc"
(cd "$TMP/www" && sha256sum runc >runc.sha256sum)
python3 "$TOP/tests/lib/httpd.py" --root "$TMP/www" >"$TMP/httpd.port" 2>/dev/null &
at_exit "kill $!"
for i in $(seq 50); do [ -s "$TMP/httpd.port" ] && break; sleep 0.1; done
PORT=$(head -n1 "$TMP/httpd.port")
MIRROR="http://imgf:$SECRET@127.0.0.1:$PORT"

mkdir -p "$TMP/cfg"
cat >"$TMP/cfg/config.json" <<JSON
{"variables": {"build_name": "test-cred", "kubernetes_semver": "v1.31.2",
               "docker_base_image": "$BASE", "runc_url": "$MIRROR/runc",
               "runc_checksum": "file:$MIRROR/runc.sha256sum"},
 "images": ["image.json"]}
JSON
cat >"$TMP/cfg/image.json" <<'JSON'
{"name": "cred", "builder": {"type": "docker", "image": "{{ docker_base_image }}"},
 "provisioners": [{"type": "runc", "url": "{{ runc_url }}", "checksum": "{{ runc_checksum }}",
                   "version": "1.2.1", "destination": "/usr/local/bin/runc-test"}],
 "post_processors": [{"type": "manifest"}]}
JSON
MANIFEST=$TMP/output/test-cred+kube-v1.31.2/manifest.json
rm_artifact() {
	local id
	id=$(jq -r '.builds[0].artifact_id' "$MANIFEST" 2>/dev/null) && [ -n "$id" ] &&
		docker rmi -f "$id" >/dev/null 2>&1
	return 0
}
at_exit rm_artifact
no_secret() {
	if grep -l -- "$SECRET" "$@"; then
		echo "the token leaked into the files above" >&2
		return 1
	fi
}

test_expect_success "a build from a mirror with credentials: --json events and manifest.json hold no token" '
	"$IMGF" build --json --verbose --output-dir "$TMP/output" "$TMP/cfg/config.json" \
		>"$TMP/json.out" 2>"$TMP/json.err" || { cat "$TMP/json.err" "$TMP/json.out"; exit 1; }
	no_secret "$TMP/json.out" "$TMP/json.err" "$MANIFEST" &&
	grep -q "http://\*\*\*@127.0.0.1:$PORT/runc" "$TMP/json.out" &&
	test "$(jq -r ".builds[0].inputs[] | select(.name == \"runc\") | .url" "$MANIFEST")" = "http://***@127.0.0.1:$PORT/runc"
'

test_expect_success "the human log holds no token" '
	rm_artifact
	"$IMGF" build --force --verbose --output-dir "$TMP/output" "$TMP/cfg/config.json" \
		>"$TMP/log.out" 2>"$TMP/log.err" || { cat "$TMP/log.err"; exit 1; }
	no_secret "$TMP/log.out" "$TMP/log.err" "$MANIFEST" &&
	grep -q "http://\*\*\*@127.0.0.1:$PORT/runc" "$TMP/log.err"
'

test_expect_success "an error naming the URL holds no token, on stderr and as a --json event" '
	sum=sha256:$(printf "%064d" 1) && # not in the cache: it is fetched
	expect_exit 1 "$IMGF" build --output-dir "$TMP/output-404" --var runc_url="$MIRROR/nope" \
		--var runc_checksum="$sum" "$TMP/cfg/config.json" &&
	no_secret "$TMP/err" "$TMP/out" &&
	expect_err "'"'"'http://***@127.0.0.1:$PORT/nope'"'"'" &&
	expect_exit 1 "$IMGF" build --json --output-dir "$TMP/output-404" --var runc_url="$MIRROR/nope" \
		--var runc_checksum="$sum" "$TMP/cfg/config.json" &&
	no_secret "$TMP/err" "$TMP/out" &&
	jq -r "select(.event == \"error\") | .message" "$TMP/out" | grep -qF "http://***@127.0.0.1:$PORT/nope"
'

test_expect_success "inspect shows the variables without the token" '
	"$IMGF" inspect "$TMP/cfg/config.json" >"$TMP/inspect.out" &&
	"$IMGF" inspect --json "$TMP/cfg/config.json" >"$TMP/inspect.json" &&
	no_secret "$TMP/inspect.out" "$TMP/inspect.json" &&
	grep -qF "http://***@127.0.0.1:$PORT/runc" "$TMP/inspect.out" &&
	test "$(jq -r .variables.runc_url.value "$TMP/inspect.json")" = "http://***@127.0.0.1:$PORT/runc"
'

test_done
