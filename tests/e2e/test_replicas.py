"""Scale-out through the real binaries: three `troupe worker` processes on loopback behind
`troupe serve --replica ...`. Greedy outputs through the router equal a plain server's;
kill -9 of a worker under load fails only the requests it had started, each with
`replica_lost` within a second, while the rest finish and later requests go to the
survivors; the worker restarted on its port rejoins and gets traffic; a repeated prompt
stays on one replica (prefix affinity); the front door's /metrics and /v1/diagnosis carry
the workers' engine series; a repeated long prompt goes where its prefix is cached even
after the router's affinity table forgot it (the replicas' prefix digests); SIGTERM drains a worker while new requests go
elsewhere; a wrong cluster key is refused; a worker frozen with SIGSTOP is found out by the router's stats heartbeat and
its started requests end `replica_lost`; a worker will not listen beyond loopback without
a key."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import troupe_server

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
KEY = "e2e-cluster-key"
LISTEN_LINE = re.compile(r"troupe: worker .* listening on (\S+):(\d+)")


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


class Worker:
    def __init__(self, binary, model, port=0, key=KEY):
        fd, self.log_path = tempfile.mkstemp(prefix="troupe-worker-", suffix=".log")
        os.close(fd)
        self.out_path = self.log_path + ".out"
        command = [binary, "worker", "--model", model, "--listen", f"127.0.0.1:{port}", "--threads", "1",
                   "--cluster-key", key]
        with open(self.log_path, "wb") as log, open(self.out_path, "wb") as out:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=log)
        self.port = None
        deadline = time.monotonic() + 90
        while self.port is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker printed no listening line:\n{self.log_tail()}")
            with open(self.out_path, errors="replace") as f:
                m = LISTEN_LINE.search(f.read())
            if m:
                self.port = int(m.group(2))
            else:
                time.sleep(0.05)

    @property
    def name(self):
        return f"127.0.0.1:{self.port}"

    def log_tail(self, n=30):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def complete(base_url, prompt, max_tokens=16, timeout_s=120.0):
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}).encode()
    req = urllib.request.Request(base_url + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with _direct.open(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Stream(threading.Thread):
    """A streaming completion that records when its first token and its end arrived."""

    def __init__(self, base_url, prompt, max_tokens):
        super().__init__(daemon=True)
        self.base_url, self.prompt, self.max_tokens = base_url, prompt, max_tokens
        self.first_token_at = None
        self.ended_at = None
        self.error = None          # the error object of an in-stream error
        self.finish_reason = None
        self.text = ""

    def run(self):
        body = json.dumps({"prompt": self.prompt, "max_tokens": self.max_tokens, "temperature": 0,
                           "ignore_eos": True, "stream": True}).encode()
        req = urllib.request.Request(self.base_url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with _direct.open(req, timeout=300) as r:
                for raw in r:
                    line = raw.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        self.error = chunk["error"]
                        self.ended_at = time.monotonic()
                        continue
                    for choice in chunk.get("choices", []):
                        if choice.get("text") and self.first_token_at is None:
                            self.first_token_at = time.monotonic()
                        self.text += choice.get("text") or ""
                        if choice.get("finish_reason"):
                            self.finish_reason = choice["finish_reason"]
                            self.ended_at = time.monotonic()
        except urllib.error.HTTPError as e:
            self.error = json.loads(e.read() or b"{}").get("error", {"code": f"http {e.code}"})
            self.ended_at = time.monotonic()


def metric(base_url, name, replica):
    _, _, body = troupe_server.http_get(base_url + "/metrics")
    pattern = re.compile(rf'^{name}{{replica="{re.escape(replica)}"}} (\S+)$', re.M)
    m = pattern.search(body.decode())
    return float(m.group(1)) if m else None


def diagnosis_replicas(base_url):
    _, _, body = troupe_server.http_get(base_url + "/v1/diagnosis")
    return sorted(r["replica"] for r in json.loads(body).get("replicas", []))


LONG_TEXT = ("the committee reviewed the quarterly figures for every regional office, compared them with the "
             "forecasts made at the start of the year, and asked each director to explain the largest gaps "
             "before the board meeting next month. ") * 2


def wait_for(pred, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colors are",
           "Water boils at", "My favourite book is"]


def main():
    args = troupe_server.parse_args(__doc__)
    started = time.monotonic()

    # A worker refuses to listen beyond loopback without a key, before loading anything.
    env = dict(os.environ)
    env.pop("TROUPE_CLUSTER_KEY", None)
    refused = subprocess.run([args.troupe, "worker", "--model", args.model, "--listen", "0.0.0.0:0"],
                             env=env, capture_output=True, timeout=30)
    check(refused.returncode != 0 and b"without a cluster key" in refused.stderr,
          f"a worker will not listen on 0.0.0.0 without a key (exit {refused.returncode})")

    # The router's flags are checked before anything is loaded.
    for flags, message in [(["--router-affinity-slack", "2"], b"needs --replica HOST:PORT, --replicas N"),
                           (["--replica", "127.0.0.1:1", "--router-affinity-keys", "0"], b"whole number"),
                           (["--replica", "127.0.0.1:1", "--router-waiting-weight", "nan"], b"from 0 to 1000")]:
        bad = subprocess.run([args.troupe, "serve", "--model", args.model] + flags, capture_output=True, timeout=30)
        check(bad.returncode != 0 and message in bad.stderr, f"serve refuses {' '.join(flags)}: {bad.stderr!r}")

    # The reference: a plain server's greedy outputs.
    with troupe_server.start(args.troupe, args.model) as plain:
        reference = {p: complete(plain.base_url, p)[1]["choices"][0]["text"] for p in PROMPTS}

    workers = [Worker(args.troupe, args.model) for _ in range(3)]
    try:
        replica_args = []
        for w in workers:
            replica_args += ["--replica", w.name]
        with troupe_server.start(args.troupe, args.model, extra_args=replica_args + ["--cluster-key", KEY]) as server:
            base = server.base_url
            for w in workers:
                check(metric(base, "troupe_replica_up", w.name) == 1, f"replica {w.name} is up")

            # 1. Greedy outputs equal the plain server's, spread over the replicas.
            results = {}
            threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, complete(base, p)))
                       for p in PROMPTS]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for p in PROMPTS:
                status, body = results[p]
                check(status == 200 and body["choices"][0]["text"] == reference[p],
                      f"greedy output through the router equals the plain server's for {p!r}")
            routed = [metric(base, "troupe_replica_requests_routed_total", w.name) for w in workers]
            check(sum(routed) == len(PROMPTS) and sum(1 for r in routed if r > 0) >= 2,
                  f"the requests were spread over the replicas {routed}")

            # Prefix affinity: the same prompt, one request at a time, stays on one replica
            # (without it, idle replicas take turns).
            before = [metric(base, "troupe_replica_requests_routed_total", w.name) for w in workers]
            for _ in range(3):
                status, body = complete(base, PROMPTS[0], max_tokens=4)
                check(status == 200, "a repeated prompt is served")
            grew = [metric(base, "troupe_replica_requests_routed_total", w.name) - b
                    for w, b in zip(workers, before)]
            check(sorted(grew) == [0, 0, 3], f"a repeated prompt stays on one replica ({grew})")

            # The front door's /metrics carries each replica's engine series, and its
            # /v1/diagnosis reads them: its replicas are the workers, not the front door.
            for w in workers:
                check(metric(base, "troupe_num_requests_running", w.name) is not None and
                      metric(base, "troupe_kv_cache_capacity_blocks", w.name) > 0,
                      f"/metrics has replica {w.name}'s engine series")
            wait_for(lambda: sum(metric(base, "troupe_steps_total", w.name) or 0 for w in workers) > 0, 5,
                     "the replicas' steps on the front door's /metrics")
            wait_for(lambda: diagnosis_replicas(base) == sorted(w.name for w in workers), 15,
                     "/v1/diagnosis to read the three workers")
            check(True, "a routing serve's /v1/diagnosis reads the workers' series")
            doctor = subprocess.run([args.troupe, "doctor", base, "--window", "1", "--interval", "0.5", "--json"],
                                    capture_output=True, timeout=60)
            report = json.loads(doctor.stdout or b"{}")
            check(doctor.returncode == 0 and
                  sorted(r["replica"] for r in report.get("replicas", [])) == sorted(w.name for w in workers),
                  f"troupe doctor on the front door diagnoses the three workers ({doctor.stderr.decode()[-300:]})")

            # Prefix digests: a second front door whose affinity table holds one key still
            # sends a repeated long prompt where its prefix is cached, because the replicas
            # report the prefixes they hold.
            with troupe_server.start(args.troupe, args.model,
                                     extra_args=replica_args + ["--cluster-key", KEY,
                                                                "--router-affinity-keys", "1"]) as forgetful:
                fbase = forgetful.base_url

                def routed_to(prompt):
                    before = [metric(fbase, "troupe_replica_requests_routed_total", w.name) or 0 for w in workers]
                    status, _ = complete(fbase, prompt, max_tokens=2)
                    check(status == 200, "a long prompt is served")
                    grew = [(metric(fbase, "troupe_replica_requests_routed_total", w.name) or 0) - b
                            for w, b in zip(workers, before)]
                    return grew.index(1)

                long_prompts = [f"Document {i}: " + LONG_TEXT for i in range(3)]
                first = [routed_to(p) for p in long_prompts]
                for i in range(4):  # the table (one key) forgets every long prompt
                    complete(fbase, f"Unrelated filler request number {i}.", max_tokens=1)
                wait_for(lambda: sum(metric(fbase, "troupe_replica_prefix_digest_keys", w.name) or 0
                                     for w in workers) >= 3, 10, "the replicas' digests to report the prompts")
                again = [routed_to(p) for p in long_prompts]
                check(again == first, f"repeated long prompts go where their prefix is cached ({first} then {again})")

            # 2. kill -9 of one worker under load.
            streams = [Stream(base, f"Story number {i}: once upon a time", 160) for i in range(9)]
            for s in streams:
                s.start()
            wait_for(lambda: all(s.first_token_at for s in streams), 120, "every stream's first token")
            victim = max(workers, key=lambda w: metric(base, "troupe_replica_requests_in_flight", w.name))
            victim_in_flight = int(metric(base, "troupe_replica_requests_in_flight", victim.name))
            check(victim_in_flight > 0, f"the victim {victim.name} runs {victim_in_flight} requests")
            killed_at = time.monotonic()
            victim.process.kill()
            victim.process.wait()
            for s in streams:
                s.join(timeout=240)
            lost = [s for s in streams if s.error]
            finished = [s for s in streams if not s.error]
            check(len(lost) == victim_in_flight,
                  f"exactly the victim's started requests failed ({len(lost)} of {victim_in_flight})")
            check(all(s.error.get("code") == "replica_lost" for s in lost),
                  f"each with replica_lost ({[s.error for s in lost]})")
            delays = [s.ended_at - killed_at for s in lost]
            check(all(d < 1.0 for d in delays), f"each within 1 s of the kill ({[round(d, 3) for d in delays]})")
            check(all(s.finish_reason == "length" for s in finished),
                  f"the other {len(finished)} finished normally")
            check(metric(base, "troupe_replica_up", victim.name) == 0, "/metrics shows the victim down")
            check(metric(base, "troupe_replica_requests_lost_total", victim.name) == victim_in_flight,
                  "/metrics counts its lost requests")
            before = metric(base, "troupe_replica_requests_routed_total", victim.name)
            for p in PROMPTS[:4]:
                status, body = complete(base, p)
                check(status == 200 and body["choices"][0]["text"] == reference[p],
                      f"a later request is served by the survivors ({p!r})")
            check(metric(base, "troupe_replica_requests_routed_total", victim.name) == before,
                  "no request went to the dead replica")

            # 3. The worker restarted on its port rejoins and gets traffic.
            restarted = Worker(args.troupe, args.model, port=victim.port)
            workers[workers.index(victim)] = restarted
            wait_for(lambda: metric(base, "troupe_replica_up", restarted.name) == 1, 30, "the restarted replica")
            check(True, "the restarted worker rejoined")
            # The earlier prompts keep their affinity to the survivors; new ones spread.
            before = metric(base, "troupe_replica_requests_routed_total", restarted.name)
            fresh = [f"A new question, number {i}:" for i in range(6)]
            results = {}
            threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, complete(base, p)))
                       for p in PROMPTS + fresh]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check(all(results[p][0] == 200 and results[p][1]["choices"][0]["text"] == reference[p] for p in PROMPTS),
                  "the earlier prompts after the rejoin are served, greedy outputs unchanged")
            check(all(results[p][0] == 200 for p in fresh), "the new prompts are served")
            check(metric(base, "troupe_replica_requests_routed_total", restarted.name) > before,
                  "the rejoined replica gets traffic")

            # 4. A worker frozen with SIGSTOP: the stats heartbeat finds it out.
            streams = [Stream(base, f"Tale number {i}: in a land far away", 160) for i in range(6)]
            for s in streams:
                s.start()
            wait_for(lambda: all(s.first_token_at for s in streams), 120, "every stream's first token")
            frozen = max(workers, key=lambda w: metric(base, "troupe_replica_requests_in_flight", w.name))
            frozen_in_flight = int(metric(base, "troupe_replica_requests_in_flight", frozen.name))
            frozen_at = time.monotonic()
            os.kill(frozen.process.pid, signal.SIGSTOP)
            try:
                for s in streams:
                    s.join(timeout=240)
                lost = [s for s in streams if s.error]
                check(len(lost) == frozen_in_flight and all(s.error.get("code") == "replica_lost" for s in lost),
                      f"the frozen replica's {frozen_in_flight} started requests end replica_lost")
                delays = [s.ended_at - frozen_at for s in lost]
                # The middleman's 2.5 s connection timeout or the router's 3 s stats timeout.
                check(all(d < 5.0 for d in delays),
                      f"within 5 s of the freeze ({[round(d, 2) for d in delays]} s)")
                check(all(s.finish_reason == "length" for s in streams if not s.error), "the others finished")
            finally:
                os.kill(frozen.process.pid, signal.SIGCONT)
            wait_for(lambda: metric(base, "troupe_replica_up", frozen.name) == 1, 30, "the thawed replica")
            check(True, "the thawed worker rejoined")

            # 5. SIGTERM drains a worker: its requests finish, new ones go elsewhere, it exits 0.
            streams = [Stream(base, f"Fable number {i}: a fox and a crow", 60) for i in range(6)]
            for s in streams:
                s.start()
            wait_for(lambda: all(s.first_token_at for s in streams), 120, "every stream's first token")
            draining = max(workers, key=lambda w: metric(base, "troupe_replica_requests_in_flight", w.name))
            draining.process.send_signal(signal.SIGTERM)
            fresh = [f"After the drain, question {i}:" for i in range(6)]
            results = {}
            threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, complete(base, p)))
                       for p in fresh]
            for t in threads:
                t.start()
            for t in threads + streams:
                t.join(timeout=240)
            check(all(s.finish_reason == "length" and not s.error for s in streams),
                  "the draining worker's requests finished, as did the others")
            check(all(results[p][0] == 200 for p in fresh),
                  f"requests sent meanwhile are served ({[results[p][0] for p in fresh]})")
            check(draining.process.wait(timeout=30) == 0, "the drained worker exits 0")
            wait_for(lambda: metric(base, "troupe_replica_up", draining.name) == 0, 10, "the drained replica down")
            check(True, "the router counts the drained replica down")

        # 6. A wrong cluster key is refused: no replica comes up, requests get 503.
        live = next(w for w in workers if w.process.poll() is None)
        with tempfile.NamedTemporaryFile(prefix="troupe-wrong-key-", suffix=".log", delete=False) as log:
            wrong = subprocess.Popen([args.troupe, "serve", "--model", args.model, "--port", "0",
                                      "--replica", live.name, "--cluster-key", "not-the-key"],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: re.search(r"serving .* on (http://\S+)", open(log.name).read()), 60,
                     "the wrong-key server's ready line")
            url = re.search(r"serving .* on (http://\S+)", open(log.name).read()).group(1)
            text = open(log.name).read()
            check("wrong cluster key" in text, "the router logs the refusal")
            status, _, _ = troupe_server.http_get(url + "/health")
            check(status == 503, f"/health is 503 with no replica up ({status})")
            body = json.dumps({"prompt": "Hello", "max_tokens": 4}).encode()
            req = urllib.request.Request(url + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            try:
                _direct.open(req, timeout=30)
                check(False, "a request with no replica up is refused")
            except urllib.error.HTTPError as e:
                answer = json.loads(e.read())
                check(e.code == 503 and answer["error"]["code"] == "unavailable"
                      and e.headers.get("Retry-After") == "1",
                      f"a request gets 503 unavailable with Retry-After ({e.code} {answer})")
        finally:
            wrong.send_signal(signal.SIGTERM)
            wrong.wait(timeout=15)
    except BaseException:
        for w in workers:
            print(f"--- {w.name} ---\n{w.log_tail()}", file=sys.stderr)
        raise
    finally:
        for w in workers:
            w.stop()
    print(f"test_replicas: passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
