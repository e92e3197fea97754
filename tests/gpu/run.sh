#!/usr/bin/env bash
# For a machine with a CUDA GPU and the toolkit (not run by ctest): builds troupe with the
# CUDA backend, runs the CPU-side gpu tests, the CUDA backend against llama.cpp's goldens
# (test_gpu_device), every CUDA path against the CPU backend (bench_gpu_throughput --check),
# the decode throughput table and `troupe generate --device cuda`.
# Usage: tests/gpu/run.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build-gpu}"
model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -f "$model" ] || scripts/fetch_model.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTROUPE_CUDA=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target test_gpu test_gpu_device bench_gpu_throughput troupe
"$build/tests/test_gpu"
echo "== the CUDA backend against llama.cpp's goldens"
TROUPE_GPU_TEST_MODEL="$model" "$build/tests/test_gpu_device"
echo "== every CUDA path against the CPU backend"
"$build/bench/bench_gpu_throughput" --model "$model" --check --tokens 512
echo "== decode throughput"
"$build/bench/bench_gpu_throughput" --model "$model" --steps 64
echo "== troupe generate --device cuda"
"$build/troupe" generate --model "$model" --device cuda --prompt "The capital of France is" -n 16 --temperature 0
