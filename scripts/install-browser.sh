#!/usr/bin/env bash
# Installs what the real-browser live test needs: Chromium (headless, fake capture devices) and
# Janus's own JavaScript client with its WebRTC adapter, all from Debian.
set -euo pipefail
pkgs=(chromium libjs-janus-gateway libjs-webrtc-adapter)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
