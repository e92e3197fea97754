#!/usr/bin/env python3
"""Runtime overhead before and after, in one run: two bench_sched_overhead binaries (the
"before" one built from an older commit, the "after" one from this tree) alternate on the
same machine, at each stand-in step time, and the medians of the rounds are printed side by
side with their ratio.

Usage: bench/sched_overhead_compare.py --before BIN --after BIN [--model GGUF]
          [--step-us 2000,500] [--streams 1,4,16,64,256,1024] [--seconds 3] [--rounds 3]
          [--gen-tokens 32] [--before-args "..."] [--after-args "..."]

--gen-tokens: output tokens per request (each finishes and is replaced by a new one), both
binaries. --before-args / --after-args: extra flags for one side, e.g. the same binary as
both, with --before-args=--no-steady-decodes.

The after binary runs with --async both (synchronous and asynchronous scheduling); a
before binary that does not know --async runs as it is (it schedules synchronously).

--loop-only: instead, the plain loop alone (scheduler_policy, the worker's plan_state and a
stand-in backend that answers at once, no actors), both binaries built with --loop-only;
prints the loop's cost per step before -> after, split into plan, worker and results.
"""
import argparse
import json
import shlex
import statistics
import subprocess
import sys


def run(binary, model, step_us, streams, seconds, extra):
    cmd = [binary, "--model", model, "--step-us", str(step_us), "--streams", streams, "--seconds", str(seconds)] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        if line.startswith("RESULT ") and '"streams"' in line:
            r = json.loads(line[len("RESULT "):])
            rows[(r.get("async", False), r["streams"])] = r
    return rows


def knows_async(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True)
    return "--async" in out.stdout + out.stderr


def run_loop(binary, model, streams, seconds, extra):
    cmd = [binary, "--model", model, "--loop-only", "--step-us", "0", "--streams", streams, "--seconds", str(seconds)] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {r["streams"]: r for r in (json.loads(l[len("RESULT "):]) for l in out.splitlines()
                                      if l.startswith("RESULT ") and '"loop_only"' in l)}


def loop_only(args):
    before, after = [], []
    for _ in range(args.rounds):  # alternating, so that drift hits both alike
        before.append(run_loop(args.before, args.model, args.streams, args.seconds, args.before_extra))
        after.append(run_loop(args.after, args.model, args.streams, args.seconds, args.after_extra))
    keys = ["loop_overhead_us", "loop_plan_us", "loop_worker_us", "loop_results_us"]
    print(f"plain loop, stand-in backend answering at once, {args.gen_tokens} output tokens per request; median of "
          f"{args.rounds} alternating rounds of {args.seconds:g} s per point; us per step, before -> after")
    print(f"{'streams':>7} | {'loop':>17} | {'plan':>17} | {'worker':>17} | {'results':>17} | {'ns/stream after':>15}"
          f" | {'after: lane/step':>16} {'others/step':>11}")
    for n in [int(x) for x in args.streams.split(",")]:
        med = lambda rounds, k: statistics.median(r[n].get(k, float("nan")) for r in rounds)
        cells = [f"{med(before, k):>7.1f} -> {med(after, k):>6.1f}" for k in keys]
        print(f"{n:>7} | " + " | ".join(cells) + f" | {1000 * med(after, keys[0]) / n:>15.1f}"
              f" | {med(after, 'lane_per_step'):>16.1f} {med(after, 'one_by_one_per_step'):>11.1f}")
        print("RESULT " + json.dumps({"streams": n, **{"before_" + k: med(before, k) for k in keys},
                                      **{"after_" + k: med(after, k) for k in keys}}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--step-us", default="2000,500")
    ap.add_argument("--streams", default="1,4,16,64,256,1024")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop-only", action="store_true")
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--before-args", default="")
    ap.add_argument("--after-args", default="")
    args = ap.parse_args()
    common = ["--gen-tokens", str(args.gen_tokens)]
    args.before_extra = common + shlex.split(args.before_args)
    args.after_extra = common + shlex.split(args.after_args)
    if args.loop_only:
        return loop_only(args)
    before_extra = (["--async", "sync"] if knows_async(args.before) else []) + args.before_extra
    for step_us in [int(x) for x in args.step_us.split(",")]:
        before, after = [], []
        for _ in range(args.rounds):  # alternating, so that drift hits both alike
            before.append(run(args.before, args.model, step_us, args.streams, args.seconds, before_extra))
            after.append(run(args.after, args.model, step_us, args.streams, args.seconds, ["--async", "both"] + args.after_extra))
        print(f"\nstand-in step {step_us} us; median of {args.rounds} alternating rounds of {args.seconds:g} s per point")
        print(f"{'streams':>7} | {'before: overhead':>16} {'gap p50':>8} | {'after sync':>10} {'gap p50':>8} |"
              f" {'after async':>11} {'gap p50':>8} {'sched us':>8} {'loop us':>8} | {'async/before':>12}")
        for n in [int(x) for x in args.streams.split(",")]:
            def med(rounds, is_async, key):
                vals = [r[(is_async, n)][key] for r in rounds if (is_async, n) in r and key in r[(is_async, n)]]
                return statistics.median(vals) if vals else float("nan")
            b = med(before, False, "overhead_pct")
            s = med(after, False, "overhead_pct")
            a = med(after, True, "overhead_pct")
            print(f"{n:>7} | {b:>15.1f}% {med(before, False, 'gap_p50_us'):>8.1f} | {s:>9.1f}% {med(after, False, 'gap_p50_us'):>8.1f} |"
                  f" {a:>10.1f}% {med(after, True, 'gap_p50_us'):>8.1f} {med(after, True, 'scheduler_us'):>8.1f}"
                  f" {med(after, True, 'loop_overhead_us'):>8.1f} | {a / b if b else float('nan'):>12.2f}")
            print("RESULT " + json.dumps({"step_us": step_us, "streams": n, "before_pct": b, "after_sync_pct": s,
                                          "after_async_pct": a}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
