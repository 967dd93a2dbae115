#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (as root; safe to re-run) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Helm's own Go SDK (v4) for Python, used by the chart tests (tests/chart_*.rs via scripts/helm-render.py).
if ! .venv/bin/python -c 'import helm_python' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check helm-python-sdk
fi

cargo test --workspace --locked
