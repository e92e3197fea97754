#!/usr/bin/env python3
"""Structured output's cost: decode speed with and without a grammar, troupe over loopback HTTP, in one run.

One `troupe serve` per model (--model may be repeated). Every request is a streamed chat completion
(POST /v1/chat/completions, stream:true) asking for a list of words, with the same prompts and the same
max_tokens (--max-tokens, default 200) in every variant:
  plain    unconstrained, end of generation ignored (ignore_eos), so it makes max_tokens tokens
  grammar  response_format json_schema: an array of 50-60 strings of 3-10 characters (minItems 50), so the
           output cannot end before ~150 tokens and most end by length at max_tokens; one schema, compiled
           by the warm-up (what the server's grammar cache gives every later request), which also puts
           every prompt in the prefix cache
  cold     (--cold) the same schema with a new description per request: a compile and cold masks each time
Two points: 1 stream (--single-requests requests one after another) and N concurrent streams (--streams,
default 32, distinct prompts), the variants alternating over --rounds rounds (which goes first
alternates too: this machine moves by +-15% between runs).

Per stream, decode tok/s = (completion_tokens - 1) / (time of its last token - time of its first token);
a point's "decode/stream" is the mean over its streams (at 1 stream: all tokens after the first over all
such time), "total" is all output tokens over the wall time of the point (prefill and ends included).
The table gives each variant's median over rounds and the median of the per-round ratios
grammar / plain (goal: >= 0.90), and per variant the mean step time and sequences per step (from the
server's /metrics) and the share of --threads cores the server process got (from /proc); "tok/server
CPU-s" is output tokens per CPU-second the server used, which moves less than wall-clock rates when
other work shares the cores (the grammar's cost is CPU work, so it shows there too). A point where
that share was under --min-cpu-share for some variant ran beside other work: it is run again (all its
variants, at most --busy-retries times), and a warning says so if it stays. One line "RESULT {json}"
carries everything, per round too.

Usage: bench/structured_output.py [--model M ...] [--threads T] [--streams 32] [--rounds 3]
                                  [--max-tokens 200] [--single-requests 3] [--cold] [--troupe-args "..."]
                                  [--min-cpu-share 0.85] [--busy-retries 2]
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from compare_serving import free_port, read_metrics, wait_healthy  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

TOPICS = ["animals", "fruits", "cities", "colours", "first names", "countries", "tools", "sports", "vegetables",
          "flowers", "birds", "fish", "trees", "rivers", "planets and moons", "musical instruments", "car brands",
          "board games", "dances", "spices", "metals", "insects", "clothes", "drinks", "desserts", "jobs",
          "languages", "mountains", "verbs", "adjectives", "kitchen items", "emotions"]

WORDS = {"type": "array", "items": {"type": "string", "minLength": 3, "maxLength": 10}, "minItems": 50,
         "maxItems": 60}


def prompt(i):
    topic = TOPICS[i % len(TOPICS)]
    repeat = f" (list number {i // len(TOPICS) + 1})" if i >= len(TOPICS) else ""
    return f"List sixty different {topic}{repeat} as a JSON array of short strings."


def request_body(variant, i, max_tokens, nonce):
    body = {"model": "m", "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if variant == "plain":
        body["ignore_eos"] = True
    else:
        schema = dict(WORDS)
        if variant == "cold":
            schema["description"] = f"request {nonce}-{i}"  # a new schema text: compiled, masks cold
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "words", "schema": schema}}
    return body


def one_stream(port, body):
    """One streamed chat completion: {tokens, first, last, start, end, finish, text}, times monotonic."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:500]!r}")
    first = last = None
    tokens = finish = None
    text = []
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        msg = json.loads(data)
        if msg.get("error"):
            raise RuntimeError(f"error in the stream: {msg['error']}")
        if msg.get("usage"):
            tokens = msg["usage"].get("completion_tokens")
        for c in msg.get("choices") or []:
            piece = (c.get("delta") or {}).get("content")
            if piece:
                now = time.monotonic()
                first = first or now
                last = now
                text.append(piece)
            finish = c.get("finish_reason") or finish
    conn.close()
    return {"tokens": tokens or 0, "first": first, "last": last, "start": start, "end": time.monotonic(),
            "finish": finish, "text": "".join(text)}


def check_output(variant, r):
    """A grammar's output that stopped must be a valid instance; one cut by length, a prefix of one."""
    if variant == "plain" or r["finish"] != "stop":
        return
    try:
        value = json.loads(r["text"])
    except json.JSONDecodeError as e:
        raise RuntimeError(f"{variant}: a finished output is not JSON ({e}): {r['text']!r}")
    if not (isinstance(value, list) and 50 <= len(value) <= 60 and all(isinstance(v, str) for v in value)):
        raise RuntimeError(f"{variant}: a finished output does not match the schema: {r['text']!r}")


def decode_rate(r):
    span = (r["last"] or 0) - (r["first"] or 0)
    return (r["tokens"] - 1) / span if span > 0 and r["tokens"] > 1 else 0.0


def metric(values, name):
    """The sum of a /metrics family's series (with any labels)."""
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


def cpu_seconds(pid):
    """User + system CPU time of a process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_point(server, variant, n, args, nonce):
    """n streams at once (n = 1: --single-requests one after another), with what the server's
    /metrics and its CPU time say about the point: mean step time, sequences per step, and the
    share of --threads cores the server got (well under 1: something else ran)."""
    proc, port = server
    before, cpu_before = read_metrics(port), cpu_seconds(proc.pid)
    if n == 1:
        results = []
        t0 = time.monotonic()
        for i in range(args.single_requests):
            results.append(one_stream(port, request_body(variant, i, args.max_tokens, nonce)))
        wall = time.monotonic() - t0
        decode_tokens = sum(max(r["tokens"] - 1, 0) for r in results)
        decode_s = sum((r["last"] or 0) - (r["first"] or 0) for r in results)
        per_stream = decode_tokens / decode_s if decode_s > 0 else 0.0
    else:
        results = [None] * n
        errors = []

        def one(i):
            try:
                results[i] = one_stream(port, request_body(variant, i, args.max_tokens, nonce))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        if errors:
            raise errors[0]
        per_stream = statistics.mean(decode_rate(r) for r in results)
    after, cpu_after = read_metrics(port), cpu_seconds(proc.pid)
    for r in results:
        check_output(variant, r)
    delta = {k: metric(after, k) - metric(before, k) for k in (
        "troupe_step_duration_seconds_sum", "troupe_step_duration_seconds_count", "troupe_batch_size_sequences_sum")}
    num_steps = max(delta["troupe_step_duration_seconds_count"], 1)
    return {"decode_tok_s": per_stream, "total_tok_s": sum(r["tokens"] for r in results) / wall,
            "mean_tokens": statistics.mean(r["tokens"] for r in results),
            "ended_by_length": sum(r["finish"] == "length" for r in results) / len(results),
            "ttft_p50_ms": 1000 * statistics.median((r["first"] or r["end"]) - r["start"] for r in results),
            "step_ms": 1000 * delta["troupe_step_duration_seconds_sum"] / num_steps,
            "seqs_per_step": delta["troupe_batch_size_sequences_sum"] / num_steps,
            "cpu_share": (cpu_after - cpu_before) / (wall * args.threads) if cpu_before is not None else 0.0,
            "tok_per_cpu_s": (sum(r["tokens"] for r in results) / (cpu_after - cpu_before)
                              if cpu_before is not None and cpu_after > cpu_before else 0.0)}


def serve(args, model, log):
    port = free_port()
    cmd = [args.troupe, "serve", "--model", model, "--threads", str(args.threads), "--port", str(port),
           "--max-num-seqs", str(max(args.streams, 1)), *args.troupe_args.split()]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    wait_healthy(port, proc, f"troupe ({' '.join(cmd)}; log {log.name})")
    return proc, port


def bench_model(args, model, variants, points):
    """{point: {variant: {metric: [per round]}}} for one model."""
    runs = {p: {v: {} for v in variants} for p in points}
    with tempfile.NamedTemporaryFile(prefix="troupe-structured-", suffix=".log", delete=False) as log:
        proc, port = serve(args, model, log)
        server = (proc, port)
        try:
            # Warm-up: the grammar compiled and its masks made once, and every prompt in the prefix
            # cache, so that whichever variant runs first does not prefill for the others.
            for v in variants:
                one_stream(port, request_body(v, 0, args.max_tokens, "warm-up"))
            for i in range(max(points)):
                one_stream(port, request_body("plain", i, 1, "warm-up"))
            for rnd in range(args.rounds):
                order = variants if rnd % 2 == 0 else variants[::-1]
                for n in points:
                    # The variants of a point are compared with each other: when one of them ran
                    # beside other work (the server got under --min-cpu-share of its cores), the
                    # whole point is run again, at most --busy-retries times.
                    for attempt in range(args.busy_retries + 1):
                        measured = {}
                        for v in order:
                            measured[v] = run_point(server, v, n, args, f"{rnd}-{n}-{attempt}")
                            print(f"{os.path.basename(model)} round {rnd + 1} {n} stream(s) {v}: "
                                  + ", ".join(f"{k} {x:.2f}" for k, x in measured[v].items()), file=sys.stderr)
                        if min(m["cpu_share"] for m in measured.values()) >= args.min_cpu_share:
                            break
                        if attempt < args.busy_retries:
                            print(f"  the machine was busy: {n} stream(s) again", file=sys.stderr)
                    for v, m in measured.items():
                        for k, x in m.items():
                            runs[n][v].setdefault(k, []).append(x)
        finally:
            proc.terminate()
            proc.wait()
    return runs


def summarize(runs, variants):
    """Medians over rounds, and the median of per-round ratios of each variant over plain."""
    out = {}
    for n, by_variant in runs.items():
        point = out[n] = {}
        for v, metrics in by_variant.items():
            point[v] = {k: statistics.median(xs) for k, xs in metrics.items()}
            point[v]["rounds"] = metrics
            if v == "plain":
                continue
            for k in ("decode_tok_s", "total_tok_s", "tok_per_cpu_s"):
                base = by_variant["plain"][k]
                ratios = [x / b for x, b in zip(metrics[k], base) if b > 0]
                point[v][f"{k}_ratio"] = statistics.median(ratios) if ratios else 0.0
    return out


def print_table(model, summary, variants, args):
    print(f"\n{os.path.basename(model)}: {args.max_tokens} tokens at most per request, greedy, {args.threads} threads, "
          f"{args.rounds} alternating rounds (medians; ratio = median of per-round ratios, goal >= 0.90)")
    header = f"{'point':>10} {'metric':>16} | {'plain':>8}"
    for v in variants[1:]:
        header += f" {v:>8} {v + '/plain':>11}"
    print(header)
    for n, point in summary.items():
        label = "1 stream" if n == 1 else f"{n} streams"
        for k, name in (("decode_tok_s", "decode/stream"), ("total_tok_s", "total tok/s"),
                        ("tok_per_cpu_s", "tok/server CPU-s")):
            line = f"{label:>10} {name:>16} | {point['plain'][k]:>8.1f}"
            for v in variants[1:]:
                ratio = point[v][f"{k}_ratio"]
                line += f" {point[v][k]:>8.1f} {ratio:>10.2f}{'!' if ratio < 0.90 else ' '}"
            print(line)
        for v in variants:
            x = point[v]
            print(f"{label:>10} {v:>16} | {x['mean_tokens']:.0f} tokens per request ({100 * x['ended_by_length']:.0f}% "
                  f"by length), TTFT p50 {x['ttft_p50_ms']:.0f} ms, step {x['step_ms']:.2f} ms with "
                  f"{x['seqs_per_step']:.1f} sequences, server CPU {100 * x['cpu_share']:.0f}% of {args.threads} cores")


def warn_if_busy(summary, args):
    shares = [x for point in summary.values() for v in point.values() for x in v["rounds"]["cpu_share"]]
    if shares and min(shares) < args.min_cpu_share:
        print(f"WARNING: in some points the server got only {100 * min(shares):.0f}% of {args.threads} cores (the "
              f"most: {100 * max(shares):.0f}%): other work ran beside it; see the rounds on stderr and in RESULT")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="GGUF file; repeat for several (default SmolLM2-135M)")
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--streams", type=int, default=32, help="the concurrent point (0: only 1 stream)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--single-requests", type=int, default=3, help="requests in a round of the 1-stream point")
    ap.add_argument("--cold", action="store_true", help="add the variant with a new schema per request")
    ap.add_argument("--min-cpu-share", type=float, default=0.85,
                    help="a point where the server got less of its cores than this ran beside other work")
    ap.add_argument("--busy-retries", type=int, default=2, help="runs of such a point again, at most")
    ap.add_argument("--troupe-args", default="", help="more `troupe serve` flags")
    args = ap.parse_args()
    models = args.model or [os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")]
    variants = ["plain", "grammar"] + (["cold"] if args.cold else [])
    points = [1] + ([args.streams] if args.streams > 1 else [])

    result = {"threads": args.threads, "max_tokens": args.max_tokens, "rounds": args.rounds, "models": {}}
    for model in models:
        summary = summarize(bench_model(args, model, variants, points), variants)
        result["models"][os.path.basename(model)] = {str(n): s for n, s in summary.items()}
        print_table(model, summary, variants, args)
        warn_if_busy(summary, args)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
