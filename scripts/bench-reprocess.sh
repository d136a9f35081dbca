#!/usr/bin/env bash
# Benchmark: CPU seconds and wall time of `veil reprocess` on the demo session against an
# equivalent ffmpeg command (same inputs, x264 veryfast 2.5 Mb/s, AAC 128 kb/s, fragmented MP4,
# the same join/leave windows), measured in the same run. Prints ratios veil/ffmpeg.
#   scripts/bench-reprocess.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bash scripts/install-deps.sh
cargo build --release --quiet --bin veil
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
bash fixtures/gen-session.sh "$work/s" >/dev/null
t="$work/s/tracks"

run_veil() {
  rm -rf "$work/out"
  ./target/release/veil reprocess "$work/s" --dest "file://$work/out" --spill-dir "$work/spill" >/dev/null
}
# Same inputs and time windows as the session: tiles placed with overlay enable=between(...).
run_ffmpeg() {
  ffmpeg -v error -y \
    -f lavfi -i "color=c=0x101014:s=1280x720:r=30:d=12" \
    -i "$t/ana-camera.webm" -itsoffset 5 -i "$t/ana-screen.webm" -itsoffset 2 -i "$t/bob-camera.mp4" \
    -itsoffset 1 -i "$t/chloe-mic.ogg" -itsoffset 3 -i "$t/dan-camera.webm" -itsoffset 3 -i "$t/dan-mic.mka" \
    -filter_complex "\
[1:v]scale=478:268,setpts=PTS-STARTPTS[a];[2:v]scale=960:540,setpts=PTS-STARTPTS+5/TB[s];\
[3:v]scale=478:268,setpts=PTS-STARTPTS+2/TB[b];[5:v]scale=478:268,setpts=PTS-STARTPTS+3/TB[d];\
[0:v][a]overlay=0:90:eof_action=pass[v1];[v1][b]overlay=482:90:eof_action=pass:enable='between(t,2,9)'[v2];\
[v2][d]overlay=482:362:eof_action=pass:enable='between(t,3,9)'[v3];[v3][s]overlay=0:0:eof_action=pass:enable='between(t,5,9)'[vout];\
[1:a]aresample=48000[a1];[3:a]adelay=2000:all=1,aresample=48000[a3];[4:a]adelay=1000:all=1,aresample=48000[a4];\
[6:a]adelay=3000:all=1,aresample=48000[a6];[a1][a3][a4][a6]amix=inputs=4:normalize=0,alimiter=limit=0.9[aout]" \
    -map "[vout]" -map "[aout]" -t 12 -r 30 \
    -c:v libx264 -preset veryfast -b:v 2500k -g 60 -c:a aac -b:a 128k \
    -movflags frag_keyframe+empty_moov+default_base_moof -f mp4 "$work/ffmpeg.mp4"
}
measure() { # fn -> prints "cpu_seconds wall_seconds" of the function's processes
  export -f "$1"; export work t
  bash -c "s=\$(date +%s.%N); $1; e=\$(date +%s.%N); \
    read -r -a st < /proc/\$\$/stat; \
    echo \"\$(( st[15] + st[16] )) \$s \$e\"" | {
    read -r ticks s e
    echo "$(echo "$ticks / $(getconf CLK_TCK)" | bc -l) $(echo "$e - $s" | bc -l)"
  }
}
run_veil; run_ffmpeg   # warm caches
printf '%-8s %10s %10s\n' tool cpu_s wall_s
vc=0; vw=0; fc=0; fw=0
for i in $(seq "$rounds"); do
  read -r c w < <(measure run_veil);   printf '%-8s %10.2f %10.2f\n' veil "$c" "$w"; vc=$(echo "$vc+$c"|bc -l); vw=$(echo "$vw+$w"|bc -l)
  read -r c w < <(measure run_ffmpeg); printf '%-8s %10.2f %10.2f\n' ffmpeg "$c" "$w"; fc=$(echo "$fc+$c"|bc -l); fw=$(echo "$fw+$w"|bc -l)
done
printf 'mean over %d rounds: veil cpu %.2f s wall %.2f s | ffmpeg cpu %.2f s wall %.2f s\n' "$rounds" \
  "$(echo "$vc/$rounds"|bc -l)" "$(echo "$vw/$rounds"|bc -l)" "$(echo "$fc/$rounds"|bc -l)" "$(echo "$fw/$rounds"|bc -l)"
printf 'ratio veil/ffmpeg: cpu %.2f wall %.2f  (session 12 s: veil runs at %.1fx real time)\n' \
  "$(echo "$vc/$fc"|bc -l)" "$(echo "$vw/$fw"|bc -l)" "$(echo "12*$rounds/$vw"|bc -l)"
