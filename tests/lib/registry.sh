# shellcheck shell=bash
# A registry and a second Docker Engine of a script's own, as tests/integration/t1245 starts
# them (sourced after harness.sh; needs docker-registry, dockerd, curl, ip and root; openssl
# and python3 for token auth and TLS).

# start_registry NAME [htpasswd=FILE|token=REALM|tls=DIR]: docker-registry on a free port,
# its storage and access log under $TMP/NAME, anonymous or with that auth; sets PORT. It
# listens on loopback (127.0.0.1), or with tls=DIR on $REGISTRY_ADDR (a non-loopback address:
# imgforge speaks plain HTTP to loopback registries) over HTTPS with DIR/server.pem and
# DIR/server-key.pem.
start_registry() {
	local d=$TMP/$1 pid addr=127.0.0.1 scheme=http
	case ${2:-} in tls=*) addr=$REGISTRY_ADDR scheme=https ;; esac
	mkdir -p "$d/storage"
	{
		printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n'
		printf '    rootdirectory: %s\nhttp:\n  addr: %s:0\n  secret: %s\n' "$d/storage" "$addr" "$TEST_NAME"
		case ${2:-} in
		htpasswd=*) printf 'auth:\n  htpasswd:\n    realm: %s\n    path: %s\n' "$TEST_NAME" "${2#*=}" ;;
		token=*)
			printf 'auth:\n  token:\n    realm: %s\n    service: %s\n' "${2#*=}" "$TEST_NAME"
			printf '    issuer: %s-issuer\n    rootcertbundle: %s\n' "$TEST_NAME" "$TMP/token-cert.pem"
			;;
		tls=*) printf '  tls:\n    certificate: %s\n    key: %s\n' "${2#*=}/server.pem" "${2#*=}/server-key.pem" ;;
		esac
	} >"$d/config.yml"
	docker-registry serve "$d/config.yml" </dev/null >"$d/log" 2>&1 &
	pid=$!
	at_exit "kill $pid"
	PORT=
	for _ in $(seq 600); do
		PORT=$(grep -ohE "listening on ${addr//./\\.}:[0-9]+" "$d/log" | head -n 1 | sed 's/.*://')
		[ -n "$PORT" ] && curl -k -s -o /dev/null "$scheme://$addr:$PORT/v2/" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	tail -n 5 "$d/log" >&2
	die "docker-registry '$1' did not come up"
}

# start_token_endpoint USER PASSWORD: tests/lib/regtoken.py on a loopback port, signing with a
# throwaway key whose self-signed certificate ($TMP/token-cert.pem) a token registry trusts;
# sets TOKEN_REALM. Its answers are logged to $TMP/token.log.
start_token_endpoint() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/token-key.pem" -out "$TMP/token-cert.pem" \
		-days 2 -subj "/CN=$TEST_NAME-token" >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log"; die "openssl req failed"; }
	python3 "$TOP/tests/lib/regtoken.py" --key "$TMP/token-key.pem" --cert "$TMP/token-cert.pem" \
		--issuer "$TEST_NAME-issuer" --service "$TEST_NAME" --user "$1" --password "$2" --log "$TMP/token.log" \
		>"$TMP/token.port" 2>"$TMP/token.err" &
	at_exit "kill $!"
	for _ in $(seq 100); do [ -s "$TMP/token.port" ] && break; sleep 0.1; done
	[ -s "$TMP/token.port" ] || { cat "$TMP/token.err"; die "regtoken.py did not start"; }
	TOKEN_REALM=http://127.0.0.1:$(head -n 1 "$TMP/token.port")/token
}

# tls_certs DIR IP: a CA (DIR/ca.pem) and a server certificate for IP signed by it.
tls_certs() {
	mkdir -p "$1"
	openssl req -x509 -new -newkey rsa:2048 -nodes -subj "/CN=$TEST_NAME CA" -days 1 \
		-keyout "$1/ca-key.pem" -out "$1/ca.pem" >/dev/null 2>&1 &&
		openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1/server-key.pem" \
			-out "$1/server.csr" >/dev/null 2>&1 &&
		openssl x509 -req -in "$1/server.csr" -CA "$1/ca.pem" -CAkey "$1/ca-key.pem" -CAcreateserial \
			-days 1 -out "$1/server.pem" -extfile <(printf 'subjectAltName=IP:%s\n' "$2") >/dev/null 2>&1
}

# auth_json REGISTRY USER:PASSWORD: a docker config.json with those credentials for REGISTRY.
auth_json() { printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$1" "$(printf %s "$2" | base64 -w0)"; }

# mark NAME, then count NAME 'METHOD /v2/PATH-PREFIX' [STATUS]: requests in NAME's access log
# since the mark.
mark() { wc -l <"$TMP/$1/log" >"$TMP/$1/mark"; }
count() {
	tail -n +"$(($(cat "$TMP/$1/mark") + 1))" "$TMP/$1/log" |
		grep -cE "\"$2[^\"]* HTTP/1\.1\" ${3:-[0-9]+} " || true
}

# dockerd2_up [STORAGE_DRIVER]: a second Docker Engine, empty: its own config (not
# /etc/docker/daemon.json), data root, exec root, socket and pid file under $TMP/dockerd2, no
# iptables rules (registries on loopback, which it pulls from over plain HTTP), and a bridge of
# its own: with `--bridge none` dockerd deletes the host's docker0 at start (the default bridge
# it takes for stale), which the first engine's containers need. Its cgroup driver is the first
# engine's: both put their containers' cgroups in one hierarchy (kind's nodes run on either).
# Sets D2 and defines d2 (the docker CLI for it); DOCKER_HOST=unix://$D2/sock points imgforge
# at it.
dockerd2_up() {
	local driver=${1:-vfs} cgroups
	cgroups=$(docker info -f '{{.CgroupDriver}}') || return 1
	D2=$TMP/dockerd2
	D2_BR=imgf2br$$
	D2_BR=${D2_BR:0:15}
	mkdir -p "$D2"
	echo "{}" >"$D2/daemon.json"
	ip link add name "$D2_BR" type bridge || die "ip link add $D2_BR"
	dockerd --config-file "$D2/daemon.json" --data-root "$D2/data" --exec-root "$D2/exec" \
		--pidfile "$D2/pid" --host "unix://$D2/sock" --bridge "$D2_BR" --iptables=false \
		--ip-masq=false --storage-driver "$driver" --exec-opt native.cgroupdriver="$cgroups" \
		--containerd-namespace "$TEST_NAME-$$" --containerd-plugins-namespace "$TEST_NAME-plugins-$$" \
		</dev/null >"$D2/log" 2>&1 &
	D2_PID=$!
	# dockerd leaves its default network namespace mounted in the exec root
	at_exit "kill $D2_PID; wait $D2_PID; umount '$D2/exec/netns/default'; rm -rf $D2/data"
	at_exit "ip link del '$D2_BR'"
	for _ in $(seq 300); do
		d2 version >/dev/null 2>&1 && return 0
		kill -0 "$D2_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$D2/log" >&2
	return 1
}
d2() { DOCKER_HOST=unix://$D2/sock docker "$@"; }
