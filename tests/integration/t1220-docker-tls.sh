#!/usr/bin/env bash
# needs: docker
# DOCKER_HOST=tcp:// with TLS client certificates: a loopback TLS front (socat) to the local
# Engine's socket that demands a client certificate signed by a test CA.
. "$(dirname "$0")/../lib/harness.sh"
docker_up "docker over TLS"
if ! require_cmd socat || ! require_cmd openssl; then
	test_skip "docker over TLS" "socat and openssl are needed"
	test_done
fi
F=$TOP/tests/fixtures/config
C=$TMP/certs
mkdir -p "$C" "$TMP/other"
mkcert() { # DIR NAME CN EXT
	openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$3" -keyout "$1/$2-key.pem" \
		-out "$1/$2.csr" 2>/dev/null &&
		openssl x509 -req -in "$1/$2.csr" -CA "$1/ca.pem" -CAkey "$1/ca-key.pem" \
			-CAcreateserial -days 1 -out "$1/$2.pem" -extfile <(printf '%s\n' "$4") 2>/dev/null
}
for d in "$C" "$TMP/other"; do
	openssl req -x509 -new -newkey rsa:2048 -nodes -subj "/CN=imgforge test CA" -days 1 \
		-keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null || die "openssl CA"
	mkcert "$d" server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost" || die "server cert"
	mkcert "$d" client imgforge-client "extendedKeyUsage=clientAuth" || die "client cert"
	cp "$d/client.pem" "$d/cert.pem" && cp "$d/client-key.pem" "$d/key.pem"
done
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
socat "OPENSSL-LISTEN:$PORT,bind=127.0.0.1,reuseaddr,fork,cert=$C/server.pem,key=$C/server-key.pem,cafile=$C/ca.pem,verify=1" \
	UNIX-CONNECT:/var/run/docker.sock 2>"$TMP/socat.log" &
at_exit "kill $!"
for _ in $(seq 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	sleep 0.1
done

test_expect_success "a build runs over tcp:// with TLS client certificates" '
	DOCKER_HOST=tcp://127.0.0.1:$PORT DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$C \
		"$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output" "$F/simple.json" \
		>"$TMP/build.log" 2>&1 || { cat "$TMP/build.log" "$TMP/socat.log"; exit 1; }
	id=$(jq -r ".builds[0].artifact_id" "$TMP/output/test-simple+kube-v1.31.2/manifest.json")
	trap "docker rmi -f $id >/dev/null 2>&1" EXIT
	test "$(docker run --rm "$id" cat /greeting)" = "hello from base on amd64"
'

test_expect_success "a server certificate from another CA is refused" '
	expect_exit 1 env DOCKER_HOST=tcp://127.0.0.1:$PORT DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$TMP/other \
		"$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output2" "$F/simple.json" &&
	expect_err "docker engine at" &&
	test ! -e "$TMP/output2"
'

test_expect_success "missing client certificates are named before connecting" '
	mkdir -p "$TMP/empty" &&
	expect_exit 1 env DOCKER_HOST=tcp://127.0.0.1:$PORT DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$TMP/empty \
		"$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output3" "$F/simple.json" &&
	expect_err "$TMP/empty/cert.pem"
'

# The right client certificate beside the other CA: only verification can tell.
mkdir -p "$TMP/wrong-ca" && cp "$C/cert.pem" "$C/key.pem" "$TMP/wrong-ca/" && cp "$TMP/other/ca.pem" "$TMP/wrong-ca/"

test_expect_success "DOCKER_TLS_VERIFY=0 still verifies, as the docker CLI does" '
	expect_exit 1 env DOCKER_HOST=tcp://127.0.0.1:$PORT DOCKER_TLS_VERIFY=0 DOCKER_CERT_PATH=$TMP/wrong-ca \
		"$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output5" "$F/simple.json" &&
	expect_err "docker engine at" &&
	test ! -e "$TMP/output5"
'

test_expect_success "DOCKER_CERT_PATH without DOCKER_TLS_VERIFY runs TLS unverified and says so" '
	env -u DOCKER_TLS_VERIFY DOCKER_HOST=tcp://127.0.0.1:$PORT DOCKER_CERT_PATH=$TMP/wrong-ca \
		"$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output6" "$F/simple.json" \
		>"$TMP/build6.log" 2>&1 || { cat "$TMP/build6.log"; exit 1; }
	id=$(jq -r ".builds[0].artifact_id" "$TMP/output6/test-simple+kube-v1.31.2/manifest.json")
	docker rmi -f "$id" >/dev/null 2>&1
	grep -F "TLS without verifying the engine" "$TMP/build6.log" &&
	grep -F "DOCKER_TLS_VERIFY=1" "$TMP/build6.log"
'

test_expect_success "a verified build says nothing about verification" '
	! grep -F "without verifying" "$TMP/build.log"
'

test_expect_success "a DOCKER_HOST of an unknown kind is refused with the accepted forms" '
	expect_exit 1 env DOCKER_HOST=npipe:////./pipe/docker_engine \
		"$IMGF" build --var docker_base_image="$BASE" --output-dir "$TMP/output4" "$F/simple.json" &&
	expect_err "expected unix:///PATH or tcp://HOST:PORT"
'

test_done
