#!/usr/bin/env bash
# Benchmark for the upload path, against a reference measured in the same run:
#  1. throughput: 200 MiB through veil's streaming uploader (encrypted spill → S3 multipart,
#     8 MiB parts with SHA-256 each, confirmation, shredding) vs `aws s3 cp` of the same bytes
#     with 8 MiB parts, both to the same Garage with the same write-only key; prints the ratio;
#  2. a 10-minute recording re-composited into Garage: time from the muxer's end of stream to
#     the confirmed object, and how many parts were uploaded before the end.
#   scripts/bench-upload.sh [ROUNDS] [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
minutes=${2:-10}
bash scripts/install-deps.sh
command -v aws >/dev/null || python3 -m pip install --quiet awscli
work=$(mktemp -d)
port=$((39000 + RANDOM % 500))
while IFS='=' read -r k v; do export "$k=$v"; done < <(bash tests/support/garage.sh "$work/garage" "$port" bench)
trap 'kill "$GARAGE_PID" 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID="$WRITER_KEY_ID" AWS_SECRET_ACCESS_KEY="$WRITER_SECRET" AWS_REGION="$GARAGE_REGION"
export AWS_ENDPOINT_URL="$GARAGE_ENDPOINT" AWS_S3_FORCE_PATH_STYLE=true AWS_CONFIG_FILE="$work/aws.cfg"
cat > "$AWS_CONFIG_FILE" <<CFG
[default]
s3 =
  multipart_chunksize = 8MB
  multipart_threshold = 8MB
  addressing_style = path
CFG
head -c 200M /dev/urandom > "$work/data.bin"
echo "== 1. upload throughput, 200 MiB to Garage (loopback), $rounds rounds"
BENCH_BUCKET=bench BENCH_FILE="$work/data.bin" BENCH_ROUNDS="$rounds" cargo bench --quiet --profile dev --bench upload
rm -f "$work/data.bin"

echo "== 2. a ${minutes}-minute recording re-composited into Garage"
s="$work/session"; mkdir -p "$s/tracks"
frames=$((minutes * 60 * 30)); buffers=$((minutes * 60 * 50))
gst-launch-1.0 -q -e videotestsrc pattern=ball num-buffers=$frames ! video/x-raw,width=320,height=180,framerate=30/1 \
  ! timeoverlay ! videoconvert ! vp8enc deadline=1 cpu-used=8 ! queue ! webmmux name=m ! filesink location="$s/tracks/cam.webm" \
  audiotestsrc wave=sine freq=440 volume=0.3 samplesperbuffer=960 num-buffers=$buffers ! audio/x-raw,rate=48000,channels=1 \
  ! audioconvert ! opusenc ! queue ! m. >/dev/null
cat > "$s/session.json" <<JSON
{"session_id": "bench-long", "room_id": "bench", "room_name": "bench", "started_at": "2026-12-01T10:00:00Z",
 "duration_ms": $((minutes * 60000)),
 "peers": [{"peer_id": "p1", "name": "Bench", "user_id": "u1", "role": "host", "joined_ms": 0, "left_ms": $((minutes * 60000)),
            "tracks": [{"file": "tracks/cam.webm", "start_ms": 0, "source": "camera"}]}]}
JSON
cargo build --quiet --bin veil
start=$(date +%s.%N)
./target/debug/veil reprocess "$s" --dest "s3://bench/long/" --spill-dir "$work/spill" --no-chat > "$work/result.json"
end=$(date +%s.%N)
python3 - "$work/result.json" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
o = next(x for x in r["objects"] if x["kind"] == "composite")
st = o["streaming"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"recording {r['duration_ms']/1000:.0f} s, {o['size']/2**20:.1f} MiB in {st['parts']} parts; "
      f"re-composited in {wall:.0f} s ({r['duration_ms']/1000/wall:.1f}x real time)")
print(f"parts uploaded before the end of stream: {st['parts_uploaded_before_end']} of {st['parts']}; "
      f"end of stream to confirmed object: {st['end_to_confirmed_ms']} ms; confirmed by: {o['confirmed_by']}")
PY
