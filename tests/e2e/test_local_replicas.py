"""`troupe serve --replicas 2`: two engine replicas in one process behind the router, each
with its own KV pool and a share of the CPU threads. Greedy outputs equal a plain server's;
different prompts spread over both replicas; the front door's /metrics carries each
replica's series under replica="local-N"; a streamed request works; bad --replicas values
and --replicas with --max-replicas are refused before anything starts."""

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import troupe_server

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colors are",
           "Water boils at", "My favourite book is"]


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def complete(base_url, prompt, max_tokens=12, stream=False):
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream}).encode()
    req = urllib.request.Request(base_url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with _direct.open(req, timeout=120) as r:
        raw = r.read().decode()
    if not stream:
        return json.loads(raw)["choices"][0]["text"]
    text = ""
    for line in raw.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = json.loads(line[6:])
            if "error" in event:
                raise AssertionError(f"an error event in the stream: {line}")
            text += event["choices"][0]["text"]
    return text


def metrics(base_url):
    with _direct.open(base_url + "/metrics", timeout=30) as r:
        return r.read().decode()


def series(text, name, replica):
    m = re.search(rf'^{name}{{[^}}]*replica="{replica}"[^}}]*}} ([0-9.eE+-]+)$', text, re.M)
    return float(m.group(1)) if m else None


def main():
    args = troupe_server.parse_args(__doc__)
    with troupe_server.start(args.troupe, args.model) as plain:
        expected = [complete(plain.base_url, p) for p in PROMPTS]

    with troupe_server.start(args.troupe, args.model, extra_args=["--replicas", "2"]) as server:
        base = server.base_url
        got = [complete(base, p) for p in PROMPTS]
        check(got == expected, f"greedy outputs through two local replicas equal a plain server's ({got})")
        check(complete(base, PROMPTS[0], stream=True) == expected[0], "a streamed request gives the same text")
        text = metrics(base)
        routed = [series(text, "troupe_replica_requests_routed_total", f"local-{i}") for i in range(2)]
        check(all(r is not None and r >= 1 for r in routed),
              f"different prompts went to both replicas (routed {routed})")
        check(sum(routed) == len(PROMPTS) + 1, f"every request was routed once ({routed})")
        check(all(series(text, "troupe_replica_up", f"local-{i}") == 1 for i in range(2)), "both replicas are up")
        log = open(server.log_path, errors="replace").read()
        check(log.count("(1 threads") == 2, "each replica has one of the two compute threads")

    for flags, message in [(["--replicas", "0"], "--replicas 0: expected 1 to 64"),
                           (["--replicas", "two"], "--replicas two: not an integer"),
                           (["--replicas", "3"], "--replicas 3 on the CPU needs a compute thread each"),
                           (["--replicas", "2", "--max-replicas", "3"], "do not go together")]:
        r = subprocess.run([args.troupe, "serve", "--model", args.model, "--port", "0", "--threads", "2", *flags],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and message in r.stderr, f"{' '.join(flags)} is refused: {r.stderr.strip()}")


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, troupe_server.ServerError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
