#!/usr/bin/env bash
# needs: none
# The command line and configuration contract: no Docker needed.
. "$(dirname "$0")/../lib/harness.sh"
F=$TOP/tests/fixtures/config

test_expect_success "version prints the version and exits 0" '
	expect_exit 0 "$IMGF" version &&
	grep -q "^imgforge " "$TMP/out"
'

test_expect_success "no command is a usage error (exit 2)" '
	expect_exit 2 "$IMGF" &&
	expect_err "usage: imgforge COMMAND"
'

test_expect_success "an unknown command is a usage error naming it" '
	expect_exit 2 "$IMGF" frobnicate &&
	expect_err "unknown command '"'"'frobnicate'"'"'"
'

test_expect_success "--help works for every subcommand" '
	for c in build validate inspect lock mirror version; do
		expect_exit 0 "$IMGF" $c --help && grep -q "usage: imgforge $c" "$TMP/out"
	done
'

test_expect_success "an unknown option is a usage error (exit 2)" '
	expect_exit 2 "$IMGF" build --frob "$F/simple.json" &&
	expect_err "unknown option '"'"'--frob'"'"'"
'

test_expect_success "--on-error takes only cleanup or abort" '
	expect_exit 2 "$IMGF" build --on-error=ask "$F/simple.json" &&
	expect_err "expected '"'"'cleanup'"'"' or '"'"'abort'"'"'"
'

test_expect_success "validate accepts the shipped configs" '
	for c in debian-12 ubuntu-2204; do
		expect_exit 0 "$IMGF" validate "$TOP/config/$c.json" || exit 1
		grep -q "the configuration is valid" "$TMP/out"
	done
'

test_expect_success "JSON and YAML configs resolve to the same variables and images" '
	"$IMGF" inspect --json "$F/simple.json" | jq -S "del(.config) | .images[].file |= sub(\".*/\"; \"\")" >"$TMP/a" &&
	"$IMGF" inspect --json "$F/simple.yaml" | jq -S "del(.config) | .images[].file |= sub(\".*/\"; \"\")" |
		sed "s/simple.yaml/simple.json/" >"$TMP/b" &&
	jq -S ".variables | map_values(.value)" "$TMP/a" >"$TMP/av" &&
	jq -S ".variables | map_values(.value)" "$TMP/b" >"$TMP/bv" &&
	diff "$TMP/av" "$TMP/bv" &&
	diff <(jq -S .images "$TMP/a") <(jq -S .images "$TMP/b")
'

test_expect_success "includes come first, the file itself wins over them" '
	"$IMGF" inspect --json "$F/simple.json" >"$TMP/i" &&
	test "$(jq -r .variables.shadowed.value "$TMP/i")" = file &&
	test "$(jq -r .variables.arch.value "$TMP/i")" = amd64 &&
	jq -r .variables.arch.from "$TMP/i" | grep -q "base.json$"
'

test_expect_success "variables interpolate other variables and reach image definitions" '
	"$IMGF" inspect --json "$F/simple.json" >"$TMP/i" &&
	test "$(jq -r .variables.nested.value "$TMP/i")" = "hello from base on amd64" &&
	jq -r ".images[0].provisioners[0].inline[0]" "$TMP/i" | grep -qF "hello from base on amd64"
'

test_expect_success "precedence: --var-files in order over the config, --var over all" '
	"$IMGF" inspect --json --var-file "$F/override.json" "$F/simple.json" >"$TMP/i" &&
	test "$(jq -r .variables.shadowed.value "$TMP/i")" = var-file-1 &&
	test "$(jq -r .variables.nested.value "$TMP/i")" = "from var file on amd64" &&
	"$IMGF" inspect --json --var-file "$F/override.json" --var-file "$F/override2.yaml" "$F/simple.json" >"$TMP/i" &&
	test "$(jq -r .variables.shadowed.value "$TMP/i")" = var-file-2 &&
	"$IMGF" inspect --json --var shadowed=cli --var-file "$F/override2.yaml" "$F/simple.json" >"$TMP/i" &&
	test "$(jq -r .variables.shadowed.value "$TMP/i")" = cli &&
	test "$(jq -r .variables.shadowed.from "$TMP/i")" = --var
'

test_expect_success "single-dash long options work as Packer users type them" '
	"$IMGF" inspect -json -var shadowed=dash -only=simple "$F/simple.json" >"$TMP/i" &&
	test "$(jq -r .variables.shadowed.value "$TMP/i")" = dash &&
	test "$(jq -r ".images | length" "$TMP/i")" = 1
'

test_expect_success "--only naming an unknown image fails and lists the images" '
	expect_exit 1 "$IMGF" validate --only nope "$F/simple.json" &&
	expect_err "--only: no image named '"'"'nope'"'"'" &&
	expect_err "(images: '"'"'simple'"'"')"
'

test_expect_success "an undefined variable names the file and the key path" '
	expect_exit 1 "$IMGF" validate "$F/undefined-var.json" &&
	expect_err "undefined-var-image.json: provisioners[1].url: undefined variable '"'"'no_such_var'"'"'"
'

test_expect_success "a bad checksum form fails validate with the accepted forms" '
	expect_exit 1 "$IMGF" validate "$F/bad-checksum.json" &&
	expect_err "bad-checksum-image.json: provisioners[0] (runc): input '"'"'runc'"'"': checksum '"'"'md5:d41d8cd98f00b204e9800998ecf8427e'"'"'" &&
	expect_err "sha256:HEX, sha512:HEX, file:URL"
'

test_expect_success "a short sha256 is refused with the expected length" '
	expect_exit 1 "$IMGF" validate --var x=1 "$F/bad-checksum.json" &&
	cp "$F"/bad-checksum*.json "$TMP/" &&
	sed -i "s/md5:d41d8cd98f00b204e9800998ecf8427e/sha256:abcd/" "$TMP/bad-checksum-image.json" &&
	expect_exit 1 "$IMGF" validate "$TMP/bad-checksum.json" &&
	expect_err "64"
'

test_expect_success "JSON syntax errors give file:line:column" '
	expect_exit 1 "$IMGF" validate "$F/syntax-error.json" &&
	grep -E "syntax-error.json:[0-9]+:[0-9]+: " "$TMP/err"
'

test_expect_success "YAML syntax errors give file:line:column" '
	expect_exit 1 "$IMGF" validate "$F/syntax-error.yaml" &&
	grep -E "syntax-error.yaml:3:[0-9]+: " "$TMP/err"
'

test_expect_success "an unknown top-level key lists the known keys" '
	expect_exit 1 "$IMGF" validate "$F/unknown-key.json" &&
	expect_err "unknown key '"'"'imagez'"'"' (known keys: '"'"'include'"'"', '"'"'variables'"'"', '"'"'images'"'"')"
'

test_expect_success "an unknown provisioner type lists the known provisioners" '
	expect_exit 1 "$IMGF" validate "$F/unknown-provisioner.json" &&
	expect_err "unknown provisioner '"'"'ansible'"'"' (known provisioners: '"'"'shell'"'"'" &&
	expect_err "'"'"'sysprep'"'"')"
'

test_expect_success "an unknown provisioner key lists the provisioner's keys" '
	expect_exit 1 "$IMGF" validate "$F/unknown-step-key.json" &&
	expect_err "provisioners[0] (runc): unknown key '"'"'sha'"'"' (known keys: '"'"'url'"'"', '"'"'checksum'"'"'"
'

test_expect_success "an unknown post-processor key lists the post-processor's keys" '
	sed "s/\"type\": \"ova\"}/\"type\": \"ova\", \"custom_propertys\": {}}/" \
		"$TOP/images/capi-ova.json" >"$TMP/ova.json" &&
	printf "{\"include\": [\"%s\"], \"images\": [\"ova.json\"]}" "$TOP/config/debian-12.json" \
		>"$TMP/cfg.json" &&
	expect_exit 1 "$IMGF" validate "$TMP/cfg.json" &&
	expect_err "post_processors[0] (ova): unknown key '"'"'custom_propertys'"'"' (known keys: '"'"'custom_properties'"'"')"
'

test_expect_success "a variable cycle is an error, not a hang" '
	expect_exit 1 timeout 10 "$IMGF" validate "$F/cycle.json" &&
	expect_err "refers to itself"
'

test_expect_success "a missing config file is named" '
	expect_exit 1 "$IMGF" validate "$TMP/nope.json" &&
	expect_err "nope.json"
'

test_expect_success "the main job fails early naming the unreachable URL and its variable" '
	expect_exit 1 env IMGFORGE_CACHE_DIR="$TMP/cache" "$IMGF" build --output-dir "$TMP/output" \
		--var containerd_url=http://imgforge-unresolvable.invalid/containerd.tar.gz \
		--var containerd_checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 \
		--only kind-node "$TOP/config/debian-12.json" &&
	expect_err "imgforge-unresolvable.invalid" &&
	expect_err "variable '"'"'containerd_url'"'"'" &&
	test ! -e "$TMP/output"
'

test_expect_success "--json build events are one JSON object per line" '
	expect_exit 1 env IMGFORGE_CACHE_DIR="$TMP/cache" "$IMGF" build --json --output-dir "$TMP/output" \
		--var containerd_url=http://imgforge-unresolvable.invalid/c.tar.gz \
		--var containerd_checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 \
		--only kind-node "$TOP/config/debian-12.json" &&
	test -s "$TMP/out" &&
	while read -r line; do echo "$line" | jq -e .event >/dev/null || exit 1; done <"$TMP/out" &&
	jq -r .event "$TMP/out" | grep -qx error
'

test_expect_success "boot_check takes true, false or kubeadm; validate names anything else" '
	for v in true false kubeadm; do
		"$IMGF" validate --only capi-qcow2 --var boot_check=$v "$TOP/config/debian-12.json" >/dev/null ||
			{ echo "boot_check=$v refused"; exit 1; }
	done &&
	expect_exit 1 "$IMGF" validate --only capi-qcow2 --var boot_check=maybe "$TOP/config/debian-12.json" &&
	expect_err "boot_check: \"maybe\": expected true, false or \"kubeadm\""
'

test_expect_success "a malformed kubernetes_semver fails validate naming the value and the form" '
	for v in v1.37 latest "v1.37.2-" v1.x.2; do
		expect_exit 1 "$IMGF" validate --only kind-node --var "kubernetes_semver=$v" "$TOP/config/debian-13.json" &&
		expect_err "kubernetes_semver '"'"'$v'"'"' is not a Kubernetes release version: expected vMAJOR.MINOR.PATCH" || exit 1
	done
'

test_expect_success "a minor upstream no longer supports validates with a warning naming the supported minors" '
	expect_exit 0 "$IMGF" validate --only kind-node --var kubernetes_semver=v1.31.2 "$TOP/config/debian-13.json" &&
	expect_err "kubernetes_semver '"'"'v1.31.2'"'"': v1.31 is not a Kubernetes minor upstream supports (supported: v1.35, v1.36, v1.37)" &&
	expect_exit 0 "$IMGF" validate --only kind-node "$TOP/config/debian-13.json" &&
	! grep -F "warning" "$TMP/err"
'

test_expect_success "the shipped defaults: Kubernetes v1.37, containerd 2.x, Debian 13 for the README's first command" '
	"$IMGF" inspect --json --only kind-node "$TOP/config/debian-13.json" >"$TMP/i" &&
	jq -e ".variables.kubernetes_semver.value | test(\"^v1[.]37[.][0-9]+$\")" "$TMP/i" &&
	jq -e ".variables.containerd_version.value | startswith(\"2.\")" "$TMP/i" &&
	jq -e ".variables.docker_base_image.value == \"debian:trixie\"" "$TMP/i" &&
	jq -e "[.variables.pause_image.value, .variables.etcd_image.value, .variables.coredns_image.value] == [\"\", \"\", \"\"]" "$TMP/i" &&
	grep -F "./imgforge build config/debian-13.json" "$TOP/README.md"
'

test_expect_success "registry_mirrors must be a JSON object of valid registry: mirror" '
	expect_exit 1 "$IMGF" validate --only kind-node --var "registry_mirrors=[1]" "$TOP/config/debian-12.json" &&
	expect_err "provisioners[6] (images): registry_mirrors: '"'"'[1]'"'"' is not a JSON object of registry: mirror" &&
	expect_exit 1 "$IMGF" validate --only kind-node \
		--var "registry_mirrors={\"registry.k8s.io\": \"127.0.0.1:70000\"}" "$TOP/config/debian-12.json" &&
	expect_err "registry_mirrors: invalid registry port '"'"'70000'"'"'" &&
	"$IMGF" validate --only kind-node \
		--var "registry_mirrors={\"registry.k8s.io\": \"127.0.0.1:5000/registry.k8s.io\"}" \
		"$TOP/config/debian-12.json"
'

test_expect_success "validate checks the ova post-processor: hardware variables and custom properties" '
	expect_exit 1 "$IMGF" validate --only capi-ova --var ova_cpus=abc "$TOP/config/ubuntu-2204.json" &&
	expect_err "post_processors[0] (ova): ova '"'"'ubuntu-2204+kube-$(jq -r .variables.kubernetes_semver "$TOP/config/kubernetes.json")'"'"': variable '"'"'ova_cpus'"'"': '"'"'abc'"'"' is not a whole number" &&
	expect_exit 1 "$IMGF" validate --only capi-ova --var ova_cpus=abc \
		--var ovf_custom_properties="not json" "$TOP/config/ubuntu-2204.json" &&
	expect_err "post_processors[0] (ova): variable '"'"'ovf_custom_properties'"'"': expected a JSON object of strings, got '"'"'not json'"'"'" &&
	expect_exit 1 "$IMGF" validate --only capi-ova --var ovf_custom_properties="{\"DISTRO_NAME\": \"x\"}" \
		"$TOP/config/ubuntu-2204.json" &&
	expect_err "ovf_custom_properties: '"'"'DISTRO_NAME'"'"' is a built-in property" &&
	expect_exit 1 "$IMGF" validate --only capi-ova --var ova_memory_mb=0 "$TOP/config/ubuntu-2204.json" &&
	expect_err "variable '"'"'ova_memory_mb'"'"': 0 is out of range" &&
	"$IMGF" validate --only capi-ova --var ova_cpus=4 --var ovf_custom_properties="{\"a\": \"b\"}" \
		"$TOP/config/ubuntu-2204.json"
'

# A step that downloads a local file, its cap from variable max (step key max_size).
mkdir -p "$TMP/cap"
head -c 5000 /dev/urandom >"$TMP/cap/blob"
CAPSUM=$(sha256sum "$TMP/cap/blob" | cut -d" " -f1)
cat >"$TMP/cap/config.json" <<JSON
{"variables": {"build_name": "cap", "kubernetes_semver": "v1.37.2", "max": "1K"}, "images": ["image.json"]}
JSON
cat >"$TMP/cap/image.json" <<JSON
{"name": "cap", "builder": {"type": "docker", "image": "imgforge-test/none:1"},
 "provisioners": [{"type": "runc", "url": "file://$TMP/cap/blob", "max_size": "{{ max }}",
                   "checksum": "sha256:$CAPSUM"}]}
JSON
sed 's/ *"max_size": "{{ max }}",//' "$TMP/cap/image.json" >"$TMP/cap/image-nomax.json"
sed 's/image.json/image-nomax.json/' "$TMP/cap/config.json" >"$TMP/cap/config-nomax.json"
cat >"$TMP/cap/image-shell.json" <<'JSON'
{"name": "cap", "builder": {"type": "docker", "image": "imgforge-test/none:1"},
 "provisioners": [{"type": "shell", "inline": "true", "max_size": "{{ max }}"}]}
JSON
sed 's/image.json/image-shell.json/' "$TMP/cap/config.json" >"$TMP/cap/config-shell.json"

test_expect_success "a step's max_size caps its downloads; nothing of the file is kept" '
	export IMGFORGE_CACHE_DIR="$TMP/cap/cache"
	expect_exit 1 "$IMGF" build --output-dir "$TMP/cap/out" "$TMP/cap/config.json" &&
	expect_err "from '\''file://$TMP/cap/blob'\'': larger than the cap of 1024 bytes" &&
	test -z "$(ls -A "$TMP/cap/cache/downloads/partial")" &&
	test ! -e "$TMP/cap/cache/downloads/sha256/$CAPSUM"
'

test_expect_success "variable download_max_size caps every download without a max_size" '
	export IMGFORGE_CACHE_DIR="$TMP/cap/cache"
	expect_exit 1 "$IMGF" build --var download_max_size=2K --output-dir "$TMP/cap/out" \
		"$TMP/cap/config-nomax.json" &&
	expect_err "larger than the cap of 2048 bytes" &&
	expect_exit 1 "$IMGF" validate --var download_max_size=lots "$TMP/cap/config-nomax.json" &&
	expect_err "--var: variable '\''download_max_size'\'': '\''lots'\'' is not a size like 4G" &&
	expect_exit 1 "$IMGF" validate --var download_timeout=soon "$TMP/cap/config-nomax.json" &&
	expect_err "variable '\''download_timeout'\'': '\''soon'\'' is not a number of seconds"
'

test_expect_success "variables extract_max_size and extract_max_entries must be a size and a count" '
	expect_exit 1 "$IMGF" validate --var extract_max_size=lots "$TMP/cap/config-nomax.json" &&
	expect_err "--var: variable '\''extract_max_size'\'': '\''lots'\'' is not a size like 16G" &&
	expect_exit 1 "$IMGF" validate --var extract_max_entries=0 "$TMP/cap/config-nomax.json" &&
	expect_err "variable '\''extract_max_entries'\'': '\''0'\'' is not a positive number" &&
	"$IMGF" validate --var extract_max_size=64G --var extract_max_entries=5000000 \
		"$TMP/cap/config-nomax.json"
'

# imgforge mirror of a URL with credentials, served over HTTP from $TMP/mir/srv.
mkdir -p "$TMP/mir/srv"
cp "$TMP/cap/blob" "$TMP/mir/srv/blob"
python3 -c 'import http.server, os, socketserver, sys
os.chdir(sys.argv[1])
s = socketserver.TCPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
print(s.server_address[1], flush=True)
s.serve_forever()' "$TMP/mir/srv" >"$TMP/mir/port" 2>/dev/null &
at_exit "kill $!"
for _ in $(seq 50); do [ -s "$TMP/mir/port" ] && break; sleep 0.1; done
MIRPORT=$(cat "$TMP/mir/port")
cat >"$TMP/mir/config.json" <<JSON
{"variables": {"build_name": "mir", "kubernetes_semver": "v1.37.2",
               "blob_url": "http://user:s3cret@127.0.0.1:$MIRPORT/blob"},
 "images": ["image.json"]}
JSON
cat >"$TMP/mir/image.json" <<JSON
{"name": "mir", "builder": {"type": "docker", "image": "imgforge-test/none:1"},
 "provisioners": [{"type": "runc", "url": "{{ blob_url }}", "checksum": "sha256:$CAPSUM"}]}
JSON

test_expect_success "mirror keeps no credentials: in no path, vars.json, index.json or log line" '
	export IMGFORGE_CACHE_DIR="$TMP/mir/cache"
	M=$TMP/mir/m &&
	"$IMGF" mirror "$TMP/mir/config.json" "$M" >"$TMP/mir/log" 2>&1 &&
	test -s "$M/files/127.0.0.1:$MIRPORT/blob" &&
	jq -e ".variables.blob_url == \"file://$M/files/127.0.0.1:$MIRPORT/blob\"" "$M/vars.json" &&
	jq -e ".\"http://127.0.0.1:$MIRPORT/blob\" == \"$CAPSUM\"" "$M/index.json" &&
	! grep -rq s3cret "$M" && ! find "$M" | grep -q s3cret && ! grep -q s3cret "$TMP/mir/log" &&
	"$IMGF" mirror "$TMP/mir/config.json" "$M" >"$TMP/mir/log2" 2>&1 &&
	grep -q "mirror: 0 fetched, 1 already there" "$TMP/mir/log2"
'

test_expect_success "max_size must be a size, on a step that downloads" '
	expect_exit 1 "$IMGF" validate --var max=lots "$TMP/cap/config.json" &&
	expect_err "provisioners[0] (runc): max_size: '\''lots'\'' is not a size like 512M" &&
	expect_exit 1 "$IMGF" validate "$TMP/cap/config-shell.json" &&
	expect_err "provisioners[0] (shell): max_size: a shell step downloads nothing to cap"
'

# A lock for the shipped kind-node whose step 0 knows only two of the packages (no engine:
# validate checks the lock against the config without building anything).
SHA=$(printf x | sha256sum | cut -d" " -f1)
cat >"$TMP/small.lock" <<JSON
{"imgforge_lock": 1, "images": {"kind-node": {"archives": [], "steps": [{"step": 0,
  "requested": ["bash", "jq"], "packages": [{"package": "jq", "version": "1.6", "architecture": "amd64",
  "sha256": "$SHA", "size": 1, "filename": "pool/main/j/jq/jq_1.6_amd64.deb",
  "url": "http://deb.example/debian/pool/main/j/jq/jq_1.6_amd64.deb", "archive": "x"}]}]}}}
JSON
test_expect_success "a lock that does not match the config fails validation, naming the package" '
	expect_exit 0 "$IMGF" validate --only kind-node --lock "$TMP/small.lock" \
		--var "kind_base_packages=bash jq" "$TOP/config/debian-12.json" &&
	expect_exit 1 "$IMGF" validate --only kind-node --lock "$TMP/small.lock" "$TOP/config/debian-12.json" &&
	expect_err "package '\''systemd'\'' is not in the lock '\''$TMP/small.lock'\'' (image '\''kind-node'\'')" &&
	expect_exit 1 "$IMGF" validate --only kind-base --lock "$TMP/small.lock" \
		--var "kind_base_packages=bash jq" "$TOP/config/debian-12.json" &&
	expect_err "lock '\''$TMP/small.lock'\'' has no entry for image '\''kind-base'\'' step 0" &&
	sed "s/\"size\": 1/\"size\": -1/" "$TMP/small.lock" >"$TMP/bad.lock" &&
	expect_exit 1 "$IMGF" validate --only kind-node --lock "$TMP/bad.lock" "$TOP/config/debian-12.json" &&
	expect_err "lock '\''$TMP/bad.lock'\'': images.kind-node.steps[0].packages[0].size: expected a number of bytes"
'

test_done
