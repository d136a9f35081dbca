#!/usr/bin/env bash
# Installs the Janus gateway (Debian `janus`) for the live-recording tests, without letting its
# own service start: that service would bind 0.0.0.0 with /etc/janus. Tests run a private
# Janus inside a network namespace instead (tests/support/janus-netns.sh).
set -euo pipefail
if command -v janus >/dev/null && command -v ip >/dev/null; then exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
guard=/usr/sbin/policy-rc.d
placed=0
if [ ! -e "$guard" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$guard" >/dev/null; $SUDO chmod +x "$guard"; placed=1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends janus iproute2 >/dev/null || { [ $placed = 1 ] && $SUDO rm -f "$guard"; exit 1; }
[ $placed = 1 ] && $SUDO rm -f "$guard"
# Belt and braces on systemd machines.
if command -v systemctl >/dev/null && systemctl is-enabled janus >/dev/null 2>&1; then
  $SUDO systemctl disable --now janus >/dev/null 2>&1 || true
fi
