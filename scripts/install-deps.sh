#!/usr/bin/env bash
# Installs what veil needs to build and run on Debian 12: GStreamer 1.22 and its -dev
# packages, ffmpeg/ffprobe (tests, fixtures and the benchmark), pkg-config.
# Idempotent: packages already present are skipped.
set -euo pipefail
pkgs=(
  pkg-config ca-certificates
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-nice gstreamer1.0-x fonts-dejavu-core fonts-noto-cjk fonts-noto-color-emoji
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  ffmpeg strace bc openssl curl python3
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
