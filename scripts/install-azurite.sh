#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator the upload tests run against) from npm into a
# cache folder keyed by version, and the Python SDK the tests use to make SAS tokens and read
# back blobs. Prints the path of the `azurite-blob` launcher.
set -euo pipefail
version="${AZURITE_VERSION:-3.37.0}"
root="${VEIL_TOOL_CACHE:-$HOME/.cache/veil}/azurite-$version"
if [ ! -x "$root/node_modules/.bin/azurite-blob" ]; then
  echo "installing azurite $version into $root" >&2
  mkdir -p "$root"
  npm install --silent --no-audit --no-fund --prefix "$root" "azurite@$version" >&2
fi
python3 -c 'import azure.storage.blob' 2>/dev/null || python3 -m pip install --quiet 'azure-storage-blob>=12,<13' >&2
echo "$root/node_modules/.bin/azurite-blob"
