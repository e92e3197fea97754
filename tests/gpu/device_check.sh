#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, from binaries built elsewhere (a machine with
# the CUDA toolkit but no GPU) and carried over with the shared libraries they need that the
# GPU machine may lack (CAF). Not run by ctest.
#
#   tests/gpu/device_check.sh BIN_DIR MODEL.gguf OUT_DIR
#
# BIN_DIR holds troupe, bench_gpu_throughput, test_gpu, make_tiny_model and lib/ (extra
# shared libraries). MODEL is a llama-architecture GGUF with a real tokenizer (a truncated
# copy of the default model travels well: tests/gpu/truncate_model.py). Steps, each under a
# time limit, logged to OUT_DIR/log: the device, missing libraries, the CPU-side GPU tests,
# the CPU-vs-CUDA checks on MODEL and on random models of every weight type, decode
# throughput, `troupe generate` and `troupe serve` on the GPU, and compute-sanitizer's
# memcheck over the checks on a small model.
set -u
bin="$1" model="$2" out="$3"
source "$(dirname "$0")/device_env.sh"
step "device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
step "libraries"; for b in troupe bench_gpu_throughput test_gpu; do ldd "$bin/$b" | grep -E "not found|cublas|nccl|caf" ; done
step "test_gpu (CPU-side)"; timeout 60 "$bin/test_gpu" 2>&1 | tail -3
step "checks: $model"
timeout 90 "$bin/bench_gpu_throughput" --check --model "$model" --tokens 512; echo "exit $?"
for t in q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q6_k f16 bf16; do
  "$bin/make_tiny_model" "/tmp/rand-$t.gguf" --type "$t" --embedding-type q8_0 --layers 3 --dim 512 --heads 8 \
    --kv-heads 2 --ffn 1280 || continue
  step "checks: random $t weights (dim 512, 3 layers)"
  timeout 40 "$bin/bench_gpu_throughput" --check --model "/tmp/rand-$t.gguf" --tokens 256 --min-agreement 0.97
  echo "exit $?"
done
step "throughput: $model"; timeout 90 "$bin/bench_gpu_throughput" --model "$model" --steps 64; echo "exit $?"
step "troupe generate --device cuda"
timeout 60 "$bin/troupe" generate --model "$model" --device cuda --prompt "The capital of France is" -n 16 \
  --temperature 0; echo "exit $?"
step "troupe serve --device cuda"
port=18080
"$bin/troupe" serve --model "$model" --device cuda --port $port --cuda-graphs > "$out/serve.log" 2>&1 &
pid=$!
for i in $(seq 1 60); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
curl -s -m 30 "127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
  -d '{"prompt":"Once upon a time","max_tokens":24,"temperature":0}'; echo
curl -s -m 30 -N "127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true,"temperature":0.7,"seed":3}' | head -c 1500; echo
cp=()
for i in $(seq 1 16); do
  curl -s -m 60 "127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
    -d "{\"prompt\":\"Number $i is\",\"max_tokens\":32,\"temperature\":0.8,\"seed\":$i}" -o "/tmp/c$i.json" &
  cp+=($!)
done
wait "${cp[@]}"
grep -c '"finish_reason"' /tmp/c*.json | tr '\n' ' '; echo
curl -s "127.0.0.1:$port/metrics" | grep -E "^troupe_(generation_tokens_total|requests_total|step_seconds_count)" | head
kill $pid; wait $pid; echo "serve exit $?"; tail -5 "$out/serve.log"
if command -v compute-sanitizer >/dev/null; then
  step "compute-sanitizer memcheck: checks on random q4_k weights"
  timeout 150 compute-sanitizer --tool memcheck --print-limit 20 "$bin/bench_gpu_throughput" --check \
    --model /tmp/rand-q4_k.gguf --tokens 128 --min-agreement 0.97 --kv-blocks 1200 2>&1 | tail -40
fi
step "done"
