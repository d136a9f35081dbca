#!/usr/bin/env bash
# Starts a single-node Garage on loopback for the upload tests and prints its settings as
# KEY=VALUE lines. Usage: garage.sh DIR S3_PORT [BUCKET]
# GARAGE_BIND (default 127.0.0.1) is the S3 API's address: the live tests give it the host
# side of their namespace's veth pair, so the worker inside the namespace reaches it.
# Three keys are made: a writer allowed only `bucket allow --write` (what veil gets), a
# read-write key for the test to fetch what landed, and a key with no permission at all.
# Garage refuses the writer Get/Head/List with 403.
# The server runs in the background with its pid in DIR/garage.pid; the caller kills it.
set -euo pipefail
dir="$1"; port="$2"; bucket="${3:-rec}"; bind="${GARAGE_BIND:-127.0.0.1}"
bin="$(bash "$(dirname "$0")/../../scripts/install-garage.sh")"
mkdir -p "$dir/meta" "$dir/data"
rpc=$((port + 1)); admin=$((port + 2))
cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "$bind:$port"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
g() { "$bin" -c "$dir/garage.toml" "$@"; }
start() {
  RUST_LOG=warn setsid "$bin" -c "$dir/garage.toml" server >"$dir/garage.log" 2>&1 &
  echo $! > "$dir/garage.pid"
  for _ in $(seq 1 100); do
    g status >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "garage did not start; log:" >&2; cat "$dir/garage.log" >&2; exit 1
}
start
if [ ! -e "$dir/configured" ]; then
  node="$(g status 2>/dev/null | awk '/^[0-9a-f]{16}/ {print $1; exit}')"
  g layout assign -z dc1 -c 100M "$node" >/dev/null
  g layout apply --version 1 >/dev/null
  writer_id="GK$(openssl rand -hex 12)"; writer_secret="$(openssl rand -hex 32)"
  reader_id="GK$(openssl rand -hex 12)"; reader_secret="$(openssl rand -hex 32)"
  none_id="GK$(openssl rand -hex 12)"; none_secret="$(openssl rand -hex 32)"
  g key import --yes -n veil-writer "$writer_id" "$writer_secret" >/dev/null
  g key import --yes -n test-reader "$reader_id" "$reader_secret" >/dev/null
  g key import --yes -n test-none "$none_id" "$none_secret" >/dev/null
  for _ in $(seq 1 50); do g bucket create "$bucket" >/dev/null 2>&1 && break; sleep 0.2; done
  g bucket allow --write "$bucket" --key veil-writer >/dev/null
  g bucket allow --read --write "$bucket" --key test-reader >/dev/null
  cat > "$dir/configured" <<ENV
GARAGE_ENDPOINT=http://$bind:$port
GARAGE_REGION=garage
GARAGE_BUCKET=$bucket
WRITER_KEY_ID=$writer_id
WRITER_SECRET=$writer_secret
READER_KEY_ID=$reader_id
READER_SECRET=$reader_secret
NONE_KEY_ID=$none_id
NONE_SECRET=$none_secret
ENV
fi
cat "$dir/configured"
echo "GARAGE_PID=$(cat "$dir/garage.pid")"
