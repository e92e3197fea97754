#!/usr/bin/env bash
# bench/fuzz.sh: builds the libFuzzer targets (build-fuzz/, clang) and runs each one for a
# fixed number of executions from a scratch copy of its seed corpus, so the committed seeds
# stay small. One line per target: executions, wall and CPU seconds, executions per wall
# second, final corpus size, crashes.
# Exits non-zero when any target crashed (or leaked, or timed out); the reproducers are in
# the results folder. One target runs at a time, niced: the machine is shared.
#
#   bench/fuzz.sh [--runs N] [--max-seconds S] [--target NAME]... [--out DIR] [--build-dir DIR]
#                 [--corpus-dir DIR]
#
# --max-seconds stops each target after S seconds even if it has not reached N executions
# (the line then shows how many it did): for a target too slow to reach N in the time there is.
#
# --corpus-dir keeps each target's working corpus in DIR/<target> from one run to the next
# (made from the seeds on first use): a campaign too long for one sitting continues where
# the last run stopped, and each run's line is appended to DIR/<target>.runs, so the
# executions of all its runs can be added up.
#
# fuzz_tokenizer loads its vocabulary from $TROUPE_FUZZ_MODEL (default: the model that
# scripts/fetch_model.sh fetches).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10000000
max_seconds=0
targets=()
build=build-fuzz
out=bench/out/fuzz-$(date +%Y%m%d-%H%M%S)
corpus_dir=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --max-seconds) max_seconds=$2; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    *) echo "usage: bench/fuzz.sh [--runs N] [--max-seconds S] [--target NAME]... [--out DIR] [--build-dir DIR] [--corpus-dir DIR]" >&2; exit 2 ;;
  esac
done

# name  seed folder (fuzz/corpus/)  -max_len  -malloc_limit_mb
# max_len is what each input format needs to reach every branch: a GGUF header with a few
# tensors, a request body with every field, a few WebSocket frames, a line of text to
# tokenize, a short conversation. Longer inputs only make each execution slower.
all_targets=(
  "gguf_fuzz gguf 4096 256"
  "fuzz_api_parse fuzz_api_parse 4096 512"
  "fuzz_ws_frames fuzz_ws_frames 512 256"
  "fuzz_tokenizer fuzz_tokenizer 128 512"
  "fuzz_chat_template fuzz_chat_template 1024 256"
)
[[ ${#targets[@]} -gt 0 ]] || for t in "${all_targets[@]}"; do targets+=("${t%% *}"); done

export TROUPE_FUZZ_MODEL=${TROUPE_FUZZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}

if [[ ! -f $build/CMakeCache.txt ]]; then
  CC=clang CXX=clang++ nice -n 10 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTROUPE_BUILD_FUZZ=ON -DTROUPE_BUILD_TESTS=OFF -DTROUPE_CUDA=OFF -DTROUPE_BUILD_APPS=OFF \
    -DTROUPE_BUILD_BENCH=OFF -DTROUPE_BUILD_EXAMPLES=OFF -DTROUPE_INSTALL=OFF >/dev/null
fi
nice -n 10 cmake --build "$build" -j "${FUZZ_BUILD_JOBS:-1}" --target "${targets[@]}" >/dev/null

mkdir -p "$out"
limit=""
[[ $max_seconds -eq 0 ]] || limit=" (at most $max_seconds s each)"
echo "bench/fuzz.sh: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ)," \
  "$(nproc) CPUs, $runs runs per target$limit; logs and reproducers in $out" | tee "$out/summary.txt"
printf '%-20s %12s %9s %9s %9s %8s %8s\n' target executions seconds cpu-s exec/s corpus crashes | tee -a "$out/summary.txt"
failed=0
for name in "${targets[@]}"; do
  spec=""
  for t in "${all_targets[@]}"; do [[ ${t%% *} == "$name" ]] && spec=$t; done
  [[ -n $spec ]] || { echo "bench/fuzz.sh: unknown target $name" >&2; exit 2; }
  read -r _ seeds max_len malloc_mb <<<"$spec"
  corpus=$out/$name-corpus
  [[ -z $corpus_dir ]] || corpus=$corpus_dir/$name
  mkdir -p "$corpus" "$out/$name-artifacts"
  cp -n fuzz/corpus/"$seeds"/* "$corpus"/
  start=$(date +%s.%N)
  rc=0
  # CPU seconds next to wall seconds: on a shared machine the wall clock includes waiting.
  TIMEFORMAT='%U %S'
  { time nice -n 10 "$build/fuzz/$name" "$corpus" -runs="$runs" -max_len="$max_len" -malloc_limit_mb="$malloc_mb" \
      -max_total_time="$max_seconds" -timeout=10 -print_final_stats=1 -artifact_prefix="$out/$name-artifacts/" \
      >"$out/$name.log" 2>&1; } 2>"$out/$name.cpu" || rc=$?
  end=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log" | tail -n 1)
  seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
  cpu=$(tail -n 1 "$out/$name.cpu" | awk '{ printf "%.0f", $1 + $2 }')
  rate=$(awk -v n="${execs:-0}" -v s="$seconds" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  crashes=$(find "$out/$name-artifacts" -type f | wc -l)
  # A run that stopped without leaving a reproducer (a leak report, an abort in
  # initialization) still failed.
  if [[ $rc -ne 0 && $crashes -eq 0 ]]; then crashes="rc=$rc"; fi
  [[ $rc -eq 0 && $crashes == 0 ]] || failed=1
  printf '%-20s %12s %9s %9s %9s %8s %8s\n' "$name" "${execs:-?}" "$seconds" "$cpu" "$rate" \
    "$(find "$corpus" -type f | wc -l)" "$crashes" | tee -a "$out/summary.txt"
  if [[ -n $corpus_dir ]]; then
    echo "$(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo unknown) executions=${execs:-0} seconds=$seconds cpu=$cpu crashes=$crashes" \
      >>"$corpus_dir/$name.runs"
    awk '{ sub("executions=", "", $3); n += $3 } END { printf "%s: %d executions over %d runs of this corpus\n", FILENAME, n, NR }' \
      "$corpus_dir/$name.runs" | tee -a "$out/summary.txt"
  fi
done
exit $failed
