#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (as root; safe to re-run) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --workspace --locked
