#!/usr/bin/env bash
# Real Kubernetes end to end with the release layout (per-binary URLs and image tars): see
# tests/lib/kind-e2e.sh for what is built and checked.
. "$(dirname "$0")/../lib/harness.sh"
E2E_WHAT="kind cluster from an imgforge node image"
E2E_BUILD_WHAT=" from the from-source mirror"
E2E_VARS=()
. "$TOP/tests/lib/kind-e2e.sh"
test_done
