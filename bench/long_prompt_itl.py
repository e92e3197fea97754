#!/usr/bin/env python3
"""Inter-token latency of running streams when a long prompt arrives, in one run.

D streams decode (a short prompt, --gen tokens each, greedy, end-of-generation ignored); once
each has produced 8 tokens, one request with a --long-prompt-token prompt arrives. Every
gap between two tokens of the decoding streams is recorded while the long prompt is being
prefilled (from its arrival to its first token), and printed as p50 / p99 / max, with the
long prompt's time to first token, for each server:

  troupe             `troupe serve` as shipped (chunks sized by cost: attention counted)
  troupe tokens-only `troupe serve --attention-cost 0` (chunks sized by tokens alone)
  llama.cpp          `llama-server -np D+1 -cb`, when built (bench/build_llama_cpp.sh)

Prompts are token ids (exact lengths, no shared prefix). The gap p99 and max of the
decoding streams are the numbers chunked prefill exists to bound; a ratio column compares
each row with the first.

Usage: bench/long_prompt_itl.py [--model M] [--threads T] [--decoders 2] [--long-prompt 5785]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_serving import ROOT, free_port, percentile, prompt_ids, wait_healthy  # noqa: E402


def stream(port, prompt, n_gen, times, started=None):
    """Streams one completion; appends the arrival time of every token to times."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1200)
    body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": n_gen, "temperature": 0, "ignore_eos": True,
                       "stream": True})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        msg = json.loads(data)
        for c in msg.get("choices") or []:
            if c.get("text") is not None:
                times.append(time.monotonic())
                if started is not None and len(times) == 8:
                    started.release()
    conn.close()


def measure(port, decoders, n_gen, long_prompt):
    started = threading.Semaphore(0)
    token_times = [[] for _ in range(decoders)]
    threads = [threading.Thread(target=stream, args=(port, prompt_ids(f"d{i}", 32), n_gen, token_times[i], started))
               for i in range(decoders)]
    for t in threads:
        t.start()
    for _ in range(decoders):
        started.acquire()
    long_times = []
    arrival = time.monotonic()
    stream(port, prompt_ids("long", long_prompt), 1, long_times)
    first = long_times[0] if long_times else time.monotonic()
    for t in threads:
        t.join()
    gaps = []
    for times in token_times:
        for a, b in zip(times, times[1:]):
            if b > arrival and a < first:  # a gap that overlaps the long prompt's prefill
                gaps.append((b - a) * 1000)
    if any(len(t) < n_gen for t in token_times):
        raise RuntimeError("a decoding stream ended early")
    if first - arrival > 0 and any(t[-1] < first for t in token_times):
        print("warning: a decoding stream ended before the long prompt's first token; raise --gen",
              file=sys.stderr)
    return {"ttft_long_ms": (first - arrival) * 1000, "gap_p50_ms": percentile(gaps, 0.5),
            "gap_p99_ms": percentile(gaps, 0.99), "gap_max_ms": max(gaps, default=0.0), "gaps": len(gaps),
            "gap_list_ms": [round(g) for g in gaps]}


def run(cmd, name, decoders, n_gen, long_prompt):
    port = free_port()
    proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc, name)
        measure(port, decoders, 16, 64)  # warm-up
        result = measure(port, decoders, n_gen, long_prompt)
        print(f"{name}: {result}", file=sys.stderr)
        return result
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--decoders", type=int, default=2)
    ap.add_argument("--gen", type=int, default=400, help="tokens per decoding stream (outlasting the prefill)")
    ap.add_argument("--long-prompt", type=int, default=5785)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--llama-server", default=os.path.join(ROOT, "third_party", "llama.cpp", "build", "bin",
                                                           "llama-server"))
    ap.add_argument("--no-llama", action="store_true")
    args = ap.parse_args()
    ctx = args.long_prompt + 64
    troupe = [args.troupe, "serve", "--model", args.model, "--threads", str(args.threads), "--host", "127.0.0.1",
              "--max-model-len", str(max(8192, ctx))]
    rows = [("troupe", run(troupe, "troupe", args.decoders, args.gen, args.long_prompt)),
            ("troupe tokens-only", run([*troupe, "--attention-cost", "0"], "troupe tokens-only", args.decoders,
                                       args.gen, args.long_prompt))]
    if not args.no_llama:
        if not os.path.exists(args.llama_server):
            sys.exit(f"{args.llama_server} not found: run bench/build_llama_cpp.sh, or pass --no-llama")
        n = args.decoders + 1
        rows.append(("llama.cpp", run([args.llama_server, "-m", args.model, "-t", str(args.threads), "-np", str(n),
                                       "-c", str(n * ctx), "-cb", "--host", "127.0.0.1"], "llama.cpp",
                                      args.decoders, args.gen, args.long_prompt)))
    base = rows[0][1]
    print(f"{args.decoders} decoding streams, one {args.long_prompt}-token prompt arriving, {args.threads} threads")
    print(f"{'server':<20}{'gap p50 ms':>12}{'gap p99 ms':>12}{'gap max ms':>12}{'long TTFT ms':>14}"
          f"{'p99 vs troupe':>15}")
    for name, r in rows:
        ratio = r["gap_p99_ms"] / base["gap_p99_ms"] if base["gap_p99_ms"] else 0.0
        print(f"{name:<20}{r['gap_p50_ms']:>12.1f}{r['gap_p99_ms']:>12.1f}{r['gap_max_ms']:>12.1f}"
              f"{r['ttft_long_ms']:>14.1f}{ratio:>14.2f}x")
    print("RESULT " + json.dumps({name: {k: v for k, v in r.items() if k != "gap_list_ms"} for name, r in rows}))


if __name__ == "__main__":
    main()
