#!/usr/bin/env bash
# Installs what the end-to-end tests use beyond the build: the OpenAI Python client, a
# WebSocket client library, Selenium, jsonschema (validating structured output), and
# Debian's headless Chromium with its driver.
set -euo pipefail

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"

apt_missing=()
for p in chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || apt_missing+=("$p")
done
if [[ ${#apt_missing[@]} -gt 0 ]]; then
  echo "install_test_deps: installing ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${apt_missing[@]}"
fi

py_missing=()
python3 -c "import openai" 2>/dev/null || py_missing+=("openai>=1.40")
python3 -c "import websockets" 2>/dev/null || py_missing+=("websockets>=12")
python3 -c "import selenium" 2>/dev/null || py_missing+=("selenium>=4.10")
python3 -c "import matplotlib" 2>/dev/null || py_missing+=("matplotlib>=3.6")  # bench/plot_sweep.py
python3 -c "import jsonschema" 2>/dev/null || py_missing+=("jsonschema>=4.0")  # e2e structured output
if [[ ${#py_missing[@]} -gt 0 ]]; then
  echo "install_test_deps: pip installing ${py_missing[*]}"
  pip_flags=()
  python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages && pip_flags+=(--break-system-packages)
  python3 -m pip install -q "${pip_flags[@]}" "${py_missing[@]}"
fi
