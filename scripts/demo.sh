#!/usr/bin/env bash
# The README's first command: installs what is missing, builds veil, and records a live demo
# session: a private Janus gateway and three synthetic publishers inside a network namespace
# (nothing listens outside it), veil joining hidden, 20 seconds recorded into ./out/ (local
# folder destination: no external service). Needs root for the namespace.
#   scripts/demo.sh              the live demo
#   scripts/demo.sh --reprocess  re-composite a generated session folder instead (no root)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
mkdir -p out
if [ "${1:-}" = --reprocess ]; then
  cargo build --quiet --bin veil
  session=$(mktemp -d "${TMPDIR:-/tmp}/veil-demo-session.XXXXXX")
  trap 'rm -rf "$session"' EXIT
  bash fixtures/gen-session.sh "$session" >/dev/null
  echo "re-compositing the demo session ($session) into $(pwd)/out ..." >&2
  ./target/debug/veil reprocess "$session" --dest "file://$(pwd)/out" | tee out/result.json
  echo >&2; echo "done: the files are listed above (\"url\"); the result is in out/result.json" >&2
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "the live demo needs root (network namespace); or run: scripts/demo.sh --reprocess" >&2; exit 1; }
bash scripts/install-janus.sh
cargo build --quiet --bin veil --bin veil-publisher
work=$(mktemp -d "${TMPDIR:-/tmp}/veil-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash tests/support/janus-netns.sh stop "$work" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
while IFS='=' read -r k v; do declare "$k=$v"; done < <(bash tests/support/janus-netns.sh start "$work" 250)
ns() { ip netns exec "$JANUS_NETNS" "$@"; }
cat > "$work/job.json" <<JSON
{"id": "demo-live",
 "session": {"type": "janus", "url": "$JANUS_URL", "room": 1234},
 "layout": "auto",
 "destination": {"url": "file://$(pwd)/out"},
 "limits": {"max_duration_s": 20, "empty_timeout_s": 10}}
JSON
pub() { ns ./target/debug/veil-publisher --janus "$JANUS_URL" "$@" >/dev/null 2>&1 & pids+=($!); }
echo "recording 20 s of a live room (Janus in namespace $JANUS_NETNS) into $(pwd)/out ..." >&2
ns ./target/debug/veil record "$work/job.json" --spill-dir "$work/spill" --outbox-dir "$work/outbox" > out/result.json &
worker=$!
sleep 1
pub --display "Dr. Ana Example" --pattern red --freq 440 --duration 25 --chat "3:Good morning, can you hear me?"
sleep 3
pub --display "Bob (patient)" --pattern ball --freq 660 --duration 14 --chat "3:Yes, loud and clear" --mute-video 6:9
sleep 4
pub --display "Dr. Ana Example" --pattern smpte --freq 0 --duration 6 --screen
wait "$worker"
cat out/result.json
echo >&2; echo "done: the MP4 and the chat CSV are listed above (\"url\"); the result is in out/result.json" >&2
