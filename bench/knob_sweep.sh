#!/usr/bin/env bash
# The scheduler knobs against one workload: troupe serve is started once per setting of
# max_num_seqs / max_batch_size / max_wait_ms and driven by troupe-load over HTTP with the
# closed-loop workload of bench/compare.sh (128-token prompts, 128 output tokens, greedy,
# ignore_eos, 0 think time) at a fixed user count. One row per setting: requests/s, output
# tokens/s, p99 TTFT, p99 end-to-end latency and the server's peak RSS (VmHWM at the end),
# as a markdown table and one line "RESULT {json}".
#
# Usage: bench/knob_sweep.sh [options]
#   --threads T      compute threads (default nproc)
#   --build DIR      build folder holding troupe and troupe-load (default build)
#   --users N        closed-loop users (default 64)
#   --settings LIST  space- or comma-separated SEQS/BATCH/WAIT_MS triples
#                    (default "8/8/0,32/8/0,64/8/0,64/8/20,64/32/20,64/32/100")
#   --duration S     seconds each setting sends requests (default 30)
#   --model PATH     GGUF file (default models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --quick          a smoke run: 8 users, settings 4/8/0,8/8/20, 5 s each
#   --out DIR        where results go (default bench/out/knobs-<timestamp>)
set -euo pipefail
cd "$(dirname "$0")/.."

threads=$(nproc)
build=build
users=64
settings="8/8/0,32/8/0,64/8/0,64/8/20,64/32/20,64/32/100"
duration=30
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
out=""
while (($#)); do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --quick) users=8; settings="4/8/0,8/8/20"; duration=5; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "knob_sweep: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "knob_sweep: $*" >&2; }
troupe=$build/troupe
load=$build/troupe-load
for b in "$troupe" "$load"; do
  [[ -x $b ]] || { say "missing $b: build it first (cmake --build $build --target troupe troupe-load)"; exit 1; }
done
[[ -f $model ]] || { say "no model $model (scripts/fetch_model.sh fetches the default)"; exit 1; }

out=${out:-bench/out/knobs-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
workload=$out/closed.json
python3 bench/compare_report.py derive bench/workloads/closed-128-128.json "$workload" duration_s="$duration"

# shellcheck source=bench/lib.sh
source bench/lib.sh

rows=()
for s in ${settings//,/ }; do
  IFS=/ read -r seqs batch wait_ms <<<"$s"
  [[ -n $seqs && -n $batch && -n $wait_ms ]] || { say "bad setting '$s' (want SEQS/BATCH/WAIT_MS)"; exit 2; }
  tag=seqs$seqs-batch$batch-wait$wait_ms
  say "$tag: $users users, $duration s"
  "$troupe" serve --model "$model" --threads "$threads" --port 0 --host 127.0.0.1 \
    --max-num-seqs "$seqs" --max-batch-size "$batch" --max-wait-ms "$wait_ms" >"$out/$tag-server.log" 2>&1 &
  server_pid=$!
  url=""
  for _ in $(seq 1200); do
    kill -0 "$server_pid" 2>/dev/null || { say "troupe serve exited:"; tail -n 20 "$out/$tag-server.log" >&2; exit 1; }
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$out/$tag-server.log" | head -n 1 || true)
    [[ -n $url ]] && curl -sf -o /dev/null "$url/health" && break
    url=""
    sleep 0.25
  done
  [[ -n $url ]] || { say "troupe serve did not become ready"; exit 1; }
  rc=0
  "$load" --url "$url/v1" --workload "$workload" --sweep "users=$users" --out "$out/$tag.json" --quiet \
    >"$out/$tag.txt" 2>&1 || rc=$?
  ((rc == 0 || rc == 3)) || { say "troupe-load failed ($rc):"; tail -n 20 "$out/$tag.txt" >&2; exit 1; }
  rss_kb=$(peak_rss_kb "$server_pid")
  stop_server
  rows+=("$seqs" "$batch" "$wait_ms" "$out/$tag.json" "$rss_kb")
done

{
  machine_header
  echo "niceness of the server and the load driver: $(nice)"
  echo "troupe serve --model $model --threads $threads --max-num-seqs SEQS --max-batch-size BATCH --max-wait-ms WAIT"
  echo "troupe-load --workload bench/workloads/closed-128-128.json (duration_s $duration) --sweep users=$users"
} >"$out/machine.txt"
cat "$out/machine.txt"
echo
python3 bench/knob_report.py --markdown "$out/report.md" "${rows[@]}"
