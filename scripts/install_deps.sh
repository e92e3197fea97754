#!/usr/bin/env bash
# Installs the Debian packages troupe builds and tests with, only those that are missing.
set -euo pipefail

packages=(build-essential cmake python3 python3-pip libcaf-dev libboost1.81-dev
          libsimdjson-dev doctest-dev)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # A python3/pip from elsewhere (pyenv) is as good as Debian's.
    if [[ $p == python3 ]] && command -v python3 >/dev/null; then continue; fi
    if [[ $p == python3-pip ]] && python3 -m pip --version >/dev/null 2>&1; then continue; fi
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q "${missing[@]}"
