#!/usr/bin/env bash
# needs: docker fixtures root
# The push post-processor and `imgforge push-index` against real registries (Debian's
# docker-registry on loopback ports of this script's own): the kind node image built from the
# fixtures is pushed anonymously, read back by skopeo (manifest digest, config digest = image
# ID, every layer) and pulled into a second, clean Docker Engine (own data root and socket),
# where it has the same image ID, also when pushed gzip-compressed; a second push sends no
# blob (the registry's access log has HEADs and the manifest PUT only); against a registry
# with htpasswd basic auth, a push without credentials and one with a wrong password fail
# naming why and send nothing, a good one succeeds, and one into another repository mounts
# every blob (POST ?mount=, 201, no upload); against a registry with token auth
# (tests/lib/regtoken.py as its realm) a wrong password is refused by the token endpoint and a
# good one gets one token for pull and push; an index joins the amd64 image and an arm64
# stand-in (pushed by skopeo), and the second engine pulls each platform from it by tag, each
# with its own image ID.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
for c in docker-registry skopeo jq python3 curl dockerd openssl; do
	if ! require_cmd "$c"; then
		TEST_CLAIM=1 test_skip "pushing to a registry" "'$c' is not installed (hack/install-deps.sh)"
		test_done
	fi
done
docker_up "pushing to a registry"
fixtures_up "pushing to a registry"
export IMGFORGE_CACHE_DIR=$TMP/cache
# No credentials but the ones a case gives.
export DOCKER_CONFIG=$TMP/no-docker-config
TAG=imgforge-test/kind-node:t1245-$$
at_exit "docker rmi -f $TAG"
OUT=$TMP/output/debian-12+kube-v1.31.2

# start_registry NAME [htpasswd=FILE|token=REALM]: docker-registry on a free loopback port,
# its storage and access log under $TMP/NAME, anonymous or with that auth; sets PORT.
start_registry() {
	local d=$TMP/$1 pid
	mkdir -p "$d/storage"
	{
		printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n'
		printf '    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:0\n  secret: t1245\n' "$d/storage"
		case ${2:-} in
		htpasswd=*) printf 'auth:\n  htpasswd:\n    realm: t1245\n    path: %s\n' "${2#*=}" ;;
		token=*)
			printf 'auth:\n  token:\n    realm: %s\n    service: t1245\n' "${2#*=}"
			printf '    issuer: t1245-issuer\n    rootcertbundle: %s\n' "$TMP/token-cert.pem"
			;;
		esac
	} >"$d/config.yml"
	docker-registry serve "$d/config.yml" </dev/null >"$d/log" 2>&1 &
	pid=$!
	at_exit "kill $pid"
	PORT=
	for _ in $(seq 600); do
		PORT=$(grep -ohE 'listening on 127\.0\.0\.1:[0-9]+' "$d/log" | head -n 1 | sed 's/.*://')
		[ -n "$PORT" ] && curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	tail -n 5 "$d/log" >&2
	die "docker-registry '$1' did not come up"
}
# count NAME 'METHOD /v2/PATH-PREFIX' [STATUS]: requests in NAME's access log since `mark NAME`
mark() { wc -l <"$TMP/$1/log" >"$TMP/$1/mark"; }
count() {
	tail -n +"$(($(cat "$TMP/$1/mark") + 1))" "$TMP/$1/log" |
		grep -cE "\"$2[^\"]* HTTP/1\.1\" ${3:-[0-9]+} " || true
}

start_registry anon
ANON=127.0.0.1:$PORT
python3 -W ignore -c 'import crypt; print("pusher:" + crypt.crypt("right", crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
	>"$TMP/htpasswd"
start_registry basic "htpasswd=$TMP/htpasswd"
BASIC=127.0.0.1:$PORT
# Bearer tokens from tests/lib/regtoken.py, signed with a key whose self-signed certificate is
# the registry's rootcertbundle.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/token-key.pem" -out "$TMP/token-cert.pem" \
	-days 2 -subj /CN=t1245-token >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log"; die "openssl req failed"; }
python3 "$TOP/tests/lib/regtoken.py" --key "$TMP/token-key.pem" --cert "$TMP/token-cert.pem" \
	--issuer t1245-issuer --service t1245 --user pusher --password right --log "$TMP/token.log" \
	>"$TMP/token.port" 2>"$TMP/token.err" &
at_exit "kill $!"
for _ in $(seq 100); do [ -s "$TMP/token.port" ] && break; sleep 0.1; done
[ -s "$TMP/token.port" ] || { cat "$TMP/token.err"; die "regtoken.py did not start"; }
start_registry token "token=http://127.0.0.1:$(head -n 1 "$TMP/token.port")/token"
TOKEN=127.0.0.1:$PORT
auth_json() { printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$1" "$(printf %s "$2" | base64 -w0)"; }
auth_json "$BASIC" pusher:right >"$TMP/good.json"
auth_json "http://$BASIC" pusher:s3cr3t-wrong >"$TMP/wrong.json"
auth_json "$TOKEN" pusher:right >"$TMP/token-good.json"
auth_json "$TOKEN" pusher:s3cr3t-wrong >"$TMP/token-wrong.json"

# The shipped debian-12 config with kind-node's post-processors plus a push to {{push_ref}}.
jq '.post_processors += [{"type": "push", "ref": "{{ push_ref }}", "auth_file": "{{ push_auth_file }}",
	"mount_from": "{{ push_mount_from }}", "compression": "{{ push_compression }}", "compression_level": 1}]' \
	"$TOP/images/kind-node.json" >"$TMP/kind-node-push.json"
printf '{"include": ["%s"], "variables": {"push_ref": "", "push_auth_file": "", "push_mount_from": "",
	"push_compression": ""}, "images": ["kind-node-push.json"]}\n' "$TOP/config/debian-12.json" >"$TMP/push.json"
build() {
	"$IMGF" build --force --only kind-node --var-file "$FIX/vars.json" \
		--var docker_base_image="$BASE" --var kind_node_image="$TAG" \
		--var "kind_base_packages=$BASE_IMAGE_KIND_PACKAGES" \
		--output-dir "$TMP/output" "$@" "$TMP/push.json"
}
pushed() { jq -r ".builds[0].pushed[$1].$2" "$OUT/manifest.json"; }
skopeo_() { skopeo --policy "$TMP/policy.json" "$@"; }
printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$TMP/policy.json"

mark anon
test_expect_success "the kind node image is built and pushed anonymously, the manifest records where" '
	build --var push_ref="$ANON/kind/node:v1.31.2" >"$TMP/build1.log" 2>&1 ||
		{ tail -n 40 "$TMP/build1.log"; exit 1; }
	grep -E "pushed '"'"'$ANON/kind/node:v1.31.2'"'"' as sha256:[0-9a-f]{64} \([0-9]+ blobs: [0-9]+ uploaded" "$TMP/build1.log"
	test "$(pushed 0 ref)" = "$ANON/kind/node:v1.31.2"
	pushed 0 digest | grep -qE "^sha256:[0-9a-f]{64}$"
	test "$(count anon "PUT /v2/kind/node/manifests/v1.31.2" 201)" = 1
	test "$(count anon "PUT /v2/kind/node/blobs/uploads/" 201)" -ge 2
'
ID=$(jq -r ".builds[0].artifact_id" "$OUT/manifest.json" 2>/dev/null)
DIGEST=$(pushed 0 digest 2>/dev/null)

test_expect_success "skopeo reads it back: the manifest digest, the config is the image ID, the layers are the image's" '
	skopeo_ inspect --tls-verify=false --raw "docker://$ANON/kind/node:v1.31.2" >"$TMP/raw.json"
	test "sha256:$(sha256sum <"$TMP/raw.json" | cut -d" " -f1)" = "$DIGEST"
	jq -e ".mediaType == \"application/vnd.oci.image.manifest.v1+json\"" "$TMP/raw.json"
	test "$(jq -r .config.digest "$TMP/raw.json")" = "$ID"
	docker image inspect "$ID" | jq -r ".[0].RootFS.Layers[]" >"$TMP/engine-layers"
	jq -r ".layers[].digest" "$TMP/raw.json" | diff -u "$TMP/engine-layers" -
	# the dir: transport keeps the blobs as they come (an oci: layout would compress them)
	skopeo_ copy -q --src-tls-verify=false "docker://$ANON/kind/node:v1.31.2" "dir:$TMP/dir"
	for b in $(jq -r ".layers[].digest, .config.digest" "$TMP/raw.json"); do
		sha256sum "$TMP/dir/${b#sha256:}" | grep -q "^${b#sha256:} "
	done
'

mark anon
test_expect_success "a second push sends no blob: HEADs and the manifest only" '
	build --var push_ref="$ANON/kind/node:v1.31.2" >"$TMP/build2.log" 2>&1 ||
		{ tail -n 40 "$TMP/build2.log"; exit 1; }
	grep -E "0 uploaded, 0 bytes; [0-9]+ already there; 0 mounted" "$TMP/build2.log"
	test "$(pushed 0 digest)" = "$DIGEST"
	test "$(count anon "POST /v2/")" = 0
	test "$(count anon "PUT /v2/kind/node/blobs")" = 0
	test "$(count anon "HEAD /v2/kind/node/blobs/sha256:" 200)" -ge 2
	test "$(count anon "PUT /v2/kind/node/manifests/v1.31.2" 201)" = 1
'

mark anon
test_expect_success "compression gzip: the layers go compressed, the image ID stays" '
	build --var push_ref="$ANON/kind/node:v1.31.2-gzip" --var push_compression=gzip \
		>"$TMP/build-gz.log" 2>&1 || { tail -n 40 "$TMP/build-gz.log"; exit 1; }
	skopeo_ inspect --tls-verify=false --raw "docker://$ANON/kind/node:v1.31.2-gzip" >"$TMP/raw-gz.json"
	test "$(jq -r .config.digest "$TMP/raw-gz.json")" = "$ID"
	jq -e "[.layers[].mediaType] | unique == [\"application/vnd.oci.image.layer.v1.tar+gzip\"]" "$TMP/raw-gz.json"
	test "$(jq "[.layers[].size] | add" "$TMP/raw-gz.json")" -lt "$(jq "[.layers[].size] | add" "$TMP/raw.json")"
	skopeo_ copy -q --src-tls-verify=false "docker://$ANON/kind/node:v1.31.2-gzip" "dir:$TMP/dir-gz"
	i=0
	for b in $(jq -r ".layers[].digest" "$TMP/raw-gz.json"); do
		zcat "$TMP/dir-gz/${b#sha256:}" | sha256sum | cut -d" " -f1 >"$TMP/diff"
		test "sha256:$(cat "$TMP/diff")" = "$(sed -n "$((i + 1))p" "$TMP/engine-layers")"
		i=$((i + 1))
	done
'

mark basic
test_expect_success "basic auth: no credentials fail naming the registry, nothing is pushed" '
	cp "$OUT/manifest.json" "$TMP/manifest-before.json" &&
	expect_exit 1 build --var push_ref="$BASIC/kind/node:v1" &&
	expect_err "post-processor '"'"'push'"'"'" &&
	expect_err "registry '"'"'$BASIC'"'"' asks for a user and password, and there is no docker config.json" &&
	test "$(count basic "PUT /v2/")" = 0 &&
	cmp "$TMP/manifest-before.json" "$OUT/manifest.json"
'

test_expect_success "basic auth: a wrong password is refused, naming the user and not the password" '
	expect_exit 1 build --var push_ref="$BASIC/kind/node:v1" --var push_auth_file="$TMP/wrong.json" &&
	expect_err "HTTP 401: the registry refused the credentials of user '"'"'pusher'"'"'" &&
	! grep -q s3cr3t "$TMP/err" &&
	test "$(count basic "PUT /v2/")" = 0
'

mark basic
test_expect_success "basic auth: the right credentials push the image" '
	build --var push_ref="$BASIC/kind/node:v1" --var push_auth_file="$TMP/good.json" \
		>"$TMP/build3.log" 2>&1 || { tail -n 40 "$TMP/build3.log"; exit 1; }
	test "$(pushed 0 digest)" = "$DIGEST"
	test "$(count basic "PUT /v2/kind/node/manifests/v1" 201)" = 1
	printf "pusher:right" >"$TMP/creds"
	skopeo_ inspect --tls-verify=false --creds "$(cat "$TMP/creds")" --raw "docker://$BASIC/kind/node:v1" |
		sha256sum | grep -q "^${DIGEST#sha256:} "
'

mark basic
test_expect_success "mount_from: into another repository every blob is mounted, none uploaded" '
	build --var push_ref="$BASIC/team/node:v1" --var push_auth_file="$TMP/good.json" \
		--var push_mount_from=kind/node >"$TMP/build4.log" 2>&1 || { tail -n 40 "$TMP/build4.log"; exit 1; }
	grep -E "0 uploaded, 0 bytes; 0 already there; [0-9]+ mounted" "$TMP/build4.log"
	test "$(count basic "POST /v2/team/node/blobs/uploads/\?mount=sha256:[0-9a-f]{64}&from=kind/node" 201)" -ge 2
	test "$(count basic "PUT /v2/team/node/blobs")" = 0
	test "$(count basic "PUT /v2/team/node/manifests/v1" 201)" = 1
'

test_expect_success "bearer: a wrong password is refused by the token endpoint, naming it and the user" '
	expect_exit 1 build --var push_ref="$TOKEN/kind/node:v1" --var push_auth_file="$TMP/token-wrong.json" &&
	expect_err "token from '"'"'http://127.0.0.1:$(head -n 1 "$TMP/token.port")/token'"'"' for user '"'"'pusher'"'"'" &&
	expect_err "HTTP 401 (UNAUTHORIZED: bad credentials)" &&
	! grep -q s3cr3t "$TMP/err"
'

mark token
test_expect_success "bearer: one token for pull and push of the repository, then the image is pushed" '
	: >"$TMP/token.log"
	build --var push_ref="$TOKEN/kind/node:v1" --var push_auth_file="$TMP/token-good.json" \
		>"$TMP/build5.log" 2>&1 || { tail -n 40 "$TMP/build5.log"; exit 1; }
	test "$(pushed 0 digest)" = "$DIGEST"
	test "$(cat "$TMP/token.log")" = "GET /token?service=t1245&scope=repository%3Akind%2Fnode%3Apull%2Cpush 200"
	test "$(count token "PUT /v2/kind/node/manifests/v1" 201)" = 1
	skopeo_ inspect --tls-verify=false --creds pusher:right --raw "docker://$TOKEN/kind/node:v1" |
		sha256sum | grep -q "^${DIGEST#sha256:} "
'

# An arm64 stand-in (a docker-archive of one small layer, config for linux/arm64) pushed by
# skopeo: what an arm64 build of the same config would have pushed.
python3 - "$TMP/arm64.tar" >"$TMP/arm64.id" <<'EOF'
import hashlib, io, json, sys, tarfile
def member(t, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
lb = io.BytesIO()
with tarfile.open(fileobj=lb, mode="w") as t:
    member(t, "etc/arch", b"arm64\n")
layer = lb.getvalue()
lh = hashlib.sha256(layer).hexdigest()
cfg = json.dumps({"architecture": "arm64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + lh]}}).encode()
ch = hashlib.sha256(cfg).hexdigest()
with tarfile.open(sys.argv[1], "w") as t:
    member(t, ch + ".json", cfg)
    member(t, lh + "/layer.tar", layer)
    member(t, "manifest.json", json.dumps([{"Config": ch + ".json", "RepoTags": None,
                                            "Layers": [lh + "/layer.tar"]}]).encode())
print("sha256:" + ch)
EOF
ARM_ID=$(cat "$TMP/arm64.id")

mark anon
test_expect_success "push-index joins the amd64 image and the arm64 one under one tag" '
	skopeo_ copy -q --dest-tls-verify=false "docker-archive:$TMP/arm64.tar" \
		"docker://$ANON/kind/node-arm64:v1.31.2"
	"$IMGF" push-index "$ANON/kind/node:v1.31.2-multi" "$ANON/kind/node:v1.31.2" \
		"$ANON/kind/node-arm64:v1.31.2" >"$TMP/index.out" 2>"$TMP/index.err" ||
		{ cat "$TMP/index.err"; exit 1; }
	grep -qE "^$ANON/kind/node:v1.31.2-multi@sha256:[0-9a-f]{64}$" "$TMP/index.out"
	skopeo_ inspect --tls-verify=false --raw "docker://$ANON/kind/node:v1.31.2-multi" >"$TMP/index.json"
	test "sha256:$(sha256sum <"$TMP/index.json" | cut -d" " -f1)" = "$(sed "s/.*@//" "$TMP/index.out")"
	jq -e ".mediaType == \"application/vnd.oci.image.index.v1+json\" and (.manifests | length) == 2" "$TMP/index.json"
	jq -e --arg d "$DIGEST" ".manifests[0].digest == \$d and .manifests[0].platform == {\"architecture\": \"amd64\", \"os\": \"linux\"}" "$TMP/index.json"
	jq -e ".manifests[1].platform == {\"architecture\": \"arm64\", \"os\": \"linux\"}" "$TMP/index.json"
	# the arm64 manifest was brought into kind/node: its blobs mounted, its manifest put by digest
	test "$(count anon "POST /v2/kind/node/blobs/uploads/\?mount=" 201)" = 2
	test "$(count anon "PUT /v2/kind/node/manifests/$(jq -r ".manifests[1].digest" "$TMP/index.json")" 201)" = 1
'

test_expect_success "push-index refuses two images of one platform" '
	expect_exit 1 "$IMGF" push-index "$ANON/kind/node:bad" "$ANON/kind/node:v1.31.2" "$ANON/kind/node:v1.31.2" &&
	expect_err "are both for linux/amd64"
'

# A second Docker Engine, empty: its own config (not /etc/docker/daemon.json), data root, exec
# root, socket and pid file, no iptables rules (the registries are on loopback, which it pulls
# from over plain HTTP), and a bridge of its own: with `--bridge none` dockerd deletes the
# host's docker0 at start (the default bridge it takes for stale), which the first engine's
# containers need.
had_docker0=
ip link show docker0 >/dev/null 2>&1 && had_docker0=1
D2=$TMP/dockerd2
D2_BR=imgf2br$$
D2_BR=${D2_BR:0:15}
mkdir -p "$D2"
echo "{}" >"$D2/daemon.json"
ip link add name "$D2_BR" type bridge || die "ip link add $D2_BR"
dockerd --config-file "$D2/daemon.json" --data-root "$D2/data" --exec-root "$D2/exec" --pidfile "$D2/pid" \
	--host "unix://$D2/sock" --bridge "$D2_BR" --iptables=false --ip-masq=false --storage-driver vfs \
	--containerd-namespace "t1245-$$" --containerd-plugins-namespace "t1245-plugins-$$" \
	</dev/null >"$D2/log" 2>&1 &
D2_PID=$!
at_exit "kill $D2_PID; wait $D2_PID; rm -rf $D2/data"
at_exit "ip link del '$D2_BR'"
d2() { DOCKER_HOST=unix://$D2/sock docker "$@"; }
for _ in $(seq 300); do
	d2 version >/dev/null 2>&1 && break
	kill -0 "$D2_PID" 2>/dev/null || break
	sleep 0.1
done

test_expect_success "a second, empty Docker Engine is up" '
	d2 version >/dev/null || { tail -n 20 "$D2/log"; exit 1; }
	test -z "$(d2 images -q)"
'

test_expect_success "the second engine pulls the pushed tag: the same image ID" '
	d2 pull -q "$ANON/kind/node:v1.31.2"
	test "$(d2 image inspect -f "{{.Id}}" "$ANON/kind/node:v1.31.2")" = "$ID"
'

test_expect_success "the second engine pulls the gzip-compressed push: the same image ID" '
	d2 pull -q "$ANON/kind/node:v1.31.2-gzip"
	test "$(d2 image inspect -f "{{.Id}}" "$ANON/kind/node:v1.31.2-gzip")" = "$ID"
'

test_expect_success "the second engine pulls each platform of the index by tag: each its own image ID" '
	d2 pull -q --platform linux/amd64 "$ANON/kind/node:v1.31.2-multi"
	test "$(d2 image inspect -f "{{.Id}}" "$ANON/kind/node:v1.31.2-multi")" = "$ID"
	d2 rmi "$ANON/kind/node:v1.31.2-multi" >/dev/null
	d2 pull -q --platform linux/arm64 "$ANON/kind/node:v1.31.2-multi"
	test "$(d2 image inspect -f "{{.Id}} {{.Architecture}}" "$ANON/kind/node:v1.31.2-multi")" = "$ARM_ID arm64"
'

test_expect_success "the host's engine keeps its default bridge (docker0) beside the second engine" '
	test -z "$had_docker0" || ip link show docker0 >/dev/null
'

test_done
