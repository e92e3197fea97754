#!/usr/bin/env bash
# For a machine with a CUDA GPU (not run by ctest): builds troupe with the CUDA backend,
# runs the CPU-side gpu tests, checks the CUDA backend's logits against the CPU backend on
# the default model (top-1 agreement >= 99%), runs the decode throughput bench at
# 1/16/64/256 streams and prints both tables. Usage: tests/gpu/run.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build-gpu}"
model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -f "$model" ] || scripts/fetch_model.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTROUPE_CUDA=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target test_gpu bench_gpu_throughput troupe
"$build/tests/test_gpu"
echo "== logits: CUDA backend vs CPU backend"
"$build/bench/bench_gpu_throughput" --model "$model" --check --tokens 512 --min-agreement 0.99
echo "== decode throughput"
"$build/bench/bench_gpu_throughput" --model "$model" --steps 64
echo "== troupe generate --device cuda"
"$build/troupe" generate --model "$model" --device cuda --prompt "The capital of France is" -n 16 --temperature 0
