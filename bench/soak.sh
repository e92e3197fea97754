#!/usr/bin/env bash
# The soak test: starts `troupe serve` on a free loopback port with a small KV pool and
# max_num_seqs, drives it for --minutes with mixed load at about twice its capacity (HTTP
# and WebSocket, streamed and whole, cancelled, killed and slow clients), samples its RSS
# and /metrics into a CSV, and fails (exit 1) when a request never ended, a KV block was not
# returned, RSS grew past the KV pool, or the server erred or died. docs/reliability.md,
# "Soak", says what each check means.
#
# Usage: bench/soak.sh [--minutes N] [--troupe BIN] [--model FILE] [--out DIR] [...]
#        bench/soak.sh --help   (every option)
# Defaults: 10 minutes, build/troupe (BUILD_DIR=... to change the build folder), the default
# model, results in bench/out/soak-<UTC time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/soak.py --build-dir "${BUILD_DIR:-build}" "$@"
