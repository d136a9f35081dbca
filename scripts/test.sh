#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): installs what is missing, builds,
# and runs every test. Tests start whatever they need themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The storage servers the upload tests start: Garage (built once, cached by version), moto,
# Azurite (npm, with the Python SDK the tests use for SAS tokens) and gcp-storage-emulator.
bash scripts/install-garage.sh >/dev/null
python3 -c 'import moto.server, boto3' 2>/dev/null || python3 -m pip install --quiet 'moto[server]>=5,<6'
bash scripts/install-azurite.sh >/dev/null
command -v gcp-storage-emulator >/dev/null || python3 -m pip install --quiet 'gcp-storage-emulator>=2026'
# The Janus gateway for the live-source tests (never its own service; see the script).
bash scripts/install-janus.sh
# A real browser publisher for one live test: headless Chromium with janus.js (Debian).
bash scripts/install-browser.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
  # nextest does not run doctests; there are none to skip in a binary-first crate, but run
  # them anyway so a future doc example cannot rot silently.
  cargo test --doc --quiet
else
  cargo test --no-fail-fast "$@"
fi
