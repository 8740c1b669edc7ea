#!/usr/bin/env bash
# needs: docker
# The step cache in registries that want credentials or TLS (issue 20 part 2): `build
# --cache-to/--cache-from` with --auth-file against Debian's docker-registry with htpasswd
# (Basic) and with token auth (tests/lib/regtoken.py as its realm), and over HTTPS with a
# certificate of a CA of the script's own (--ca-file, --tls-verify=false). With good
# credentials every step is exported and a build with an empty step cache takes every step from
# the registry; without credentials, with a wrong password, or without the CA, the build says
# precisely why the registry was not used (HTTP 401 and whose access was refused, or the TLS
# failure) and runs every step: a cache the registry refuses is a miss, not a failure. No
# password is ever logged, not even with -v -v.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
for c in docker-registry jq curl openssl python3 ip; do
	if ! require_cmd "$c"; then
		test_skip "the step cache in registries with auth" "'$c' is not installed (hack/install-deps.sh)"
		test_done
	fi
done
docker_up "the step cache in registries with auth"
. "$TOP/tests/lib/registry.sh"
export DOCKER_CONFIG=$TMP/no-docker-config
F=$TOP/tests/fixtures/config

python3 -W ignore -c 'import crypt; print("cacher:" + crypt.crypt("right", crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
	>"$TMP/htpasswd"
start_registry basic "htpasswd=$TMP/htpasswd"
BASIC=127.0.0.1:$PORT
start_token_endpoint cacher right
start_registry token "token=$TOKEN_REALM"
TOKEN=127.0.0.1:$PORT
auth_json "$BASIC" cacher:right >"$TMP/basic-good.json"
auth_json "$BASIC" cacher:s3cr3t-wrong >"$TMP/basic-wrong.json"
auth_json "$TOKEN" cacher:right >"$TMP/token-good.json"
auth_json "$TOKEN" cacher:s3cr3t-wrong >"$TMP/token-wrong.json"
# HTTPS needs an address that is not loopback (imgforge speaks plain HTTP to loopback).
REGISTRY_ADDR=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n 1)
TLS=
if [ -n "$REGISTRY_ADDR" ] && tls_certs "$TMP/tls" "$REGISTRY_ADDR"; then
	start_registry tls "tls=$TMP/tls"
	TLS=$REGISTRY_ADDR:$PORT
fi

# build LOG [ARGS...]: the two-step fixture image with a step cache of its own per LOG.
build() {
	local log=$1
	shift
	IMGFORGE_CACHE_DIR=$TMP/cache-$log "$IMGF" build --force --var docker_base_image="$BASE" \
		--output-dir "$TMP/out-$log" "$@" "$F/simple.json" >"$TMP/$log.log" 2>&1 ||
		{ tail -n 30 "$TMP/$log.log"; return 1; }
	jq -r ".builds[0].artifact_id" "$TMP/out-$log"/*/manifest.json >"$TMP/$log.id"
	at_exit "docker rmi -f $(cat "$TMP/$log.id") >/dev/null 2>&1"
}
ran() { grep -cE "simple: step [0-9]/2: [a-z]+\$" "$TMP/$1.log" || true; }
exported() { grep -c "simple: step .* exported to '$2/c:step-" "$TMP/$1.log" || true; }
# Every step from the registry: their states, or (all of them there) the finished image alone.
from_registry() {
	grep -qE "simple: (steps 1 to 2 of 2|the finished image) comes? from the registry cache '$2/c'" "$TMP/$1.log"
}
warned() { grep "warning" "$TMP/$1.log" | grep -qF -- "$2"; }
no_secret() { ! grep -q -e s3cr3t -e cacher:right -e "$(printf cacher:right | base64 -w0)" "$TMP/$1.log"; }

test_expect_success "basic auth: --cache-to with --auth-file exports every step" '
	build basic-to --cache-to "$BASIC/c" --auth-file "$TMP/basic-good.json" -v -v &&
	test "$(ran basic-to)" = 2 && test "$(exported basic-to "$BASIC")" = 2 &&
	no_secret basic-to
'

test_expect_success "basic auth: --cache-from with --auth-file takes every step from the registry" '
	build basic-from --cache-from "$BASIC/c" --auth-file "$TMP/basic-good.json" -v -v &&
	from_registry basic-from "$BASIC" && test "$(ran basic-from)" = 0 &&
	test "$(cat "$TMP/basic-from.id")" = "$(cat "$TMP/basic-to.id")" &&
	! grep -q "is not used" "$TMP/basic-from.log" && no_secret basic-from
'

test_expect_success "basic auth: --cache-from without credentials says the registry asks for them, every step runs" '
	build basic-none --cache-from "$BASIC/c" &&
	warned basic-none "the cache entry" &&
	warned basic-none "HTTP 401: registry '"'"'$BASIC'"'"' asks for a user and password, and there is no docker config.json" &&
	test "$(ran basic-none)" = 2 && ! from_registry basic-none "$BASIC" &&
	test "$(grep -c "is not used" "$TMP/basic-none.log")" = 1
'

test_expect_success "basic auth: a wrong password is refused (401), naming the user, never the password; every step runs" '
	build basic-wrong --cache-from "$BASIC/c" --auth-file "$TMP/basic-wrong.json" -v -v &&
	warned basic-wrong "HTTP 401 (UNAUTHORIZED: authentication required): the registry refused the credentials of user '"'"'cacher'"'"'" &&
	test "$(ran basic-wrong)" = 2 && no_secret basic-wrong
'

test_expect_success "basic auth: --cache-to without credentials warns and the build still succeeds" '
	build basic-to-none --cache-to "$BASIC/c2" &&
	warned basic-to-none "is not exported to '"'"'$BASIC/c2'"'"'" &&
	warned basic-to-none "asks for a user and password" &&
	test "$(ran basic-to-none)" = 2
'

test_expect_success "token auth: --cache-to and then --cache-from with credentials, one token each way" '
	build token-to --cache-to "$TOKEN/c" --auth-file "$TMP/token-good.json" &&
	test "$(exported token-to "$TOKEN")" = 2 &&
	grep -q "scope=repository%3Ac%3Apull%2Cpush 200" "$TMP/token.log" &&
	: >"$TMP/token.log" &&
	build token-from --cache-from "$TOKEN/c" --auth-file "$TMP/token-good.json" -v -v &&
	from_registry token-from "$TOKEN" && test "$(ran token-from)" = 0 &&
	grep -q "scope=repository%3Ac%3Apull 200" "$TMP/token.log" &&
	! grep -q " 401$" "$TMP/token.log" && no_secret token-from
'

test_expect_success "token auth: a wrong password is refused by the token endpoint, naming it and the user; every step runs" '
	build token-wrong --cache-from "$TOKEN/c" --auth-file "$TMP/token-wrong.json" &&
	warned token-wrong "fetch token from '"'"'$TOKEN_REALM" &&
	warned token-wrong "for user '"'"'cacher'"'"'" &&
	warned token-wrong "HTTP 401 (UNAUTHORIZED: bad credentials): the token endpoint refused the credentials of user '"'"'cacher'"'"'" &&
	test "$(ran token-wrong)" = 2 && no_secret token-wrong
'

test_expect_success "token auth: anonymous, the token endpoint refuses anonymous access; every step runs" '
	build token-none --cache-from "$TOKEN/c" &&
	warned token-none "the token endpoint refused anonymous access" &&
	test "$(ran token-none)" = 2
'

if [ -z "$TLS" ]; then
	test_skip "the step cache over HTTPS" "no non-loopback IPv4 address to serve HTTPS on"
else
	test_expect_success "TLS: --cache-to with --ca-file exports every step" '
		build tls-to --cache-to "$TLS/c" --ca-file "$TMP/tls/ca.pem" &&
		test "$(exported tls-to "$TLS")" = 2 && ! grep -q "without verifying" "$TMP/tls-to.log"
	'

	test_expect_success "TLS: --cache-from without --ca-file refuses the self-signed registry, saying why; every step runs" '
		build tls-noca --cache-from "$TLS/c" &&
		warned tls-noca "https://$TLS/v2/c/manifests/" &&
		warned tls-noca "SSL certificate problem: unable to get local issuer certificate" &&
		test "$(ran tls-noca)" = 2
	'

	test_expect_success "TLS: --cache-from with --ca-file takes every step from the registry" '
		build tls-ca --cache-from "$TLS/c" --ca-file "$TMP/tls/ca.pem" &&
		from_registry tls-ca "$TLS" && test "$(ran tls-ca)" = 0
	'

	test_expect_success "TLS: --tls-verify=false reads it unverified, and says so" '
		build tls-off --cache-from "$TLS/c" --cache-to "$TLS/c" --tls-verify=false &&
		from_registry tls-off "$TLS" && test "$(ran tls-off)" = 0 &&
		test "$(grep -c "without verifying its certificate" "$TMP/tls-off.log")" = 1
	'
fi

test_expect_success "build --help names the registry options" '
	"$IMGF" build --help >"$TMP/help" &&
	grep -q -- "--auth-file" "$TMP/help" && grep -q -- "--tls-verify" "$TMP/help" &&
	grep -q -- "--ca-file" "$TMP/help"
'

test_done
