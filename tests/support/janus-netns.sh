#!/usr/bin/env bash
# Runs a private Janus inside a fresh network namespace for the live-recording tests.
# Usage: janus-netns.sh start DIR N   |   janus-netns.sh stop DIR
#   N (2..250) picks the names and the subnet: namespace veil-jN, veth vjhN (host side,
#   10.201.N.1) and vjnN (namespace side, 10.201.N.2). Janus binds HTTP on 10.201.N.2:8088,
#   gathers ICE candidates only on vjnN, and loads only the VideoRoom plugin and the HTTP
#   transport (from symlinks in DIR: /etc/janus is never used). Room 1234 exists with
#   notify_joining off. Prints KEY=VALUE lines. Needs root (ip netns).
set -euo pipefail
cmd="$1"; dir="$2"
if [ "$cmd" = stop ]; then
  [ -f "$dir/janus.pid" ] && kill "$(cat "$dir/janus.pid")" 2>/dev/null || true
  ns="$(cat "$dir/netns" 2>/dev/null || true)"
  if [ -n "$ns" ]; then
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$(cat "$dir/veth")" 2>/dev/null || true
  fi
  exit 0
fi
# Namespaces left by a killed test run (no process inside) are removed first.
for old in $(ip netns list 2>/dev/null | awk '/^veil-j[0-9]+/ {print $1}'); do
  if [ -z "$(ip netns pids "$old" 2>/dev/null)" ]; then
    ip netns del "$old" 2>/dev/null || true
    ip link del "vjh${old#veil-j}" 2>/dev/null || true
  fi
done
n="$3"; ns="veil-j$n"; vh="vjh$n"; vn="vjn$n"; host_ip="10.201.$n.1"; ns_ip="10.201.$n.2"
command -v janus >/dev/null || { echo "janus is not installed (apt-get install janus)" >&2; exit 1; }
mkdir -p "$dir/conf" "$dir/plugins" "$dir/transports"
lib=/usr/lib/x86_64-linux-gnu/janus
ln -sf "$lib/plugins/libjanus_videoroom.so" "$dir/plugins/"
ln -sf "$lib/transports/libjanus_http.so" "$dir/transports/"
echo "$ns" > "$dir/netns"; echo "$vh" > "$dir/veth"
ip netns del "$ns" 2>/dev/null || true
ip link del "$vh" 2>/dev/null || true
ip netns add "$ns"
ip link add "$vh" type veth peer name "$vn"
ip link set "$vn" netns "$ns"
ip addr add "$host_ip/24" dev "$vh"; ip link set "$vh" up
ip netns exec "$ns" ip addr add "$ns_ip/24" dev "$vn"
ip netns exec "$ns" ip link set "$vn" up
ip netns exec "$ns" ip link set lo up
cat > "$dir/conf/janus.jcfg" <<JCFG
general: {
	configs_folder = "$dir/conf"
	plugins_folder = "$dir/plugins"
	transports_folder = "$dir/transports"
	events_folder = "$dir/none"
	loggers_folder = "$dir/none"
	debug_level = 4
	session_timeout = ${JANUS_SESSION_TIMEOUT:-20}
	admin_secret = "$(openssl rand -hex 16)"
}
media: {
	rtp_port_range = "20000-40000"
}
nat: {
	nice_debug = false
	ice_enforce_list = "$vn"
}
JCFG
cat > "$dir/conf/janus.transport.http.jcfg" <<JCFG
general: {
	json = "indented"
	base_path = "/janus"
	http = true
	port = 8088
	interface = "$vn"
	https = false
}
admin: {
	admin_http = false
}
JCFG
cat > "$dir/conf/janus.plugin.videoroom.jcfg" <<JCFG
general: {
}
room-1234: {
	description = "veil test room"
	publishers = 16
	bitrate = 1024000
	fir_freq = 2
	audiocodec = "opus"
	videocodec = "vp8"
	notify_joining = false
	audiolevel_ext = true
	audiolevel_event = false
}
JCFG
mkdir -p "$dir/none"
ip netns exec "$ns" janus --configs-folder="$dir/conf" --interface="$ns_ip" >"$dir/janus.log" 2>&1 &
echo $! > "$dir/janus.pid"
for _ in $(seq 1 100); do
  if ip netns exec "$ns" curl -fsS "http://$ns_ip:8088/janus/info" >/dev/null 2>&1; then
    echo "JANUS_NETNS=$ns"; echo "JANUS_URL=http://$ns_ip:8088/janus"; echo "JANUS_IP=$ns_ip"; echo "JANUS_PID=$(cat "$dir/janus.pid")"
    exit 0
  fi
  sleep 0.1
done
echo "janus did not start; log:" >&2; tail -30 "$dir/janus.log" >&2; exit 1
