#!/usr/bin/env bash
# Installs the Debian packages the toolkit links against, only when missing.
set -euo pipefail
pkgs=(libopenblas-dev libpng-dev libjson-c-dev libjpeg62-turbo-dev libsimdjson-dev libdnnl-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
