#!/usr/bin/env python3
"""Plots `troupe-load --sweep` results: latency percentiles against load and output tokens/s
against concurrency (or arrival rate). Several result files are drawn on the same axes, so
troupe and a peer server measured with the same workload can be compared at a glance.

    troupe-load --url ws://127.0.0.1:8080/v1/ws --workload W.json --sweep users=1,4,16 --out troupe.json
    troupe-load --url http://127.0.0.1:8181/v1 --workload W.json --sweep users=1,4,16 --out llama.json
    python3 bench/plot_sweep.py troupe.json llama.json --labels troupe,llama.cpp -o sweep.png

Needs matplotlib (`pip install matplotlib`; scripts/install_test_deps.sh installs it).
"""

import argparse
import json
import os
import sys

# (panel title, report key, percentiles drawn)
LATENCY_PANELS = [
    ("time to first token", "ttft_ms", ["p50", "p90", "p99"]),
    ("time per output token", "tpot_ms", ["p50", "p90", "p99"]),
    ("end-to-end latency", "e2e_ms", ["p50", "p90", "p99"]),
]
PERCENTILE_STYLE = {"p50": "-", "p90": "--", "p99": ":"}
PARAM_LABEL = {"users": "concurrent users", "rate": "arrival rate (requests/s)"}


class SweepError(ValueError):
    """A result file is not what troupe-load writes."""


def load_sweep(path):
    """Returns (param, [(value, report), ...]) sorted by value, from a troupe-load result file."""
    with open(path) as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise SweepError(f"{path}: not JSON ({e})") from e
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not runs:
        raise SweepError(f"{path}: no runs (is it a troupe-load --out file?)")
    params = {run.get("param") for run in runs}
    if len(params) != 1:
        raise SweepError(f"{path}: runs mix load parameters {sorted(map(str, params))}")
    points = sorted(((float(run["value"]), run["report"]) for run in runs), key=lambda p: p[0])
    return params.pop(), points


def latency(report, key, percentile):
    """The percentile in ms, or None when the run had no sample of it."""
    summary = report.get(key) or {}
    return summary.get(percentile) if summary.get("count", 0) > 0 else None


def plot(sweeps, out_path, title=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = {param for _, param, _ in sweeps}
    if len(params) != 1:
        raise SweepError(f"the files sweep different parameters: {sorted(params)}")
    param = params.pop()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (panel_title, key, percentiles), ax in zip(LATENCY_PANELS, axes.flat):
        for i, (label, _, points) in enumerate(sweeps):
            for p in percentiles:
                xs, ys = [], []
                for value, report in points:
                    y = latency(report, key, p)
                    if y is not None:
                        xs.append(value)
                        ys.append(y)
                if xs:
                    ax.plot(xs, ys, PERCENTILE_STYLE[p], marker="o", color=colors[i % len(colors)],
                            label=f"{label} {p}")
        ax.set_title(panel_title)
        ax.set_ylabel("ms")
    ax = axes.flat[3]
    for i, (label, _, points) in enumerate(sweeps):
        xs = [value for value, _ in points]
        ax.plot(xs, [r.get("output_tokens_per_s", 0) for _, r in points], "-", marker="o",
                color=colors[i % len(colors)], label=f"{label} output tokens/s")
    ax.set_title("throughput")
    ax.set_ylabel("output tokens/s")
    values = sorted({value for _, _, points in sweeps for value, _ in points})
    for ax in axes.flat:
        ax.set_xlabel(PARAM_LABEL.get(param, param))
        if values[0] > 0:
            ax.set_xscale("log", base=2)  # sweeps usually double the load
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title or "troupe-load sweep")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="troupe-load --out files of sweeps")
    parser.add_argument("-o", "--out", required=True, help="the PNG to write")
    parser.add_argument("--labels", help="comma-separated names, one per result file")
    parser.add_argument("--title", help="the figure's title")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [
        os.path.splitext(os.path.basename(p))[0] for p in args.results]
    if len(labels) != len(args.results):
        parser.error(f"--labels names {len(labels)} series for {len(args.results)} files")
    try:
        sweeps = [(label, *load_sweep(path)) for label, path in zip(labels, args.results)]
        plot(sweeps, args.out, args.title)
    except (OSError, SweepError, KeyError) as e:
        print(f"plot_sweep: {e}", file=sys.stderr)
        return 1
    print(f"plot_sweep: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
