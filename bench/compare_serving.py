#!/usr/bin/env python3
"""Serving throughput, troupe vs llama.cpp's llama-server, both over loopback HTTP, in one run.

For each concurrency N (default 1,4,16,32,64): N streams, each a distinct prompt of exactly
128 tokens (sent as token ids, which both servers feed as given) and 128 generated tokens (greedy, end-of-generation ignored), all started at once, through
the OpenAI-compatible POST /v1/completions with stream:true on both servers (the same client
code, the same prompts, the same model file, the same thread count):
  troupe:    `troupe serve --threads T --max-num-seqs <max N>`
  llama.cpp: `llama-server -np <max N> -t T -cb` (continuous batching, built by
             bench/build_llama_cpp.sh from the sources llama-cpp-python vendors)
While troupe runs, its /metrics is sampled every 50 ms: KV waste (reserved but unused slots
over reserved slots: time-weighted over the point from the engine's slot-second counters, and
the largest instantaneous value sampled) and the scheduler's own time as a share of the
worker's step time (actor/scheduling overhead).

Prints a table of output tokens/s and time to first token p50/p99 for both, with ratios,
and one line "RESULT {json}".

Usage: bench/compare_serving.py [--model M] [--threads T] [--streams 1,4,16,32,64]
"""
import argparse
import http.client
import json
import random
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


def prompt_ids(key, n):
    # Exactly n token ids, distinct and deterministic per key (no two streams, and no two
    # points, share a prefix that a prefix cache could reuse), from the ordinary middle of the
    # vocabulary (no control tokens). Token ids, not text: the prompt length is what the
    # benchmark says it is (text of "128 words" is 129-130 tokens for this tokenizer, and KV
    # block use depends on the exact length), and both servers see the same tokens.
    rng = random.Random(key)
    return [rng.randrange(1000, 40000) for _ in range(n)]


def one_stream(port, prompt, n_gen, out, idx):
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": n_gen, "temperature": 0, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = None
    chunks = 0
    usage_tokens = None
    prompt_tokens = None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        msg = json.loads(data)
        if msg.get("usage"):
            usage_tokens = msg["usage"].get("completion_tokens")
            prompt_tokens = msg["usage"].get("prompt_tokens")
        for c in msg.get("choices") or []:
            if c.get("text"):
                chunks += 1
                if first is None:
                    first = time.monotonic() - start
    conn.close()
    if prompt_tokens is not None and prompt_tokens != len(prompt):
        raise RuntimeError(f"the server counted {prompt_tokens} prompt tokens for {len(prompt)} token ids")
    out[idx] = (first or 0.0, usage_tokens if usage_tokens is not None else chunks)


def wait_healthy(port, proc, name):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{name} did not become healthy")


def run_streams(port, streams, n_prompt, n_gen, name, sampler=None):
    results = {}
    for n in streams:
        out = [None] * n
        threads_ = [threading.Thread(target=one_stream, args=(port, prompt_ids(f"{n}-{i}", n_prompt), n_gen, out, i))
                    for i in range(n)]
        if sampler:
            sampler.begin()
        t0 = time.monotonic()
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
        wall = time.monotonic() - t0
        if None in out:
            sys.exit(f"{name}: a stream failed at N={n}")
        ttft = [o[0] * 1000 for o in out]
        results[n] = {"output_tok_s": sum(o[1] for o in out) / wall,
                      "ttft_p50_ms": percentile(ttft, 0.5), "ttft_p99_ms": percentile(ttft, 0.99)}
        if sampler:
            results[n].update(sampler.end())
        print(f"{name} N={n}: {results[n]}", file=sys.stderr)
    return results


def read_metrics(port):
    """troupe's /metrics as {series (name with labels): value}."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    values = {}
    for line in c.getresponse().read().decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            pass
    return values


class metrics_sampler:
    """Samples troupe's /metrics while a point runs: the largest KV waste ratio seen, and
    the scheduler's time over the worker's step time between begin() and end()."""

    def __init__(self, port):
        self.port = port
        self.running = False

    def read(self):
        return read_metrics(self.port)

    def _loop(self):
        while self.running:
            m = self.read()
            if m.get("troupe_num_requests_running", 0) > 0:
                self.wastes.append(m.get("troupe_kv_cache_waste_ratio", 0.0))
            time.sleep(0.05)

    def begin(self):
        self.start = self.read()
        self.wastes = []
        self.running = True
        self.thread = threading.Thread(target=self._loop)
        self.thread.start()

    def end(self):
        self.running = False
        self.thread.join()
        end = self.read()
        busy = end.get("troupe_worker_busy_seconds_total", 0) - self.start.get("troupe_worker_busy_seconds_total", 0)
        overhead = (end.get("troupe_scheduler_overhead_seconds_total", 0)
                    - self.start.get("troupe_scheduler_overhead_seconds_total", 0))
        mean_waste = sum(self.wastes) / len(self.wastes) if self.wastes else 0.0
        # Time-weighted: of the KV slot-seconds sequences held during the point's steps, the
        # share that held no token (counted by the engine at every step).
        reserved = (end.get("troupe_kv_cache_reserved_slot_seconds_total", 0)
                    - self.start.get("troupe_kv_cache_reserved_slot_seconds_total", 0))
        unused = (end.get("troupe_kv_cache_unused_slot_seconds_total", 0)
                  - self.start.get("troupe_kv_cache_unused_slot_seconds_total", 0))
        return {"kv_waste": unused / reserved if reserved > 0 else 0.0,
                "kv_waste_sample_mean": mean_waste, "kv_waste_max": max(self.wastes, default=0.0),
                "sched_overhead": overhead / busy if busy > 0 else 0.0}


def run_llama(server_bin, model, threads, streams, n_prompt, n_gen):
    port = free_port()
    max_n = max(streams)
    ctx = max_n * (n_prompt + n_gen + 16)
    proc = subprocess.Popen([server_bin, "-m", model, "-t", str(threads), "-np", str(max_n), "-c", str(ctx),
                             "--host", "127.0.0.1", "--port", str(port), "-cb"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc, "llama-server")
        return run_streams(port, streams, n_prompt, n_gen, "llama.cpp")
    finally:
        proc.terminate()
        proc.wait()


def run_troupe(troupe_bin, model, threads, streams, n_prompt, n_gen, extra_args):
    port = free_port()
    proc = subprocess.Popen([troupe_bin, "serve", "--model", model, "--threads", str(threads), "--port", str(port),
                             "--max-num-seqs", str(max(streams)), *extra_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc, "troupe")
        return run_streams(port, streams, n_prompt, n_gen, "troupe", metrics_sampler(port))
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--streams", default="1,4,16,32,64")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--llama-server", default=os.path.join(ROOT, "third_party", "llama.cpp", "build", "bin",
                                                            "llama-server"))
    ap.add_argument("--troupe-args", default="", help="more `troupe serve` flags, e.g. \"--block-size 8\"")
    ap.add_argument("--only-troupe", action="store_true", help="skip llama-server (no ratios)")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",")]
    if not args.only_troupe and not os.access(args.llama_server, os.X_OK):
        subprocess.run([os.path.join(ROOT, "bench", "build_llama_cpp.sh")], check=True)
    troupe = run_troupe(args.troupe, args.model, args.threads, streams, args.prompt, args.gen, args.troupe_args.split())
    if args.only_troupe:
        print(json.dumps(troupe, indent=1))
        return
    llama = run_llama(args.llama_server, args.model, args.threads, streams, args.prompt, args.gen)
    print(f"serving: prompt {args.prompt}, output {args.gen} tokens per stream, {args.threads} threads")
    print(f"{'streams':>7} | {'troupe tok/s':>12} {'llama tok/s':>11} {'ratio':>6} | "
          f"{'TTFT p50 ms t/l':>17} | {'TTFT p99 ms t/l':>17} | {'KV waste time/max':>17} {'sched ovh':>9}")
    for n in streams:
        t, l = troupe[n], llama[n]
        print(f"{n:>7} | {t['output_tok_s']:>12.1f} {l['output_tok_s']:>11.1f} "
              f"{t['output_tok_s'] / max(l['output_tok_s'], 1e-9):>6.2f} | "
              f"{t['ttft_p50_ms']:>8.0f}/{l['ttft_p50_ms']:<8.0f} | {t['ttft_p99_ms']:>8.0f}/{l['ttft_p99_ms']:<8.0f} | "
              f"{100 * t['kv_waste']:>7.2f}%/{100 * t['kv_waste_max']:>6.2f}%  {100 * t['sched_overhead']:>8.2f}%")
    print("RESULT " + json.dumps({"troupe": troupe, "llama_cpp": llama, "threads": args.threads}))


if __name__ == "__main__":
    main()
