#!/usr/bin/env bash
# Speed comparison of troupe against llama.cpp on the same GGUF file with the same threads:
# decode tokens/s for one stream (tg) and prefill tokens/s for a 512-token prompt (pp),
# each as troupe / llama.cpp, median of N alternating runs (troupe, llama.cpp, troupe, ...),
# plus the memory-bandwidth bound for decode (bytes of weights read per token).
#
# Usage: bench/compare_llama_cpp.sh [options]
#   --model PATH      GGUF file (default models/SmolLM2-135M-Instruct.Q4_1.gguf, or $MODEL);
#                     repeat it (or pass --models) to compare several files, one after another
#   --models 'A B ..' several GGUF files; prints each file's table, then a summary table
#   --threads N       threads for both engines (default $THREADS or nproc)
#   --rounds N        alternating rounds (default 5)
#   --prompt N        prefill prompt tokens (default 512)
#   --gen N           decode tokens (default 128)
#   --llama-only      run only llama.cpp (e.g. before troupe's bench binary exists)
#   --troupe-only     run only troupe
#   --out DIR         raw per-run output (default bench/out/compare-<timestamp>)
# Environment: LLAMA_BENCH (path of llama-bench), TROUPE_BENCH (path of bench_engine),
#              MEMBW (path of the bandwidth helper, default build/bench/membw).
#
# Output: a table (metric | troupe | llama.cpp | ratio), the decode bandwidth bound, and one
# machine-readable line starting with "RESULT " followed by JSON; with several models, a
# summary table and one "RESULT_SUMMARY " JSON line after them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

model=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
models=()
passthrough=()
threads=${THREADS:-$(nproc)}
rounds=5
n_prompt=512
n_gen=128
run_troupe=1
run_llama=1
out=""
while (($#)); do
  case $1 in
    --model) model=$2; models+=("$2"); shift 2 ;;
    --models) read -r -a more <<<"$2"; models+=("${more[@]}"); model=${more[0]:-$model}; shift 2 ;;
    --threads) threads=$2; passthrough+=("$1" "$2"); shift 2 ;;
    --rounds) rounds=$2; passthrough+=("$1" "$2"); shift 2 ;;
    --prompt) n_prompt=$2; passthrough+=("$1" "$2"); shift 2 ;;
    --gen) n_gen=$2; passthrough+=("$1" "$2"); shift 2 ;;
    --llama-only) run_troupe=0; passthrough+=("$1"); shift ;;
    --troupe-only) run_llama=0; passthrough+=("$1"); shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare_llama_cpp: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "compare_llama_cpp: $*" >&2; }

# Several models: run this script once per model, then summarize their RESULT lines.
if ((${#models[@]} > 1)); then
  out=${out:-bench/out/compare-$(date +%Y%m%d-%H%M%S)}
  mkdir -p "$out"
  : >"$out/results.jsonl"
  for m in "${models[@]}"; do
    name=$(basename "$m" .gguf)
    "$0" --model "$m" --out "$out/$name" "${passthrough[@]}" | tee "$out/$name.txt"
    grep '^RESULT ' "$out/$name.txt" | sed 's/^RESULT //' >>"$out/results.jsonl"
  done
  python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def f(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"
def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"
print()
print(f"summary: {rows[0]['threads']} threads, median of {rows[0]['rounds']} alternating rounds per model")
head = (f"{'model':<40} | {'pp troupe':>9} | {'pp llama':>9} | {'ratio':>5} | {'tg troupe':>9} | "
        f"{'tg llama':>9} | {'ratio':>5} | {'MB/tok':>6} | {'GB/s':>5} | {'troupe/bound':>12} | {'llama/bound':>11}")
print(head)
print("-" * len(head))
for r in rows:
    t, l = r["troupe"], r["llama_cpp"]
    name = r["model"].split("/")[-1].removesuffix(".gguf")
    print(f"{name:<40} | {f(t['prefill_tok_s']):>9} | {f(l['prefill_tok_s']):>9} | {f(r['ratio']['prefill'], 2):>5} | "
          f"{f(t['decode_tok_s']):>9} | {f(l['decode_tok_s']):>9} | {f(r['ratio']['decode'], 2):>5} | "
          f"{f((r['weight_bytes_per_token'] or 0) / 1e6):>6} | {f(r['membw_gb_s']):>5} | "
          f"{pct(r.get('troupe_fraction_of_bound')):>12} | {pct(r.get('llama_fraction_of_bound')):>11}")
print("RESULT_SUMMARY " + json.dumps(rows, separators=(",", ":")))
PY
  exit 0
fi

llama_bench=${LLAMA_BENCH:-$root/third_party/llama.cpp/build/bin/llama-bench}
troupe_bench=${TROUPE_BENCH:-$root/build/bench/bench_engine}
membw=${MEMBW:-$root/build/bench/membw}

# Prerequisites: the model, llama.cpp's llama-bench, troupe's bench_engine.
if [[ ! -f $model ]]; then
  if [[ $model == models/SmolLM2-135M-Instruct.Q4_1.gguf ]]; then
    scripts/fetch_model.sh
  else
    say "model not found: $model"; exit 1
  fi
fi
if ((run_troupe)) && [[ ! -x $troupe_bench ]]; then
  say "troupe's benchmark binary is missing: $troupe_bench"
  say "build it first with 'make build' (or run with --llama-only)"
  exit 1
fi
if ((run_llama)) && [[ ! -x $llama_bench ]]; then
  say "llama-bench not found at $llama_bench: building llama.cpp (bench/build_llama_cpp.sh --quick)"
  bench/build_llama_cpp.sh --quick >&2
  [[ -x $llama_bench ]] || { say "llama-bench still missing at $llama_bench"; exit 1; }
fi

# On a small shared machine a busy core wrecks multi-threaded runs (a descheduled thread
# stalls every barrier: llama-bench -t 2 decode fell from ~118 to <1 tok/s with one core
# taken by another process). Warn rather than report such numbers silently.
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  say "WARNING: load average $load on $(nproc) CPUs: other work will distort these timings"
fi

out=${out:-bench/out/compare-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
say "model $model, threads $threads, rounds $rounds, pp$n_prompt / tg$n_gen, raw output in $out"

troupe_cmd=("$troupe_bench" --model "$model" --threads "$threads"
            --prompt-tokens "$n_prompt" --gen-tokens "$n_gen" --json)
llama_cmd=("$llama_bench" -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r 1 -o jsonl)

for ((r = 1; r <= rounds; r++)); do
  if ((run_troupe)); then
    if ! "${troupe_cmd[@]}" >"$out/troupe.$r.json" 2>"$out/troupe.$r.log"; then
      say "troupe run $r failed:"; tail -n 20 "$out/troupe.$r.log" >&2; exit 1
    fi
    say "round $r troupe:    $(grep -m1 '^{' "$out/troupe.$r.json" || true)"
  fi
  if ((run_llama)); then
    if ! "${llama_cmd[@]}" >"$out/llama.$r.jsonl" 2>"$out/llama.$r.log"; then
      say "llama-bench run $r failed:"; tail -n 20 "$out/llama.$r.log" >&2; exit 1
    fi
    say "round $r llama.cpp: $(python3 -c '
import json,sys
for l in open(sys.argv[1]):
    l=l.strip()
    if l.startswith("{"):
        j=json.loads(l); k="pp" if j["n_gen"]==0 else "tg"
        print("%s%d %.1f tok/s" % (k, j["n_prompt"] or j["n_gen"], j["avg_ts"]), end="  ")
' "$out/llama.$r.jsonl")"
  fi
done

# Memory bandwidth helper (optional; bench/membw.cpp builds it).
membw_out=""
if [[ -x $membw ]]; then
  membw_out=$("$membw" 2>&1 | tail -n 20 || true)
  printf '%s\n' "$membw_out" >"$out/membw.txt"
fi

python3 - "$out" "$rounds" "$run_troupe" "$run_llama" "$model" "$threads" "$n_prompt" "$n_gen" \
  "${troupe_cmd[*]}" "${llama_cmd[*]}" <<'PY'
import json, os, re, statistics, sys
out, rounds, run_troupe, run_llama, model, threads, n_prompt, n_gen, tcmd, lcmd = sys.argv[1:]
rounds, run_troupe, run_llama = int(rounds), int(run_troupe), int(run_llama)
n_prompt, n_gen = int(n_prompt), int(n_gen)

def first_json(path):
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"compare_llama_cpp: no JSON line in {path}")

t_pp, t_tg, t_bytes, t_packed = [], [], [], []
l_pp, l_tg = [], []
model_size = None
llama_info = {}
for r in range(1, rounds + 1):
    if run_troupe:
        j = first_json(os.path.join(out, f"troupe.{r}.json"))
        t_pp.append(float(j["prefill_tok_s"]))
        t_tg.append(float(j["decode_tok_s"]))
        if j.get("weight_bytes_per_token") is not None:
            t_bytes.append(float(j["weight_bytes_per_token"]))
        if j.get("packed_bytes_per_token") is not None:
            t_packed.append(float(j["packed_bytes_per_token"]))
    if run_llama:
        for line in open(os.path.join(out, f"llama.{r}.jsonl")):
            line = line.strip()
            if not line.startswith("{"):
                continue
            j = json.loads(line)
            model_size = j.get("model_size", model_size)
            llama_info = {k: j.get(k) for k in ("build_commit", "build_number", "cpu_info",
                                                "backends", "n_threads", "type_k", "flash_attn")}
            if j["n_prompt"] == n_prompt and j["n_gen"] == 0:
                l_pp.append(float(j["avg_ts"]))
            elif j["n_gen"] == n_gen and j["n_prompt"] == 0:
                l_tg.append(float(j["avg_ts"]))

med = lambda xs: statistics.median(xs) if xs else None
def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"
def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

rows = [(f"prefill pp{n_prompt} tok/s", med(t_pp), med(l_pp)),
        (f"decode tg{n_gen} tok/s (1 stream)", med(t_tg), med(l_tg))]

# Bandwidth bound for decode.
# What troupe's decode streams: its packed matrices (older bench_engine builds report only
# the file's bytes).
bytes_per_token = med(t_packed) or med(t_bytes)
bytes_source = ("troupe bench_engine packed_bytes_per_token" if t_packed
                else "troupe bench_engine weight_bytes_per_token")
if bytes_per_token is None and model_size:
    # Tied-embedding models read every weight once per step except the embedding lookup,
    # which is also the output matrix (read whole): weights per token ~= model size.
    bytes_per_token = float(model_size)
    bytes_source = "llama-bench model_size (approximation: all weights once per token)"
gbs = None
membw_path = os.path.join(out, "membw.txt")
if os.path.exists(membw_path):
    text = open(membw_path).read()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                j = json.loads(line)
                for k, v in j.items():
                    if "gb" in k.lower() and isinstance(v, (int, float)):
                        gbs = float(v); break
            except ValueError:
                pass
        if gbs is None:
            m = re.search(r"([0-9]+(?:\.[0-9]+)?)\s*GB/s", line)
            if m:
                gbs = float(m.group(1))
        if gbs is not None:
            break
bound = gbs * 1e9 / bytes_per_token if gbs and bytes_per_token else None
# llama.cpp reads its file's tensors once per token (a tied output matrix is read whole).
llama_bound = gbs * 1e9 / float(model_size) if gbs and model_size else None

w = 34
print()
print(f"model {model}, threads {threads}, median of {rounds} alternating runs")
print(f"{'metric':<{w}} | {'troupe':>10} | {'llama.cpp':>10} | {'ratio':>7}")
print(f"{'-' * w}-+-{'-' * 10}-+-{'-' * 10}-+-{'-' * 7}")
for name, t, l in rows:
    rt = ratio(t, l)
    print(f"{name:<{w}} | {fmt(t):>10} | {fmt(l):>10} | {fmt(rt, 2):>7}")
print()
if bytes_per_token:
    print(f"weights read per decode token: {bytes_per_token / 1e6:.1f} MB ({bytes_source})")
if gbs:
    print(f"DRAM read bandwidth (membw): {gbs:.1f} GB/s -> decode bound {bound:.0f} tok/s")
    if med(t_tg):
        print(f"troupe decode reaches {100 * med(t_tg) / bound:.0f}% of the bound")
    if med(l_tg) and llama_bound:
        print(f"llama.cpp decode reaches {100 * med(l_tg) / llama_bound:.0f}% of its bound "
              f"({float(model_size) / 1e6:.1f} MB per token -> {llama_bound:.0f} tok/s)")
else:
    print("DRAM read bandwidth: build/bench/membw not built, bound not computed")
try:
    load = open("/proc/loadavg").read().split()[:3]
except OSError:
    load = None

result = {
    "model": model, "threads": int(threads), "rounds": rounds,
    "n_prompt": n_prompt, "n_gen": n_gen,
    "troupe": {"prefill_tok_s": med(t_pp), "decode_tok_s": med(t_tg),
               "prefill_runs": t_pp, "decode_runs": t_tg, "command": tcmd if run_troupe else None},
    "llama_cpp": {"prefill_tok_s": med(l_pp), "decode_tok_s": med(l_tg),
                  "prefill_runs": l_pp, "decode_runs": l_tg, "command": lcmd if run_llama else None,
                  **llama_info},
    "ratio": {"prefill": ratio(med(t_pp), med(l_pp)), "decode": ratio(med(t_tg), med(l_tg))},
    "weight_bytes_per_token": bytes_per_token, "weight_bytes_source": bytes_source,
    "membw_gb_s": gbs, "decode_bound_tok_s": bound,
    "troupe_fraction_of_bound": med(t_tg) / bound if bound and med(t_tg) else None,
    "llama_model_bytes": model_size, "llama_decode_bound_tok_s": llama_bound,
    "llama_fraction_of_bound": med(l_tg) / llama_bound if llama_bound and med(l_tg) else None,
    "loadavg_at_end": load,
}
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump(result, f, indent=1)
print("RESULT " + json.dumps(result, separators=(",", ":")))
PY
