#!/usr/bin/env bash
# troupe against llama.cpp's llama-server, one after the other in the same run, on the same
# GGUF file with the same thread count, both driven over their OpenAI HTTP API (/v1) by
# troupe-load with the same workloads:
#   1. closed loop, 0 think time, 128-token prompts / 128 output tokens (greedy, ignore_eos),
#      at each user count: throughput, TTFT and TPOT p50/p99;
#   2. open loop, Poisson arrivals at rising rates (doubling, then bisecting): the highest
#      rate whose requests all succeed with p99 TTFT under 2 s.
# Prints the table of troupe / llama.cpp ratios and one line "RESULT {json}".
#
# Usage: bench/compare.sh [options]
#   --threads T     compute threads for both servers (default nproc)
#   --build DIR     troupe's build folder, holding troupe and troupe-load (default build)
#   --users LIST    closed-loop user counts (default 1,4,16,32,64); the highest is
#                   troupe's --max-num-seqs and llama-server's -np
#   --model PATH    GGUF file (default models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --duration S    seconds each point sends requests (default: the workloads' 30 closed, 20 open)
#   --bisect-steps N  rate-search bisection steps (default 3)
#   --quick         a smoke run: users 1,4, 5 s points, one bisection step
#   --out DIR       where results go (default bench/out/compare-<timestamp>)
# Environment: LLAMA_SERVER (path of llama-server; built by bench/build_llama_cpp.sh if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

threads=$(nproc)
build=build
users=1,4,16,32,64
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
duration_closed=""
duration_open=""
bisect_steps=3
out=""
quick=0
while (($#)); do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --duration) duration_closed=$2; duration_open=$2; shift 2 ;;
    --bisect-steps) bisect_steps=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  users=1,4; duration_closed=${duration_closed:-5}; duration_open=${duration_open:-5}; bisect_steps=1
fi

say() { echo "compare: $*" >&2; }

troupe=$build/troupe
load=$build/troupe-load
llama_server=${LLAMA_SERVER:-$root/third_party/llama.cpp/build/bin/llama-server}
for b in "$troupe" "$load"; do
  [[ -x $b ]] || { say "missing $b: build it first (cmake --build $build --target troupe troupe-load)"; exit 1; }
done
if [[ ! -f $model ]]; then
  if [[ $model == models/SmolLM2-135M-Instruct.Q4_1.gguf ]]; then scripts/fetch_model.sh; else say "no model $model"; exit 1; fi
fi
if [[ ! -x $llama_server ]]; then
  say "llama-server not found at $llama_server: building llama.cpp (bench/build_llama_cpp.sh)"
  bench/build_llama_cpp.sh >&2
  [[ -x $llama_server ]] || { say "llama-server still missing at $llama_server"; exit 1; }
fi

out=${out:-bench/out/compare-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
max_users=$(tr ',' '\n' <<<"$users" | sort -n | tail -n 1)
# Workloads: the suite's own, with the duration replaced when asked.
closed=$out/closed.json
open=$out/open.json
python3 bench/compare_report.py derive bench/workloads/closed-128-128.json "$closed" \
  ${duration_closed:+duration_s=$duration_closed}
python3 bench/compare_report.py derive bench/workloads/poisson-128-128.json "$open" \
  ${duration_open:+duration_s=$duration_open}
read -r prompt_tokens output_tokens < <(python3 -c \
  'import json,sys; w=json.load(open(sys.argv[1])); print(w["prompt"]["tokens"], w["output"]["tokens"])' "$closed")
# llama-server splits -c evenly over its -np slots: each slot holds a prompt, its output and
# a margin for the BOS token and tokenizer differences.
llama_ctx=$((max_users * (prompt_tokens + output_tokens + 64)))

# shellcheck source=bench/lib.sh
source bench/lib.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_healthy() {  # url name log
  for _ in $(seq 1200); do
    kill -0 "$server_pid" 2>/dev/null || { say "$2 exited; its log:"; tail -n 30 "$3" >&2; exit 1; }
    if curl -sf -o /dev/null "$1/health"; then return 0; fi
    sleep 0.25
  done
  say "$2 did not become healthy"; exit 1
}

# Runs both benchmarks against the server at $1 (base URL), results named after $2.
measure() {
  local base=$1 name=$2
  # The 1-minute load average every 10 s while this server is measured: anything well above
  # the server's threads + 1 (the load driver) means other work shared the CPUs.
  (while :; do cut -d' ' -f1 /proc/loadavg; sleep 10; done) >"$out/$name-loadavg" &
  local sampler=$!
  # One troupe-load run per user count, each with its own seed: a sweep would send the same
  # prompts at every point, and both servers would answer the repeats from their prompt caches.
  local files=() u rc seed
  seed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("seed", 0))' "$closed")
  for u in ${users//,/ }; do
    say "$name: closed loop, $u users"
    python3 bench/compare_report.py derive "$closed" "$out/closed-u$u.json" "seed=$((seed + 1000 * u))"
    rc=0
    "$load" --url "$base/v1" --workload "$out/closed-u$u.json" --sweep "users=$u" \
      --out "$out/$name-closed-u$u.json" --quiet >"$out/$name-closed-u$u.txt" 2>&1 || rc=$?
    ((rc == 0 || rc == 3)) || { say "troupe-load failed ($rc):"; tail -n 20 "$out/$name-closed-u$u.txt" >&2; exit 1; }
    files+=("$out/$name-closed-u$u.json")
  done
  python3 bench/compare_report.py merge "$out/$name-closed.json" "${files[@]}"
  say "$name: rate search"
  python3 bench/compare_report.py search --load "$load" --url "$base/v1" --workload "$open" \
    --out "$out/$name-rate.json" --bisect-steps "$bisect_steps"
  peak_rss_kb "$server_pid" >"$out/$name-rss-kb"
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  say "$name: load average while measured: $(awk '{ s += $1; if ($1 > m) m = $1 } END { printf "mean %.2f, max %.2f", s / NR, m }' "$out/$name-loadavg")"
}

say "results in $out; threads $threads; users $users; llama-server -np $max_users -c $llama_ctx"

port=$(free_port)
"$troupe" serve --model "$model" --threads "$threads" --max-num-seqs "$max_users" \
  --host 127.0.0.1 --port "$port" >"$out/troupe-server.log" 2>&1 &
server_pid=$!
wait_healthy "http://127.0.0.1:$port" troupe "$out/troupe-server.log"
measure "http://127.0.0.1:$port" troupe
stop_server

port=$(free_port)
"$llama_server" -m "$model" -t "$threads" -np "$max_users" -c "$llama_ctx" \
  --host 127.0.0.1 --port "$port" >"$out/llama-server.log" 2>&1 &
server_pid=$!
wait_healthy "http://127.0.0.1:$port" llama-server "$out/llama-server.log"
measure "http://127.0.0.1:$port" llama
stop_server

{
  machine_header
  echo "llama.cpp: $("$llama_server" --version 2>&1 | grep -m1 version || true)"
  echo "niceness of both servers and the load driver: $(nice)"
  for n in troupe llama; do
    echo "load average while $n was measured: $(awk '{ s += $1; if ($1 > m) m = $1 } END { printf "mean %.2f, max %.2f", s / NR, m }' "$out/$n-loadavg") (its $threads threads + the load driver make about $((threads + 1)))"
  done
  echo "troupe serve --model $model --threads $threads --max-num-seqs $max_users"
  echo "llama-server -m $model -t $threads -np $max_users -c $llama_ctx"
} >"$out/machine.txt"
cat "$out/machine.txt"
echo
python3 bench/compare_report.py report \
  --troupe-closed "$out/troupe-closed.json" --troupe-rate "$out/troupe-rate.json" \
  --llama-closed "$out/llama-closed.json" --llama-rate "$out/llama-rate.json" \
  --troupe-rss-kb "$(cat "$out/troupe-rss-kb")" --llama-rss-kb "$(cat "$out/llama-rss-kb")" \
  --markdown "$out/report.md"
