#!/usr/bin/env bash
# The README's first command: installs what is missing, builds veil, generates the demo
# session and re-composites it into ./out/ (local folder destination, no external service).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --quiet --bin veil
session=$(mktemp -d "${TMPDIR:-/tmp}/veil-demo-session.XXXXXX")
trap 'rm -rf "$session"' EXIT
bash fixtures/gen-session.sh "$session" >/dev/null
mkdir -p out
echo "re-compositing the demo session ($session) into $(pwd)/out ..." >&2
./target/debug/veil reprocess "$session" --dest "file://$(pwd)/out" | tee out/result.json
echo >&2
echo "done: the files are listed above (\"url\"); the result is in out/result.json" >&2
