#!/usr/bin/env bash
# The CUDA backend on a GPU machine with the full default model: the golden checks against
# llama.cpp (test_gpu_device), the CPU-vs-CUDA checks, decode throughput of the backend
# alone on the default model and on synthetic 1.5B-shaped models of three weight types, and
# the actor runtime serving over the GPU step (bench_serving --device cuda). Not run by ctest.
#
#   tests/gpu/device_bench.sh BIN_DIR MODEL.gguf OUT_DIR
#
# BIN_DIR as for device_check.sh, plus test_gpu_device and bench_serving.
set -u
bin="$1" model="$2" out="$3"
source "$(dirname "$0")/device_env.sh"
step "device"; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
sha256sum "$model"
[ -x "$bin/test_gpu" ] && { step "test_gpu (CPU-side)"; timeout 60 "$bin/test_gpu" 2>&1 | tail -2; }
step "golden checks against llama.cpp (CUDA backend)"
TROUPE_GPU_TEST_MODEL="$model" timeout 120 "$bin/test_gpu_device" -s 2>&1 | grep -E "MESSAGE|ERROR|FAILED|SUCCESS!|test cases"
step "CPU vs CUDA checks: $model"
timeout 90 "$bin/bench_gpu_throughput" --check --model "$model" --tokens 512 | grep -v '^{'; echo "exit ${PIPESTATUS[0]}"
for t in q4_k q6_k q4_0 q5_0 f16; do
  "$bin/make_tiny_model" "/tmp/rand-$t.gguf" --type "$t" --embedding-type q8_0 --layers 3 --dim 512 --heads 8 \
    --kv-heads 2 --ffn 1280 || continue
  step "CPU vs CUDA checks: random $t weights (dim 512, 3 layers)"
  timeout 40 "$bin/bench_gpu_throughput" --check --model "/tmp/rand-$t.gguf" --tokens 256 | grep -v '^{'
  echo "exit ${PIPESTATUS[0]}"
done
step "throughput: $model (TROUPE_CUDA_PROFILE: device time per kernel family on stderr)"
TROUPE_CUDA_PROFILE=1 timeout 90 "$bin/bench_gpu_throughput" --model "$model" --steps 64 2>&1 | grep -v "^{"
for t in q4_k q4_0 q8_0; do
  f="/tmp/syn15-$t.gguf"
  "$bin/make_tiny_model" "$f" --type "$t" --embedding-type q8_0 --layers 28 --dim 1536 --heads 12 --kv-heads 2 \
    --ffn 8960 --repeat-layers 1 || continue
  step "throughput: synthetic 1.5B shape (28 x 1536, ffn 8960, GQA 12/2), $t weights, $(stat -c %s "$f") bytes"
  if [ "$t" = q4_k ]; then
    TROUPE_CUDA_PROFILE=1 timeout 90 "$bin/bench_gpu_throughput" --model "$f" --steps 32 --no-cpu 2>&1 | grep -v "^{"
    if [ "${VARIANTS:-0}" = 1 ]; then
      echo "-- TROUPE_CUDA_GEMV_MAX_TOKENS=32 (GEMV passes up to 32 tokens)"
      TROUPE_CUDA_GEMV_MAX_TOKENS=32 timeout 90 "$bin/bench_gpu_throughput" --model "$f" --steps 32 --no-cpu | grep -v "^{"
      echo "-- --fp16-weight-share 0 (dequantize each matrix per step instead of keeping fp16 copies)"
      timeout 90 "$bin/bench_gpu_throughput" --model "$f" --steps 32 --no-cpu --fp16-weight-share 0 | grep -v "^{"
    fi
    if [ "${NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
      echo "-- ncu: one layer's seven GEMVs at 1 token"
      timeout 120 ncu --clock-control none --kernel-name regex:gemv --launch-skip 28 --launch-count 7 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
        "$bin/bench_gpu_throughput" --model "$f" --steps 4 --no-cpu 2>&1 | grep -vE "^\s*$|^==PROF==|^ +-+" | head -250
    fi
  else
    timeout 90 "$bin/bench_gpu_throughput" --model "$f" --steps 32 --no-cpu | grep -v "^{"
  fi
  rm -f "$f"
done
for mode in "on" "on --cuda-graphs"; do
  step "serving through the actor runtime: --device cuda --async-scheduling $mode"
  timeout 120 "$bin/bench_serving" --model "$model" --device cuda --streams 1,32,256 --prompt-tokens 128 \
    --gen-tokens 128 --async-scheduling $mode | grep -v "^RESULT"; echo "exit ${PIPESTATUS[0]}"
done
step "serving, 32 streams, CUDA graphs, with TROUPE_CUDA_PROFILE (steps of one shape summarized per run)"
TROUPE_CUDA_PROFILE=1 timeout 120 "$bin/bench_serving" --model "$model" --device cuda --streams 32 --prompt-tokens 128 \
  --gen-tokens 128 --async-scheduling on --cuda-graphs 2>&1 | grep -v "^RESULT" | head -60
step "done"
