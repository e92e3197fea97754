#!/usr/bin/env python3
"""The router's cost and the fleet's scaling: `troupe serve` direct against `troupe serve --replica` -> `troupe worker`, in one run.

Real model (--mode real): the same closed-loop load against three set-ups, all started once and kept up, driven in
turn, their order rotating over --rounds rounds (so the machine's drift hits all of them):
  direct   `troupe serve --threads T` (the engine in the front door's process)
  router1  `troupe serve --replica A` -> one `troupe worker --threads T` (same engine flags)
  router2  `troupe serve --replica A --replica B` -> two workers with --threads 1 each (on a 2-core machine they
           share the same two cores as direct's one engine: no scaling is expected there, only the cost)
Load: --streams concurrent streams, each sending its next request when the previous one ends, --requests per
stream (or for --duration seconds); streamed completions (POST /v1/completions, stream:true) of a fixed prompt
set (token ids, --prompt-tokens each), greedy, ignore_eos and --max-tokens, so every output has the same length.
Per set-up: output tok/s (all tokens over the wall time), inter-token latency p50/p90 (gaps between a stream's
consecutive chunks), TTFT p50; ratios router/direct are medians of per-round ratios, and "added p50 per token" is
the median of per-round differences of the p50 inter-token latency.

Stand-in (--mode stand-in): every engine is the fixed-time stand-in backend (--stand-in-step-us, no forward pass,
made-up tokens) with --max-num-seqs fixed, so a replica's capacity is max_num_seqs tokens per step whatever the CPU.
One serve per N in --replicas routes to the first N of max(N) workers (started once; 2 * max_num_seqs * N
streams), plus a direct stand-in serve for reference. Streamed requests, a prompt of its own each (a repeated prompt
would meet the router's prefix affinity, which may leave one replica a few requests more), for
--stand-in-duration seconds per point; tok/s counts the tokens that arrive after --warmup-s and before the streams
stop sending (every stream busy all along), so neither the first wave nor the last drain weighs on it. The client
parses only the usage and error chunks. --stand-in-non-streaming: --stand-in-requests per stream instead, all
tokens over the wall time (drain included: an uneven last wave shows there).
Reported: tok/s, scaling = tok/s / (N * tok/s at N=1) (median of per-round ratios), and whether it is >= 0.9.

Contention: per point the CPU time of this machine not spent by troupe's processes or this client (from
/proc/stat and /proc/PID/stat) as a share of all cores, and the load average. A round where some point saw more
than --max-other-share of the machine busy elsewhere is run again (at most --busy-retries times) and flagged in the
table if it stays. CPU-ms per 1,000 output tokens of the front door (serve) and of the workers say where the time
goes. One line "RESULT {json}" carries everything, per round too.

Usage: bench/replicas.py [--mode real|stand-in|both] [--model M] [--threads 2] [--streams 16] [--requests 4]
                         [--duration S] [--max-tokens 64] [--rounds 3] [--step-us 20000] [--max-num-seqs 8]
                         [--replicas 1,2,4,8] [--stand-in-duration 15] [--troupe build/troupe]
"""
import argparse
import http.client
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from compare_serving import free_port, percentile, prompt_ids, wait_healthy  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NUM_CPUS = os.cpu_count() or 1


# ---- processes -----------------------------------------------------------------------------------------------

class fleet:
    """The troupe processes this script started (killed by pid at the end), with one log file."""

    def __init__(self, args):
        self.args = args
        self.procs = []
        self.log = tempfile.NamedTemporaryFile(prefix="troupe-replicas-", suffix=".log", delete=False)

    def serve(self, engine_flags, replicas=()):
        port = free_port()
        cmd = [self.args.troupe, "serve", "--model", self.args.model, "--port", str(port), *engine_flags]
        for r in replicas:
            cmd += ["--replica", r]
        proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        self.procs.append(proc)
        wait_healthy(port, proc, f"troupe serve ({' '.join(cmd)}; log {self.log.name})")
        return proc, port

    def worker(self, engine_flags):
        cmd = [self.args.troupe, "worker", "--model", self.args.model, "--listen", "127.0.0.1:0", *engine_flags]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline()  # "troupe: worker MODEL listening on HOST:PORT"
        if " listening on " not in line:
            sys.exit(f"troupe worker did not start ({' '.join(cmd)}; log {self.log.name}): {line!r}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # nothing more is expected; never block it
        return proc, line.rsplit(" ", 1)[1].strip()

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def cpu_seconds(pid):
    """User + system CPU time of a process, all its threads (Linux /proc), or 0."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_busy_seconds():
    """CPU-seconds all cores spent on anything but idle and iowait since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


# ---- load ------------------------------------------------------------------------------------------------------

def prompt_set(args):
    return [prompt_ids(f"replicas-{i}", args.prompt_tokens) for i in range(args.num_prompts)]


def one_request(conn, prompt, args, stream):
    """One completion on a kept-alive connection: (tokens, send time, [chunk arrival times])."""
    body = {"model": "m", "prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    start = time.monotonic()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    if not stream:
        msg = json.loads(resp.read())
        return msg["usage"]["completion_tokens"], start, [time.monotonic()]
    arrivals = []
    tokens = None
    for raw in resp:  # to the end of the body, so that the connection can carry the next request
        if not raw.startswith(b"data:"):
            continue
        # Only the rare chunks are parsed (an error, the usage): at thousands of chunks a second the client's
        # work per chunk must stay small beside the server's.
        if b'"text":"' in raw and b'"text":""' not in raw:
            arrivals.append(time.monotonic())
        elif b'"usage":{' in raw or b'"error"' in raw:
            msg = json.loads(raw[5:])
            if msg.get("error"):
                raise RuntimeError(f"error in the stream: {msg['error']}")
            tokens = msg["usage"]["completion_tokens"]
    return (tokens if tokens is not None else len(arrivals)), start, arrivals


def closed_loop(port, num_streams, prompts, args, stream, num_requests, duration_s):
    """num_streams streams, each sending its next request as the previous one ends: num_requests each, or until
    duration_s has passed. prompts: a list (stream i's j-th request takes prompt i + j * num_streams, modulo), or a
    function (i, j) -> prompt. Returns (start time, wall seconds, [(tokens, start, arrivals)])."""
    prompt_of = prompts if callable(prompts) else (lambda i, j: prompts[(i + j * num_streams) % len(prompts)])
    results = [[] for _ in range(num_streams)]
    errors = []
    barrier = threading.Barrier(num_streams + 1)
    deadline = [0.0]

    def run(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        barrier.wait()
        try:
            j = 0
            while (time.monotonic() < deadline[0]) if duration_s else (j < num_requests):
                results[i].append(one_request(conn, prompt_of(i, j), args, stream))
                j += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(num_streams)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    deadline[0] = t0 + (duration_s or 0)
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    if errors:
        raise errors[0]
    return t0, wall, [r for rs in results for r in rs]


def measure(port, num_streams, prompts, args, stream, pids_serve, pids_workers, num_requests, duration_s):
    """One point: throughput, latencies, and where the CPU went (serve, workers, elsewhere on the machine)."""
    serve0 = sum(cpu_seconds(p) for p in pids_serve)
    workers0 = sum(cpu_seconds(p) for p in pids_workers)
    client0 = sum(os.times()[:2])
    busy0 = machine_busy_seconds()
    t0, wall, results = closed_loop(port, num_streams, prompts, args, stream, num_requests, duration_s)
    serve_s = sum(cpu_seconds(p) for p in pids_serve) - serve0
    workers_s = sum(cpu_seconds(p) for p in pids_workers) - workers0
    client_s = sum(os.times()[:2]) - client0
    busy_s = machine_busy_seconds() - busy0
    tokens = sum(r[0] for r in results)
    gaps = [b - a for r in results for a, b in zip(r[2], r[2][1:])]
    ttft = [r[2][0] - r[1] for r in results if r[2]]
    tok_s = tokens / wall
    if stream and duration_s > args.warmup_s:
        # Steady state: the tokens that arrived between the warm-up's end and the moment the streams stopped
        # sending (all of them busy all along), not the first wave's start nor the last one's drain.
        begin, end = t0 + args.warmup_s, t0 + duration_s
        num_chunks = sum(len(r[2]) for r in results)
        in_window = sum(begin <= a < end for r in results for a in r[2])
        tok_s = in_window * (tokens / max(num_chunks, 1)) / (end - begin)
    return {"tok_s": tok_s, "tokens": tokens, "wall_s": wall, "num_requests": len(results),
            "itl_p50_ms": 1000 * percentile(gaps, 0.5), "itl_p90_ms": 1000 * percentile(gaps, 0.9),
            "ttft_p50_ms": 1000 * percentile(ttft, 0.5),
            "serve_cpu_ms_per_ktok": 1e6 * serve_s / max(tokens, 1),
            "workers_cpu_ms_per_ktok": 1e6 * workers_s / max(tokens, 1),
            "client_cpu_share": client_s / (wall * NUM_CPUS),
            "troupe_cpu_share": (serve_s + workers_s) / (wall * NUM_CPUS),
            "other_share": max(0.0, busy_s - serve_s - workers_s - client_s) / (wall * NUM_CPUS),
            "loadavg": os.getloadavg()[0]}


# ---- the two modes ---------------------------------------------------------------------------------------------

def run_rounds(setups, order_of, args, label):
    """Each round drives every set-up once, in a rotating order; a round where some point ran beside other work is
    run again (at most --busy-retries times). Returns {name: {metric: [per round]}} and the flagged rounds."""
    runs = {name: {} for name in setups}
    flagged = []
    for rnd in range(args.rounds):
        for attempt in range(args.busy_retries + 1):
            measured = {}
            for name in order_of(rnd):
                measured[name] = setups[name]()
                m = measured[name]
                print(f"{label} round {rnd + 1} {name}: {m['tok_s']:.1f} tok/s, itl p50 {m['itl_p50_ms']:.2f} ms, "
                      f"serve {m['serve_cpu_ms_per_ktok']:.0f} / workers {m['workers_cpu_ms_per_ktok']:.0f} CPU-ms "
                      f"per 1k tok, elsewhere {100 * m['other_share']:.0f}% of the machine, load {m['loadavg']:.1f}",
                      file=sys.stderr)
            busy = max(m["other_share"] for m in measured.values()) > args.max_other_share
            if not busy:
                break
            if attempt < args.busy_retries:
                print(f"{label} round {rnd + 1}: other work shared the cores; running the round again", file=sys.stderr)
        if busy:
            flagged.append(rnd + 1)
        for name, m in measured.items():
            for k, x in m.items():
                runs[name].setdefault(k, []).append(x)
    return runs, flagged


def rotate(names):
    return lambda rnd: names[rnd % len(names):] + names[:rnd % len(names)]


def median_ratio(xs, bases):
    ratios = [x / b for x, b in zip(xs, bases) if b > 0]
    return statistics.median(ratios) if ratios else 0.0


def engine_flags(args, threads, extra=()):
    return ["--threads", str(threads), *extra, *args.troupe_args.split()]


def bench_real(args, procs):
    prompts = prompt_set(args)
    flags = engine_flags(args, args.threads)
    direct = procs.serve(flags)
    w1 = procs.worker(flags)
    router1 = procs.serve(flags, [w1[1]])
    w2 = [procs.worker(engine_flags(args, 1)) for _ in range(2)]
    router2 = procs.serve(flags, [w[1] for w in w2])
    pids = {"direct": ([direct[0].pid], []), "router1": ([router1[0].pid], [w1[0].pid]),
            "router2": ([router2[0].pid], [w[0].pid for w in w2])}
    ports = {"direct": direct[1], "router1": router1[1], "router2": router2[1]}
    for name, port in ports.items():  # warm-up: every prompt once (the prefix caches see them all alike)
        closed_loop(port, args.streams, prompts, args, True, max(1, args.num_prompts // args.streams), 0)

    def setup(name):
        return lambda: measure(ports[name], args.streams, prompts, args, True, *pids[name], args.requests,
                               args.duration)

    names = ["direct", "router1", "router2"]
    runs, flagged = run_rounds({n: setup(n) for n in names}, rotate(names), args, "real")
    out = {}
    for name in names:
        out[name] = {k: statistics.median(xs) for k, xs in runs[name].items()}
        out[name]["rounds"] = runs[name]
        if name != "direct":
            out[name]["tok_s_ratio"] = median_ratio(runs[name]["tok_s"], runs["direct"]["tok_s"])
            out[name]["added_itl_p50_ms"] = statistics.median(
                a - b for a, b in zip(runs[name]["itl_p50_ms"], runs["direct"]["itl_p50_ms"]))
    return out, flagged


def bench_stand_in(args, procs):
    # A prompt of its own per request (the prompt set repeats prompts, and the router's prefix affinity keeps a
    # repeated prompt on its replica within a slack of 4 requests: an imbalance that a closed loop of fixed work
    # pays for in its last wave), unless --stand-in-prompt-set.
    serial = itertools.count()

    def unique_prompts(i, j):
        return prompt_ids(f"stand-in-{next(serial)}", args.prompt_tokens)

    prompts = prompt_set(args) if args.stand_in_prompt_set else unique_prompts
    counts = sorted(args.replica_counts)
    flags = engine_flags(args, 1, ["--stand-in-step-us", str(args.step_us), "--max-num-seqs", str(args.max_num_seqs)])
    workers = [procs.worker(flags) for _ in range(max(counts))]
    direct = procs.serve(flags)
    serves = {n: procs.serve(engine_flags(args, 1), [w[1] for w in workers[:n]]) for n in counts}
    all_workers = [w[0].pid for w in workers]
    setups = {}

    def point(port, serve_pid, worker_pids, n):
        streams = 2 * args.max_num_seqs * n
        return lambda: measure(port, streams, prompts, args, not args.stand_in_non_streaming, [serve_pid],
                               worker_pids, args.stand_in_requests,
                               0 if args.stand_in_non_streaming else args.stand_in_duration)

    setups["direct"] = point(direct[1], direct[0].pid, [], 1)
    for n in counts:
        setups[f"N={n}"] = point(serves[n][1], serves[n][0].pid, all_workers[:n], n)
    names = list(setups)
    for n in counts:  # warm-up: every replica connected and through one request
        closed_loop(serves[n][1], 2 * args.max_num_seqs * n, prompts, args, not args.stand_in_non_streaming, 1, 0)
    runs, flagged = run_rounds(setups, rotate(names), args, "stand-in")
    base = runs[f"N={counts[0]}"]["tok_s"]
    out = {}
    for n in counts:
        name = f"N={n}"
        out[name] = {k: statistics.median(xs) for k, xs in runs[name].items()}
        out[name]["rounds"] = runs[name]
        out[name]["num_replicas"] = n
        out[name]["scaling"] = median_ratio(runs[name]["tok_s"], [b * n / counts[0] for b in base])
    out["direct"] = {k: statistics.median(xs) for k, xs in runs["direct"].items()}
    out["direct"]["rounds"] = runs["direct"]
    out["direct"]["router1_ratio"] = median_ratio(base, runs["direct"]["tok_s"]) if counts[0] == 1 else None
    return out, flagged


# ---- output ----------------------------------------------------------------------------------------------------

def print_real(out, flagged, args):
    print(f"\nreal model {os.path.basename(args.model)}: {args.streams} streams, closed loop, "
          f"{args.max_tokens} tokens per request (greedy, ignore_eos), {args.prompt_tokens}-token prompts, "
          f"{args.threads} threads; {NUM_CPUS} cores on this machine; medians of {args.rounds} rounds, "
          f"ratios = median of per-round ratios")
    print(f"{'set-up':>8} | {'tok/s':>7} {'/direct':>8} | {'ITL p50':>8} {'p90':>7} {'added p50':>9} | "
          f"{'TTFT p50':>8} | {'serve':>6} {'workers':>7} CPU-ms/1k tok | {'client':>6} | elsewhere")
    for name in ("direct", "router1", "router2"):
        x = out[name]
        ratio = f"{x['tok_s_ratio']:>8.3f}" if name != "direct" else f"{'':>8}"
        added = f"{x['added_itl_p50_ms']:>+9.2f}" if name != "direct" else f"{'':>9}"
        print(f"{name:>8} | {x['tok_s']:>7.1f} {ratio} | {x['itl_p50_ms']:>6.2f}ms {x['itl_p90_ms']:>5.2f}ms "
              f"{added} | {x['ttft_p50_ms']:>6.0f}ms | {x['serve_cpu_ms_per_ktok']:>6.0f} "
              f"{x['workers_cpu_ms_per_ktok']:>7.0f}              | {100 * x['client_cpu_share']:>5.0f}% | "
              f"{100 * max(x['rounds']['other_share']):.0f}% max")
    r1 = out["router1"]
    ratio = r1["tok_s_ratio"]
    per_round = ", ".join(f"{x / d:.3f}" for x, d in zip(r1["rounds"]["tok_s"], out["direct"]["rounds"]["tok_s"]))
    verdict = ("within 3%" if 0.97 <= ratio <= 1.03 else "NOT within 3% (slower)" if ratio < 0.97 else
               "above 1.03: the router is not slower, and this run's noise is larger than 3%")
    print(f"router1 / direct throughput {ratio:.3f} (per round: {per_round}): {verdict}; the router adds "
          f"{r1['added_itl_p50_ms']:+.2f} ms to the p50 time per token")
    print(f"router2: two workers with 1 thread each share this machine's {NUM_CPUS} cores with nothing gained: "
          f"no scaling is expected from it on {NUM_CPUS} cores (ratio {out['router2']['tok_s_ratio']:.3f}); "
          f"it shows the cost of a second process, not a fleet's capacity")
    if flagged:
        print(f"WARNING: real-model rounds {flagged} ran beside other work (more than "
              f"{100 * args.max_other_share:.0f}% of the machine busy elsewhere): their figures are less trustworthy")


def print_stand_in(out, flagged, args):
    counts = sorted(args.replica_counts)
    step_ms = args.step_us / 1000
    print(f"\nstand-in steps of {step_ms:g} ms, max_num_seqs {args.max_num_seqs} (capacity "
          f"{1000 * args.max_num_seqs / step_ms:.0f} tok/s per replica at most), {args.max_tokens} tokens per "
          f"request, {'non-streaming' if args.stand_in_non_streaming else 'streamed'}, "
          f"{'the repeating prompt set' if args.stand_in_prompt_set else 'a prompt of its own per request'}, "
          f"2*max_num_seqs*N streams; "
          f"{NUM_CPUS} cores; medians of {args.rounds} rounds")
    print(f"{'set-up':>8} | {'streams':>7} {'tok/s':>8} {'scaling':>8} {'>=0.9':>5} | {'serve':>6} {'workers':>7} "
          f"CPU-ms/1k tok | {'troupe CPU':>10} {'client':>6} | elsewhere")
    d = out["direct"]
    print(f"{'direct':>8} | {args.max_num_seqs * 2:>7} {d['tok_s']:>8.1f} {'':>8} {'':>5} | "
          f"{d['serve_cpu_ms_per_ktok']:>6.0f} {'':>7}               | {100 * d['troupe_cpu_share']:>9.0f}% "
          f"{100 * d['client_cpu_share']:>5.0f}% | {100 * max(d['rounds']['other_share']):.0f}% max")
    for n in counts:
        x = out[f"N={n}"]
        ok = "yes" if x["scaling"] >= 0.9 else "NO"
        print(f"{'N=' + str(n):>8} | {2 * args.max_num_seqs * n:>7} {x['tok_s']:>8.1f} {x['scaling']:>8.3f} {ok:>5} | "
              f"{x['serve_cpu_ms_per_ktok']:>6.0f} {x['workers_cpu_ms_per_ktok']:>7.0f}               | "
              f"{100 * x['troupe_cpu_share']:>9.0f}% {100 * x['client_cpu_share']:>5.0f}% | "
              f"{100 * max(x['rounds']['other_share']):.0f}% max")
    if d.get("router1_ratio"):
        print(f"N=1 through the router / direct stand-in serve: {d['router1_ratio']:.3f}")
    print("scaling = tok/s / (N * tok/s at N=1); CPU shares are of all cores")
    if flagged:
        print(f"WARNING: stand-in rounds {flagged} ran beside other work (more than "
              f"{100 * args.max_other_share:.0f}% of the machine busy elsewhere): their figures are less trustworthy")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="The module docstring (head of the file) says what is measured and how.")
    ap.add_argument("--mode", choices=("real", "stand-in", "both"), default="both")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--threads", type=int, default=NUM_CPUS, help="engine threads of direct and router1's worker")
    ap.add_argument("--streams", type=int, default=16, help="concurrent streams in the real-model mode")
    ap.add_argument("--requests", type=int, default=4, help="requests per stream per point, real model")
    ap.add_argument("--stand-in-requests", type=int, default=4, help="requests per stream per point, stand-in")
    ap.add_argument("--duration", type=float, default=0.0,
                    help="seconds per point instead of a number of requests (each stream ends its last one)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--num-prompts", type=int, default=64, help="distinct prompts in the fixed prompt set")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--step-us", type=int, default=20000, help="the stand-in step time")
    ap.add_argument("--max-num-seqs", type=int, default=8, help="each stand-in engine's sequences per step")
    ap.add_argument("--replicas", default="1,2,4,8", help="stand-in fleet sizes N")
    ap.add_argument("--stand-in-duration", type=float, default=15.0,
                    help="seconds per stand-in point (streamed: tok/s counts the tokens after --warmup-s)")
    ap.add_argument("--warmup-s", type=float, default=3.0, help="the start of a timed point that is not counted")
    ap.add_argument("--stand-in-non-streaming", action="store_true",
                    help="non-streaming requests in the stand-in mode, --stand-in-requests each: all tokens over "
                         "the wall time, first wave and last drain included")
    ap.add_argument("--stand-in-prompt-set", action="store_true",
                    help="the stand-in mode uses the real mode's repeating prompt set, not a prompt per request")
    ap.add_argument("--max-other-share", type=float, default=0.10,
                    help="a point where more of the machine than this was busy outside troupe and this client "
                         "ran beside other work")
    ap.add_argument("--busy-retries", type=int, default=1, help="runs of such a round again, at most")
    ap.add_argument("--troupe-args", default="", help="more engine flags for serve and every worker")
    args = ap.parse_args()
    args.replica_counts = [int(x) for x in args.replicas.split(",") if x.strip()]

    result = {"model": os.path.basename(args.model), "cpus": NUM_CPUS, "args": {k: v for k, v in vars(args).items()}}
    # SIGTERM ends the run like Ctrl-C: the processes started so far are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("replicas.py: terminated"))
    procs = fleet(args)
    try:
        if args.mode in ("real", "both"):
            out, flagged = bench_real(args, procs)
            print_real(out, flagged, args)
            result["real"] = {"setups": out, "flagged_rounds": flagged}
        procs.stop()
        procs = fleet(args)
        if args.mode in ("stand-in", "both"):
            out, flagged = bench_stand_in(args, procs)
            print_stand_in(out, flagged, args)
            result["stand_in"] = {"setups": out, "flagged_rounds": flagged}
    finally:
        procs.stop()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
