"""troupe-load against `troupe serve` on the default model: the same short workload (two
priority classes, half the requests cancelled after 3 tokens) over the WebSocket and over
OpenAI HTTP, where the counts must add up; a closed-loop chat sweep whose result file
bench/plot_sweep.py turns into a PNG; and the two ways it refuses to run (a workload with a
bad field, a server that is not there)."""

import json
import os
import socket
import subprocess
import sys
import tempfile

import troupe_server

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT_SCRIPT = os.path.join(HERE, "..", "..", "bench", "plot_sweep.py")

NUM_REQUESTS = 12
PROMPT_TOKENS = 24
OUTPUT_TOKENS = 12

MIXED_WORKLOAD = {
    "name": "e2e-mixed", "seed": 4,
    "arrival": {"process": "constant", "rate": 20}, "requests": NUM_REQUESTS,
    "prompt": {"tokens": PROMPT_TOKENS}, "output": {"tokens": OUTPUT_TOKENS},
    "priorities": [{"priority": 0, "weight": 1}, {"priority": 5, "weight": 1}],
    "cancel": {"share": 0.5, "after_tokens": 3},
    "sampling": {"temperature": 0, "ignore_eos": True},
    # Limits no request on any machine misses, so goodput must count every ok request.
    "slo": {"ttft_ms": 100000, "tpot_ms": 100000},
    "timeout_s": 240,
}

CHAT_WORKLOAD = {
    "name": "e2e-chat", "seed": 5, "api": "chat",
    "closed_loop": {"users": 1, "think_time_ms": 10}, "requests": 3,
    "prompt": {"tokens": {"min": 8, "max": 16}}, "output": {"tokens": 6},
    "sampling": {"temperature": 0.5, "ignore_eos": True}, "timeout_s": 240,
}


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def load_driver_binary(args):
    build_dir = args.build_dir or os.path.dirname(args.troupe)
    path = os.path.join(build_dir, "troupe-load")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"no troupe-load binary at {path} (build the troupe-load target)")
    return path


def write_json(directory, name, doc):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def run_driver(binary, *args):
    command = [binary, *args]
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=540)
    if proc.stdout:
        print(proc.stdout, end="")
    return proc


def run_workload(binary, url, workload_path, out_path, *extra):
    proc = run_driver(binary, "--url", url, "--workload", workload_path, "--out", out_path, "--quiet", *extra)
    if proc.returncode != 0:
        raise AssertionError(f"troupe-load exited {proc.returncode}: {proc.stderr}")
    with open(out_path) as f:
        return json.load(f)


def check_mixed_run(result, transport):
    """The counts of the mixed workload add up, whichever transport carried it. Returns the
    number of requests cancelled."""
    runs = result["runs"]
    check(len(runs) == 1 and runs[0]["param"] == "rate", f"{transport}: one run at the workload's rate")
    rep = runs[0]["report"]
    req = rep["requests"]
    check(req["sent"] == NUM_REQUESTS, f"{transport}: all {NUM_REQUESTS} requests sent ({req})")
    check(req["ok"] + req["cancelled"] + req["failed"] == req["sent"],
          f"{transport}: ok + cancelled + failed = sent ({req})")
    check(req["failed"] == 0, f"{transport}: none failed ({rep['requests']['failed_by_reason']})")
    check(0 < req["cancelled"] < NUM_REQUESTS, f"{transport}: some but not all were cancelled")
    check(rep["total_output_tokens"] == OUTPUT_TOKENS * req["ok"],
          f"{transport}: each ok request produced its {OUTPUT_TOKENS} tokens")
    for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
        check(rep[key]["count"] == req["ok"], f"{transport}: one {key} sample per ok request")
    # A delta may carry several tokens (or none with text), so gaps are at most tokens - 1.
    check(0 < rep["itl_ms"]["count"] <= (OUTPUT_TOKENS - 1) * req["ok"],
          f"{transport}: at most {OUTPUT_TOKENS - 1} inter-token gaps per ok request")
    check(rep["ttft_ms"]["p50"] <= rep["ttft_ms"]["p99"] <= rep["ttft_ms"]["max"],
          f"{transport}: TTFT p50 <= p99 <= max")
    check(PROMPT_TOKENS <= rep["mean_prompt_tokens"] <= PROMPT_TOKENS + 1,
          f"{transport}: synthetic prompts of {PROMPT_TOKENS} tokens measure "
          f"{rep['mean_prompt_tokens']} on the server")
    check(rep["goodput"]["requests_meeting_slo"] == req["ok"], f"{transport}: goodput counts every ok request")
    classes = rep["by_priority"]
    check(sorted(classes) == ["0", "5"], f"{transport}: both priority classes reported")
    check(sum(c["requests"]["sent"] for c in classes.values()) == req["sent"] and
          sum(c["requests"]["ok"] for c in classes.values()) == req["ok"],
          f"{transport}: the priority classes add up to the whole")
    return req["cancelled"], rep


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    args = troupe_server.parse_args(__doc__)
    binary = load_driver_binary(args)
    tmp = tempfile.mkdtemp(prefix="troupe-load-e2e-")
    mixed = write_json(tmp, "mixed.json", MIXED_WORKLOAD)
    chat = write_json(tmp, "chat.json", CHAT_WORKLOAD)

    bad = write_json(tmp, "bad.json", {**MIXED_WORKLOAD, "arrival": {"process": "poisson", "rate": 0}})
    proc = run_driver(binary, "--url", "ws://127.0.0.1:1/v1/ws", "--workload", bad)
    check(proc.returncode == 1 and "arrival.rate must be > 0" in proc.stderr,
          f"a bad workload exits 1 naming the field: {proc.stderr.strip()}")
    port = free_port()
    for url in (f"ws://127.0.0.1:{port}/v1/ws", f"http://127.0.0.1:{port}/v1"):
        proc = run_driver(binary, "--url", url, "--workload", mixed)
        check(proc.returncode == 2 and "cannot connect" in proc.stderr,
              f"an unreachable server exits 2: {proc.stderr.strip()}")

    with troupe_server.start(args.troupe, args.model) as server:
        ws = run_workload(binary, server.ws_url, mixed, os.path.join(tmp, "ws.json"))
        ws_cancelled, ws_report = check_mixed_run(ws, "WebSocket")
        check(ws_report["front_door_ms"]["count"] > 0, "WebSocket: front-door latency measured from server_ms")

        http = run_workload(binary, server.base_url + "/v1", mixed, os.path.join(tmp, "http.json"))
        http_cancelled, _ = check_mixed_run(http, "HTTP")
        check(ws_cancelled == http_cancelled, "the seed picks the same requests to cancel on both transports")

        sweep_path = os.path.join(tmp, "sweep.json")
        sweep = run_workload(binary, server.base_url + "/v1", chat, sweep_path, "--sweep", "users=1,2")
        runs = sweep["runs"]
        check([r["value"] for r in runs] == [1, 2] and all(r["param"] == "users" for r in runs),
              "a sweep runs once per users value")
        check(all(r["report"]["requests"]["ok"] == 3 for r in runs), "every chat request of the sweep is ok")

    png = os.path.join(tmp, "sweep.png")
    proc = subprocess.run([sys.executable, PLOT_SCRIPT, sweep_path, "-o", png],
                          capture_output=True, text=True, timeout=120)
    check(proc.returncode == 0, f"plot_sweep.py runs {proc.stderr.strip()}")
    with open(png, "rb") as f:
        check(f.read(8) == b"\x89PNG\r\n\x1a\n", "plot_sweep.py writes a PNG")
    return 0


if __name__ == "__main__":
    sys.exit(main())
