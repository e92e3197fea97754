#!/usr/bin/env bash
# The front-door benchmark: starts `troupe serve` on the default model, holds --connections
# WebSockets open with --streaming of them generating, and prints errors and the front
# door's added latency per token. Usage: bench/front_door.sh [BUILD_DIR] [bench args...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
model=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${THREADS:-$(nproc)}
ulimit -n "$(ulimit -Hn)"
log=$(mktemp)
"$build/troupe" serve --model "$model" --port 0 --threads "$threads" --max-num-seqs 64 >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 300); do
  port=$(grep -o 'serving .* on http://[0-9.]*:[0-9]*' "$log" | sed 's/.*://') && [[ -n $port ]] && break
  sleep 0.1
done
[[ -n ${port:-} ]] || { cat "$log"; exit 1; }
"$build/bench/bench_front_door" --port "$port" "$@"
