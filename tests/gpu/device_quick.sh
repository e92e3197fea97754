#!/usr/bin/env bash
# A short kernel round on a GPU machine, with no model file to carry: the CPU-vs-CUDA checks
# on random models of several weight types, then decode throughput of synthetic 1.5B-shaped
# models. For iterating on kernels between full device_bench.sh runs. Not run by ctest.
#   tests/gpu/device_quick.sh BIN_DIR OUT_DIR
set -u
bin="$1" out="$2"
source "$(dirname "$0")/device_env.sh"
for t in q4_k q6_k q4_0 q8_0; do
  "$bin/make_tiny_model" "/tmp/rand-$t.gguf" --type "$t" --embedding-type q8_0 --layers 3 --dim 512 --heads 8 \
    --kv-heads 2 --ffn 1280 || continue
  echo "== CPU vs CUDA checks: random $t weights"
  timeout 40 "$bin/bench_gpu_throughput" --check --model "/tmp/rand-$t.gguf" --tokens 256 | grep -E "^FAIL|failures"
done
for t in q4_k q4_0; do
  f="/tmp/syn15-$t.gguf"
  "$bin/make_tiny_model" "$f" --type "$t" --embedding-type q8_0 --layers 28 --dim 1536 --heads 12 --kv-heads 2 \
    --ffn 8960 --repeat-layers 1 || continue
  echo "== throughput: synthetic 1.5B shape, $t weights, $(stat -c %s "$f") bytes"
  TROUPE_CUDA_PROFILE=1 timeout 90 "$bin/bench_gpu_throughput" --model "$f" --steps 32 --no-cpu 2>&1 |
    grep -E "streams|^ +[0-9]+ |decode steps of 1 rows"
done
