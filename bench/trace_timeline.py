#!/usr/bin/env python3
"""Draws the step timeline that bench_sched_overhead --trace recorded.

Usage: bench/trace_timeline.py TRACE.csv [--from-step N] [--steps K] [--us-per-char U]

Prints, from the measured spans (lane, thread, begin_us, end_us):
  1. per step (one backend step to the next), the medians of: the worker's idle gap before
     the step, and the busy time of the scheduler, the fan-out actors, the request actors
     and the batcher, and how many threads ran something;
  2. a timeline of K steps, one row per thread, one character per U microseconds, showing
     which actor ran most of that slice on that thread:
       B backend step   w worker around it (plan_state, KV moves, reply)
       S scheduler      F fan-out      r request actors      b batcher      . idle
"""
import argparse
import bisect
import csv
import statistics
import sys

LETTERS = {"backend": "B", "worker": "w", "scheduler": "S", "fan_out": "F", "request": "r", "batcher": "b"}


def load(path):
    spans = []
    with open(path) as f:
        for row in csv.DictReader(f):
            spans.append((row["lane"], int(row["thread"]), float(row["begin_us"]), float(row["end_us"])))
    return spans


def busy_between(spans, lane, a, b):
    total = 0.0
    for name, _, s, e in spans:
        if name == lane:
            total += max(0.0, min(e, b) - max(s, a))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--from-step", type=int, default=100)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--us-per-char", type=float, default=50.0)
    args = ap.parse_args()
    spans = load(args.trace)
    steps = [s for s in spans if s[0] == "backend"]
    if len(steps) < args.from_step + args.steps + 1:
        sys.exit(f"{args.trace}: only {len(steps)} backend steps recorded")

    gaps, per_lane, threads_used = [], {k: [] for k in ("scheduler", "fan_out", "request", "batcher", "worker")}, []
    for i in range(1, len(steps)):
        gaps.append(steps[i][2] - steps[i - 1][3])
    # Spans are sorted by begin; a span starts at most `longest` before it ends.
    begins = [sp[2] for sp in spans]
    longest = max(sp[3] - sp[2] for sp in spans)
    for i in range(1, len(steps)):
        a, b = steps[i - 1][2], steps[i][2]
        lo, hi = bisect.bisect_left(begins, a - longest), bisect.bisect_left(begins, b)
        local = [sp for sp in spans[lo:hi] if sp[3] > a]
        for lane in per_lane:
            busy = sum(max(0.0, min(e, b) - max(s, a)) for n, _, s, e in local if n == lane)
            if lane == "worker":
                busy -= sum(max(0.0, min(e, b) - max(s, a)) for n, _, s, e in local if n == "backend")
            per_lane[lane].append(busy)
        threads_used.append(len({t for _, t, _, _ in local}))
    step_us = statistics.median(steps[i][2] - steps[i - 1][2] for i in range(1, len(steps)))
    print(f"{args.trace}: {len(steps)} steps in {(spans[-1][3] - spans[0][2]) / 1e6:.2f} s, "
          f"median step start to step start {step_us:.0f} us")
    print(f"  worker idle between steps      p50 {statistics.median(gaps):8.1f} us   "
          f"p90 {sorted(gaps)[int(0.9 * (len(gaps) - 1))]:8.1f} us")
    for lane, values in per_lane.items():
        label = "worker outside the backend" if lane == "worker" else f"{lane} busy"
        print(f"  {label:<30} p50 {statistics.median(values):8.1f} us per step")
    print(f"  threads running something      p50 {statistics.median(threads_used):8.0f} per step")

    t0 = steps[args.from_step][2] - 2 * args.us_per_char
    t1 = steps[args.from_step + args.steps][2] + 2 * args.us_per_char
    n = int((t1 - t0) / args.us_per_char) + 1
    rows = {}
    for name, thread, s, e in spans:
        if e < t0 or s > t1:
            continue
        row = rows.setdefault(thread, [dict() for _ in range(n)])
        for c in range(max(0, int((s - t0) / args.us_per_char)), min(n, int((e - t0) / args.us_per_char) + 1)):
            a, b = t0 + c * args.us_per_char, t0 + (c + 1) * args.us_per_char
            overlap = max(0.0, min(e, b) - max(s, a))
            row[c][name] = row[c].get(name, 0.0) + overlap
    print(f"\n  timeline of steps {args.from_step}..{args.from_step + args.steps - 1}, "
          f"{args.us_per_char:.0f} us per character, one row per thread")
    for thread in sorted(rows):
        line = []
        for cell in rows[thread]:
            if not cell:
                line.append(".")
                continue
            if "backend" in cell:
                cell = dict(cell)
                cell["worker"] = cell.get("worker", 0.0) - cell["backend"]
            name = max(cell, key=cell.get)
            line.append(LETTERS[name] if cell[name] > 0.05 * args.us_per_char else ".")
        print(f"  thread {thread:>2} |{''.join(line)}|")


if __name__ == "__main__":
    main()
