"""The autoscaler through the real binary: `troupe serve --min-replicas 1 --max-replicas 3`
starts its own `troupe worker` processes, here with the stand-in step (--stand-in-step-us:
a fixed-time step, so a replica's capacity is --max-num-seqs sequences whatever the cores
do). Under light load it keeps one replica; when the load triples the fleet grows within
the scale-up delay plus warm-up, and the p99 time to first token over a window after the
growth is back under the target; when the load stops the extra replicas are drained and
stopped down to the minimum, no request fails, and the stopped workers' processes are
gone; a worker killed with SIGKILL is replaced. With --worker-command (the hook a cluster
manager uses) serve runs the given command, routes to the worker it prints, and at the end
runs --worker-stop-command with the worker's address and leaves no process behind. Bad
autoscaler flags are refused with a clear message before anything starts."""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import troupe_server

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

STEP_US = 20000          # the stand-in step: 20 ms per step, whatever the cores do
MAX_NUM_SEQS = 4         # so a replica runs 4 sequences at once; more wait
MAX_TOKENS = 24          # about half a second per request at full speed
TARGET = 0.6             # --target-utilization: 6 clients need 3 replicas (6 / 12 = 0.5)
UP_DELAY_MS = 1000
DOWN_DELAY_MS = 2000
WARM_UP_SLACK_S = 20     # a worker starting on two shared cores: load, listen, gate
TTFT_TARGET_S = 0.5      # p99 TTFT once the fleet has grown (overloaded, requests wait a whole request)
LIGHT, HEAVY = 2, 6      # clients: light load, then three times as much


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def wait_for(pred, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic()


def metric(base_url, series):
    _, _, body = troupe_server.http_get(base_url + "/metrics")
    m = re.search(rf"^{re.escape(series)} (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else None


def replicas(base_url):
    return metric(base_url, 'troupe_autoscaler_replicas{state="current"}')


def children_of(pid):
    """The live processes whose parent is pid (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def is_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Client(threading.Thread):
    """A closed-loop client: one streaming request after another until stopped; records
    (started, first token, ended, error or None) per request."""

    def __init__(self, base_url, number):
        super().__init__(daemon=True)
        self.base_url, self.number = base_url, number
        self.stopping = threading.Event()
        self.records = []

    def one(self, i):
        body = json.dumps({"prompt": f"Client {self.number} asks question {i}:", "max_tokens": MAX_TOKENS,
                           "temperature": 0, "ignore_eos": True, "stream": True}).encode()
        req = urllib.request.Request(self.base_url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        started, first, error, finish = time.monotonic(), None, None, None
        try:
            with _direct.open(req, timeout=120) as r:
                for raw in r:
                    line = raw.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        error = chunk["error"]
                    for choice in chunk.get("choices", []):
                        if choice.get("text") and first is None:
                            first = time.monotonic()
                        finish = choice.get("finish_reason") or finish
        except urllib.error.HTTPError as e:
            error = {"code": f"http {e.code}", "body": e.read().decode(errors="replace")}
        except OSError as e:
            error = {"code": "connection", "message": str(e)}
        if error is None and finish != "length":
            error = {"code": "unfinished", "finish_reason": finish}
        self.records.append((started, first, time.monotonic(), error))

    def run(self):
        i = 0
        while not self.stopping.is_set():
            self.one(i)
            i += 1


def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def ttfts(clients, since):
    return [first - started for c in clients for (started, first, _, error) in c.records
            if started >= since and first is not None and error is None]


def refused(args, extra, needle):
    r = subprocess.run([args.troupe, "serve", "--model", args.model, "--port", "0", *extra],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    check(r.returncode != 0 and needle in r.stderr.decode(),
          f"serve {' '.join(extra)} is refused: exit {r.returncode}, says {needle!r}")


def complete_once(base_url):
    body = json.dumps({"prompt": "hello", "max_tokens": 4}).encode()
    req = urllib.request.Request(base_url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with _direct.open(req, timeout=60) as r:
        return r.status, json.loads(r.read())


def check_worker_command(args):
    """--worker-command / --worker-stop-command: a user's commands start and stop workers."""
    import shlex
    import tempfile
    stops = tempfile.mktemp(prefix="troupe-stops-")
    worker = " ".join(shlex.quote(a) for a in [
        args.troupe, "worker", "--model", args.model, "--listen", "127.0.0.1:0", "--threads", "1",
        "--stand-in-step-us", str(STEP_US), "--max-num-seqs", str(MAX_NUM_SEQS)])
    extra = ["--min-replicas", "1", "--max-replicas", "2", "--cluster-key", "e2e-command-key",
             "--worker-command", "exec " + worker,
             "--worker-stop-command", f"echo \"$TROUPE_WORKER_ADDRESS\" >> {shlex.quote(stops)}",
             "--stand-in-step-us", str(STEP_US), "--max-num-seqs", str(MAX_NUM_SEQS)]
    seen = set()
    with troupe_server.start(args.troupe, args.model, extra_args=extra, threads=1) as server:
        base = server.base_url
        wait_for(lambda: replicas(base) == 1, 30, "the worker the command started")
        seen.update(children_of(server.process.pid))
        check(len(seen) == 1, f"the worker command runs as one child process ({seen})")
        status, body = complete_once(base)
        check(status == 200 and body["usage"]["completion_tokens"] == 4,
              "a request is served by the worker the command started")
        with open(server.log_path, errors="replace") as f:
            m = re.search(r"replica (127\.0\.0\.1:\d+) up", f.read())
        check(m is not None, "the router connected to the address the command printed")
        address = m.group(1)
        code = server.stop()
        check(code == 0, f"serve with a worker command exits 0 ({code})")
    wait_for(lambda: not any(is_alive(p) for p in seen), 10, "the command's worker to be gone")
    check(True, "no process of the worker command is left behind")
    with open(stops) as f:
        stopped = f.read().split()
    os.unlink(stops)
    check(stopped == [address], f"the stop command ran once with the worker's address ({stopped})")


def main():
    args = troupe_server.parse_args(__doc__)
    began = time.monotonic()

    refused(args, ["--min-replicas", "2"], "needs --max-replicas")
    refused(args, ["--max-replicas", "2", "--min-replicas", "3"], "--max-replicas must be")
    refused(args, ["--max-replicas", "2", "--replica", "127.0.0.1:9"], "do not go together")
    refused(args, ["--max-replicas", "2", "--target-utilization", "abc"], "not a number")
    refused(args, ["--max-replicas", "2", "--worker-stop-command", "true"], "needs --worker-command")

    extra = ["--min-replicas", "1", "--max-replicas", "3", "--target-utilization", str(TARGET),
             "--scale-up-delay-ms", str(UP_DELAY_MS), "--scale-down-delay-ms", str(DOWN_DELAY_MS),
             "--stand-in-step-us", str(STEP_US), "--max-num-seqs", str(MAX_NUM_SEQS)]
    clients = []
    seen_children = set()
    with troupe_server.start(args.troupe, args.model, extra_args=extra, threads=1) as server:
        base = server.base_url
        serve_pid = server.process.pid
        try:
            wait_for(lambda: replicas(base) == 1, 30, "the first replica")
            seen_children.update(children_of(serve_pid))
            check(len(seen_children) == 1, f"serve started one worker process ({seen_children})")
            ups = lambda: metric(base, 'troupe_autoscaler_decisions_total{direction="up"}')  # noqa: E731
            ups_at_start = ups()  # filling up to --min-replicas counts as one

            # Light load: one replica is enough.
            clients = [Client(base, n) for n in range(LIGHT)]
            for c in clients:
                c.start()
            time.sleep(3 * UP_DELAY_MS / 1000)
            check(replicas(base) == 1 and ups() == ups_at_start,
                  "under light load (utilization about 0.5) the fleet stays at one replica")

            # The load triples.
            tripled_at = time.monotonic()
            for n in range(LIGHT, HEAVY):
                c = Client(base, n)
                clients.append(c)
                c.start()
            grew_at = wait_for(lambda: replicas(base) >= 2, UP_DELAY_MS / 1000 + WARM_UP_SLACK_S,
                               "a second replica")
            check(True, f"a second replica is routed to {grew_at - tripled_at:.1f} s after the load tripled "
                        f"(delay {UP_DELAY_MS} ms + warm-up)")
            full_at = wait_for(lambda: replicas(base) == 3, 2 * (UP_DELAY_MS / 1000 + WARM_UP_SLACK_S),
                               "the third replica")
            check(True, f"three replicas {full_at - tripled_at:.1f} s after the load tripled")
            seen_children.update(children_of(serve_pid))
            check(len(children_of(serve_pid)) == 3, "three worker processes run")
            overloaded = [first - started for c in clients for (started, first, _, error) in c.records
                          if tripled_at <= started < grew_at and first is not None and error is None]
            # The window: requests started once the third replica took traffic.
            time.sleep(1.0)
            window_start = time.monotonic()
            time.sleep(4.0)
            window = ttfts(clients, window_start)
            check(len(window) >= 10, f"the window holds {len(window)} requests")
            check(p99(window) < TTFT_TARGET_S,
                  f"p99 TTFT over the window after the growth is {p99(window) * 1000:.0f} ms, under the target "
                  f"{TTFT_TARGET_S * 1000:.0f} ms (while overloaded it was "
                  f"{(p99(overloaded) * 1000 if overloaded else float('nan')):.0f} ms)")
            check(replicas(base) == 3, "the fleet holds at three under the tripled load (hysteresis)")

            # The load stops: the extra replicas drain and stop.
            stopped_at = time.monotonic()
            for c in clients:
                c.stopping.set()
            for c in clients:
                c.join(timeout=120)
            check(not any(c.is_alive() for c in clients), "every client finished its last request")
            shrunk_at = wait_for(lambda: replicas(base) == 1 and len(children_of(serve_pid)) == 1,
                                 2 * (DOWN_DELAY_MS / 1000) + 30, "the fleet back at one replica, one process")
            check(True, f"back to one replica and one worker process {shrunk_at - stopped_at:.1f} s after the "
                        f"load stopped")
            check(metric(base, 'troupe_autoscaler_decisions_total{direction="down"}') == 2,
                  "two scale-down decisions are counted")
            check(ups() == ups_at_start + 2, "two scale-up decisions for the load are counted")
            records = [r for c in clients for r in c.records]
            errors = [r[3] for r in records if r[3] is not None]
            check(not errors and len(records) > 50, f"all {len(records)} requests finished, none failed ({errors[:3]})")
            with open(server.log_path, errors="replace") as f:
                log = f.read()
            check(re.search(r"autoscaler: scale up 1 -> 2: utilization \S+ above the target", log),
                  "the scale-up decision is logged with its numbers")
            check(re.search(r"autoscaler: scale down 3 -> 2: utilization \S+ below", log),
                  "the scale-down decision is logged with its numbers")
            check("replica_lost" not in log, "no request was lost")
            status = troupe_server.http_get(base + "/health")[0]
            check(status == 200, "the remaining replica serves")

            # A worker that dies is noticed and, below --min-replicas, replaced.
            (last,) = children_of(serve_pid)
            os.kill(last, signal.SIGKILL)
            wait_for(lambda: (lambda now: len(now) == 1 and now[0] != last)(children_of(serve_pid))
                     and replicas(base) == 1, 30, "a replacement for the killed worker")
            seen_children.update(children_of(serve_pid))
            check(True, "a killed worker is replaced (below --min-replicas)")
            check(troupe_server.http_get(base + "/health")[0] == 200, "the replacement serves")
        finally:
            for c in clients:
                c.stopping.set()
        code = server.stop()
        check(code == 0, f"serve exits 0 ({code})")
    wait_for(lambda: not any(is_alive(p) for p in seen_children), 10, "every worker process to be gone")
    check(True, f"no worker process is left behind ({sorted(seen_children)})")
    check_worker_command(args)
    print(f"test_autoscaler: passed in {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    main()
