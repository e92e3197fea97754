#!/usr/bin/env python3
"""Serving throughput, troupe's actor runtime vs llama.cpp's llama-server, in one run.

For each concurrency N (default 1,4,16,32,64): N streams, each a distinct 128-token prompt
and 128 generated tokens (greedy, end-of-generation ignored), all started at once.
llama.cpp side: `llama-server -np <max N> -t THREADS` (continuous batching, built by
bench/build_llama_cpp.sh), driven over loopback HTTP with streaming /completion requests.
troupe side: build/bench/bench_serving (the same workload through engine::submit, in
process: troupe's HTTP front door does not exist yet, so troupe pays no HTTP cost here;
on loopback that cost is small next to a 128-token stream, but it is not zero).

Prints a table of output tokens/s and time to first token p50/p99 for both, with ratios,
and one line "RESULT {json}".

Usage: bench/compare_serving.py [--model M] [--threads T] [--streams 1,4,16,32,64]
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def prompt_ids(i, n):
    # Same construction as bench_serving.cpp: distinct, deterministic token ids.
    return [(7919 * (t + 1) * (i + 3)) % 40000 + 100 for t in range(n)]


def one_stream(port, ids, n_gen, out, idx):
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"prompt": ids, "n_predict": n_gen, "temperature": 0, "ignore_eos": True,
                       "stream": True, "cache_prompt": False})
    conn.request("POST", "/completion", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first = None
    tokens = 0
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        msg = json.loads(line[5:])
        if msg.get("content") is not None or msg.get("tokens"):
            if first is None:
                first = time.monotonic() - start
            tokens += max(1, len(msg.get("tokens", []) or [0])) if not msg.get("stop") else 0
        if msg.get("stop"):
            tokens = msg.get("tokens_predicted", tokens)
            break
    conn.close()
    out[idx] = (first or 0.0, tokens)


def run_llama(server_bin, model, threads, streams, n_prompt, n_gen):
    port = free_port()
    max_n = max(streams)
    ctx = max_n * (n_prompt + n_gen + 16)
    proc = subprocess.Popen([server_bin, "-m", model, "-t", str(threads), "-np", str(max_n), "-c", str(ctx),
                             "--host", "127.0.0.1", "--port", str(port), "-cb"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("llama-server did not become healthy")
        results = {}
        for n in streams:
            out = [None] * n
            threads_ = [threading.Thread(target=one_stream, args=(port, prompt_ids(i, n_prompt), n_gen, out, i))
                        for i in range(n)]
            t0 = time.monotonic()
            for t in threads_:
                t.start()
            for t in threads_:
                t.join()
            wall = time.monotonic() - t0
            ttft = [o[0] * 1000 for o in out]
            results[n] = {"output_tok_s": sum(o[1] for o in out) / wall,
                          "ttft_p50_ms": percentile(ttft, 0.5), "ttft_p99_ms": percentile(ttft, 0.99)}
            print(f"llama.cpp N={n}: {results[n]}", file=sys.stderr)
        return results
    finally:
        proc.terminate()
        proc.wait()


def run_troupe(bench_bin, model, threads, streams, n_prompt, n_gen):
    res = subprocess.run([bench_bin, "--model", model, "--threads", str(threads), "--prompt-tokens", str(n_prompt),
                          "--gen-tokens", str(n_gen), "--streams", ",".join(map(str, streams))],
                         capture_output=True, text=True, check=True)
    results = {}
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            results[r["streams"]] = r
    print(res.stdout, file=sys.stderr)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--streams", default="1,4,16,32,64")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--troupe-bench", default=os.path.join(ROOT, "build", "bench", "bench_serving"))
    ap.add_argument("--llama-server", default=os.path.join(ROOT, "third_party", "llama.cpp", "build", "bin",
                                                            "llama-server"))
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",")]
    if not os.access(args.llama_server, os.X_OK):
        subprocess.run([os.path.join(ROOT, "bench", "build_llama_cpp.sh")], check=True)
    troupe = run_troupe(args.troupe_bench, args.model, args.threads, streams, args.prompt, args.gen)
    llama = run_llama(args.llama_server, args.model, args.threads, streams, args.prompt, args.gen)
    print(f"serving: prompt {args.prompt}, output {args.gen} tokens per stream, {args.threads} threads")
    print(f"{'streams':>7} | {'troupe tok/s':>12} {'llama tok/s':>11} {'ratio':>6} | "
          f"{'TTFT p50 ms t/l':>17} | {'TTFT p99 ms t/l':>17}")
    for n in streams:
        t, l = troupe[n], llama[n]
        print(f"{n:>7} | {t['output_tok_s']:>12.1f} {l['output_tok_s']:>11.1f} "
              f"{t['output_tok_s'] / max(l['output_tok_s'], 1e-9):>6.2f} | "
              f"{t['ttft_p50_ms']:>8.0f}/{l['ttft_p50_ms']:<8.0f} | {t['ttft_p99_ms']:>8.0f}/{l['ttft_p99_ms']:<8.0f}")
    print("RESULT " + json.dumps({"troupe": troupe, "llama_cpp": llama, "threads": args.threads}))


if __name__ == "__main__":
    main()
