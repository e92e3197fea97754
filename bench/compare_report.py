#!/usr/bin/env python3
"""The arithmetic of bench/compare.sh: the arrival-rate search it runs against each server,
and the table of troupe / llama.cpp ratios it prints from troupe-load's result files.

  compare_report.py derive IN.json OUT.json [key=value ...]
      a copy of a workload with fields replaced (values are JSON: duration_s=5 closed_loop.users=4)
  compare_report.py merge OUT.json A.json B.json ...
      one troupe-load result file holding the runs of several
  compare_report.py search --load BIN --url URL --workload W.json --out R.json
                    [--start 1] [--max-rate 64] [--min-rate 0.125] [--bisect-steps 3] [--ttft-ms 2000]
      open-loop Poisson runs at rising rates (doubling, then bisecting) until it knows the
      highest rate whose requests all succeed with p99 time to first token under the limit
  compare_report.py report --troupe-closed A.json --troupe-rate B.json
                    --llama-closed C.json --llama-rate D.json [--troupe-rss-kb N] [--llama-rss-kb N]
                    [--markdown OUT.md]
      the ratio table (markdown) and one line "RESULT {json}"
"""
import argparse
import json
import os
import subprocess
import sys
import time

TTFT_LIMIT_MS = 2000.0


# ---- the rate search ------------------------------------------------------------------------

def point_passes(report, ttft_limit_ms=TTFT_LIMIT_MS):
    """A rate is sustained when every request sent succeeded and p99 TTFT is under the limit."""
    requests = report["requests"]
    if requests["ok"] == 0 or requests["failed"] > 0 or requests["ok"] + requests["cancelled"] != requests["sent"]:
        return False
    ttft = report["ttft_ms"]
    return ttft.get("count", 0) > 0 and ttft["p99"] < ttft_limit_ms


def bounds(history):
    """(lo, hi): the highest passing rate below the lowest failing one, and that failing rate.
    Either is None when no such point was measured yet."""
    fails = [rate for rate, ok in history if not ok]
    hi = min(fails) if fails else None
    passes = [rate for rate, ok in history if ok and (hi is None or rate < hi)]
    lo = max(passes) if passes else None
    return lo, hi


def next_rate(history, start=1.0, max_rate=64.0, min_rate=0.125, bisect_steps=3, precision=0.05):
    """The next rate to try given [(rate, passed), ...] so far, or None when the search is done.

    Doubles from `start` until a rate fails (or halves until one passes), then bisects the
    gap between the last pass and the first fail `bisect_steps` times, stopping early when
    the gap is under `precision` of the lower end."""
    if not history:
        return start
    lo, hi = bounds(history)
    if hi is None:
        nxt = 2 * lo
        return nxt if nxt <= max_rate else None
    if lo is None:
        nxt = hi / 2
        return nxt if nxt >= min_rate else None
    # Bisection steps taken: points measured since the first time the answer was bracketed.
    steps = 0
    for i in range(len(history)):
        l, h = bounds(history[:i + 1])
        if l is not None and h is not None:
            steps = len(history) - 1 - i
            break
    if steps >= bisect_steps or (hi - lo) <= precision * lo:
        return None
    return round((lo + hi) / 2, 3)


def sustained_rate(history):
    """The answer of a finished search: {"rate": highest sustained (None if none was),
    "capped": True when even the highest rate tried passed, so the true figure is higher}."""
    lo, hi = bounds(history)
    return {"rate": lo, "capped": lo is not None and hi is None}


def run_search(args):
    with open(args.workload) as f:
        base_seed = json.load(f).get("seed", 0)
    history = []
    points = []
    while True:
        rate = next_rate(history, args.start, args.max_rate, args.min_rate, args.bisect_steps)
        if rate is None:
            break
        stem = f"{os.path.splitext(args.out)[0]}-{rate:g}"
        # Each point its own seed: repeated prompts would be served from either server's
        # prompt cache and flatter the later points.
        derive(args.workload, stem + "-workload.json",
               [f"seed={base_seed + int(rate * 1000)}", f"arrival.rate={rate}"])
        point_out = stem + ".json"
        cmd = [args.load, "--url", args.url, "--workload", stem + "-workload.json", "--out", point_out, "--quiet"]
        print(f"search: rate {rate:g}/s ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode not in (0, 3):  # 3: a run in which nothing succeeded, a failed point
            sys.stderr.write(proc.stdout + proc.stderr)
            sys.exit(f"search: troupe-load exited with {proc.returncode}")
        with open(point_out) as f:
            report = json.load(f)["runs"][0]["report"]
        ok = point_passes(report, args.ttft_ms)
        history.append((rate, ok))
        points.append({"rate": rate, "passed": ok, "report": report})
        print(f"search: rate {rate:g}/s: {'sustained' if ok else 'not sustained'} "
              f"(ok {report['requests']['ok']}/{report['requests']['sent']}, "
              f"ttft p99 {report['ttft_ms'].get('p99', float('nan')):.0f} ms)", file=sys.stderr, flush=True)
        time.sleep(1)  # let the server settle: requests cut off by a timeout are being cancelled
    answer = sustained_rate(history)
    with open(args.out, "w") as f:
        json.dump({"ttft_limit_ms": args.ttft_ms, "workload": args.workload, "points": points, **answer}, f, indent=1)
    found = "none" if answer["rate"] is None else f"{answer['rate']:g}/s"
    print(f"search: highest sustained rate {found}{' (the highest tried)' if answer['capped'] else ''}",
          file=sys.stderr)


# ---- the ratio table -----------------------------------------------------------------------

METRICS = [  # (key, label, where in a run's report, higher is better)
    ("output_tok_s", "output tok/s", ("output_tokens_per_s",), True),
    ("requests_s", "requests/s", ("requests_per_s",), True),
    ("ttft_p50_ms", "TTFT p50 ms", ("ttft_ms", "p50"), False),
    ("ttft_p99_ms", "TTFT p99 ms", ("ttft_ms", "p99"), False),
    ("tpot_p50_ms", "TPOT p50 ms", ("tpot_ms", "p50"), False),
    ("tpot_p99_ms", "TPOT p99 ms", ("tpot_ms", "p99"), False),
]


def closed_points(result):
    """{users: {metric: value}} from a troupe-load sweep over users; failures are counted too."""
    points = {}
    for run in result["runs"]:
        report = run["report"]
        values = {}
        for key, _, path, _ in METRICS:
            v = report
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            values[key] = v
        values["failed"] = report["requests"]["failed"]
        values["ok"] = report["requests"]["ok"]
        points[int(run["value"])] = values
    return points


def ratio(a, b):
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def compare(troupe_closed, llama_closed, troupe_rate, llama_rate, troupe_rss_kb=None, llama_rss_kb=None):
    """Everything the table shows, as one dict (also the RESULT line)."""
    t, l = closed_points(troupe_closed), closed_points(llama_closed)
    rows = []
    for users in sorted(set(t) | set(l)):
        row = {"users": users}
        for key, _, _, _ in METRICS:
            a, b = t.get(users, {}).get(key), l.get(users, {}).get(key)
            row[key] = {"troupe": a, "llama_cpp": b, "ratio": ratio(a, b)}
        row["failed"] = {"troupe": t.get(users, {}).get("failed"), "llama_cpp": l.get(users, {}).get("failed")}
        rows.append(row)
    rate = {"troupe": troupe_rate["rate"], "llama_cpp": llama_rate["rate"],
            "troupe_capped": troupe_rate["capped"], "llama_cpp_capped": llama_rate["capped"],
            "ratio": ratio(troupe_rate["rate"], llama_rate["rate"])}
    rss = {"troupe": troupe_rss_kb, "llama_cpp": llama_rss_kb, "ratio": ratio(troupe_rss_kb, llama_rss_kb)}
    return {"rows": rows, "sustained_rate": rate, "peak_rss_kb": rss}


def fmt(v, digits=2):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def markdown(result):
    lines = ["Ratios are troupe / llama.cpp: above 1 is better for throughput and rate, below 1 for latency.", "",
             "| users | output tok/s | requests/s | TTFT p50 | TTFT p99 | TPOT p50 | TPOT p99 |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['users']} | " + " | ".join(fmt_ratio(row[k]["ratio"]) for k, _, _, _ in METRICS) + " |")
    r = result["sustained_rate"]

    def rate_text(v, capped):
        return "none" if v is None else f"{'≥ ' if capped else ''}{v:g}/s"
    lines += ["", "| highest Poisson rate with p99 TTFT < 2 s | troupe | llama.cpp | ratio |", "|---|---:|---:|---:|",
              f"| requests/s | {rate_text(r['troupe'], r['troupe_capped'])} | "
              f"{rate_text(r['llama_cpp'], r['llama_cpp_capped'])} | {fmt_ratio(r['ratio'])} |"]
    m = result["peak_rss_kb"]
    if m["troupe"] is not None or m["llama_cpp"] is not None:
        mib = [None if v is None else v / 1024 for v in (m["troupe"], m["llama_cpp"])]
        lines.append(f"| peak RSS MiB (lower is better) | {fmt(mib[0], 0)} | {fmt(mib[1], 0)} | {fmt_ratio(m['ratio'])} |")
    lines += ["", "Absolute values (troupe / llama.cpp):", "",
              "| users | " + " | ".join(label for _, label, _, _ in METRICS) + " | failed |",
              "|---:|" + "---:|" * (len(METRICS) + 1)]
    for row in result["rows"]:
        cells = [f"{fmt(row[k]['troupe'])} / {fmt(row[k]['llama_cpp'])}" for k, _, _, _ in METRICS]
        f = row["failed"]
        cells.append(f"{'-' if f['troupe'] is None else f['troupe']} / {'-' if f['llama_cpp'] is None else f['llama_cpp']}")
        lines.append(f"| {row['users']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_report(args):
    def load(path):
        with open(path) as f:
            return json.load(f)
    result = compare(load(args.troupe_closed), load(args.llama_closed), load(args.troupe_rate), load(args.llama_rate),
                     args.troupe_rss_kb, args.llama_rss_kb)
    text = markdown(result)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    print("RESULT " + json.dumps(result, separators=(",", ":")))


# ---- workloads -----------------------------------------------------------------------------

def derive(src, dst, assignments):
    """Writes a copy of workload `src` to `dst` with `key=JSON value` replacements; a dotted
    key reaches into an object (`closed_loop.users=4`)."""
    with open(src) as f:
        workload = json.load(f)
    for a in assignments:
        key, sep, value = a.partition("=")
        if not sep:
            sys.exit(f"derive: expected key=value, got {a!r}")
        *parents, leaf = key.split(".")
        target = workload
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = json.loads(value)
    with open(dst, "w") as f:
        json.dump(workload, f, indent=1)


def merge(dst, sources):
    """One result file whose runs are those of `sources` in order (points run one by one)."""
    merged = None
    for path in sources:
        with open(path) as f:
            result = json.load(f)
        if merged is None:
            merged = result
        else:
            merged["runs"] += result["runs"]
    with open(dst, "w") as f:
        json.dump(merged, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("derive")
    d.add_argument("src")
    d.add_argument("dst")
    d.add_argument("assignments", nargs="*")
    m = sub.add_parser("merge")
    m.add_argument("dst")
    m.add_argument("sources", nargs="+")
    s = sub.add_parser("search")
    s.add_argument("--load", required=True, help="the troupe-load binary")
    s.add_argument("--url", required=True)
    s.add_argument("--workload", required=True, help="an open-loop workload; its arrival.rate is replaced")
    s.add_argument("--out", required=True)
    s.add_argument("--start", type=float, default=1.0)
    s.add_argument("--max-rate", type=float, default=64.0)
    s.add_argument("--min-rate", type=float, default=0.125)
    s.add_argument("--bisect-steps", type=int, default=3)
    s.add_argument("--ttft-ms", type=float, default=TTFT_LIMIT_MS)
    r = sub.add_parser("report")
    for name in ("troupe-closed", "troupe-rate", "llama-closed", "llama-rate"):
        r.add_argument("--" + name, required=True)
    r.add_argument("--troupe-rss-kb", type=float)
    r.add_argument("--llama-rss-kb", type=float)
    r.add_argument("--markdown")
    args = ap.parse_args()
    if args.command == "derive":
        derive(args.src, args.dst, args.assignments)
    elif args.command == "merge":
        merge(args.dst, args.sources)
    elif args.command == "search":
        run_search(args)
    else:
        run_report(args)


if __name__ == "__main__":
    main()
