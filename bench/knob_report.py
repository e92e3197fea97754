#!/usr/bin/env python3
"""The table of bench/knob_sweep.sh: one row per scheduler setting from troupe-load's result
file and the server's peak RSS.

  knob_report.py [--markdown OUT.md] SEQS BATCH WAIT_MS RESULT.json RSS_KB [SEQS BATCH ...]

Prints a markdown table and one line "RESULT {json}".
"""
import argparse
import json
import sys


def row(seqs, batch, wait_ms, result, rss_kb):
    """One setting's figures from the single run of its result file."""
    report = result["runs"][0]["report"]
    requests = report["requests"]
    return {"max_num_seqs": seqs, "max_batch_size": batch, "max_wait_ms": wait_ms,
            "users": result["runs"][0]["value"],
            "requests_per_s": report["requests_per_s"], "output_tokens_per_s": report["output_tokens_per_s"],
            "ttft_p99_ms": report["ttft_ms"].get("p99"), "e2e_p99_ms": report["e2e_ms"].get("p99"),
            "ok": requests["ok"], "failed": requests["failed"], "peak_rss_mib": rss_kb / 1024 if rss_kb else None}


def markdown(rows):
    def f(v, spec):
        return "-" if v is None else format(v, spec)
    lines = ["| max_num_seqs | max_batch_size | max_wait_ms | requests/s | output tok/s | TTFT p99 ms "
             "| e2e p99 ms | ok / failed | peak RSS MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['max_num_seqs']} | {r['max_batch_size']} | {r['max_wait_ms']} | "
                     f"{f(r['requests_per_s'], '.2f')} | {f(r['output_tokens_per_s'], '.1f')} | "
                     f"{f(r['ttft_p99_ms'], '.0f')} | {f(r['e2e_p99_ms'], '.0f')} | {r['ok']} / {r['failed']} | "
                     f"{f(r['peak_rss_mib'], '.0f')} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown")
    ap.add_argument("fields", nargs="+")
    args = ap.parse_args()
    if len(args.fields) % 5:
        sys.exit("knob_report: give SEQS BATCH WAIT_MS RESULT.json RSS_KB per setting")
    rows = []
    for i in range(0, len(args.fields), 5):
        seqs, batch, wait_ms, path, rss = args.fields[i:i + 5]
        with open(path) as fh:
            result = json.load(fh)
        rows.append(row(int(seqs), int(batch), int(wait_ms), result, float(rss) if rss else None))
    text = markdown(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    print("RESULT " + json.dumps({"rows": rows}, separators=(",", ":")))


if __name__ == "__main__":
    main()
