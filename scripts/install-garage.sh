#!/usr/bin/env bash
# Builds Garage (the S3 server the upload tests run against) from crates.io once, and keeps
# the binary in a cache folder keyed by version: a cold build takes about ten minutes on two
# cores, a warm one nothing. Prints the binary's path.
set -euo pipefail
version="${GARAGE_VERSION:-2.5.0}"
root="${VEIL_TOOL_CACHE:-$HOME/.cache/veil}/garage-$version"
bin="$root/bin/garage"
if [ ! -x "$bin" ]; then
  echo "building garage $version into $root (one-off, ~10 min)" >&2
  # Only what a single-node test server needs: SQLite metadata, no metrics, no K2V.
  CARGO_TARGET_DIR="$root/target" cargo install garage --version "$version" --locked \
    --no-default-features --features bundled-libs,sqlite --root "$root" >&2
  rm -rf "$root/target"
fi
echo "$bin"
