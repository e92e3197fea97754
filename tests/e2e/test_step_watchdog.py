"""The step watchdog through the real `troupe serve`: with the test-only fault injection
TROUPE_TEST_FAULT_STUCK_STEP=3, the first backend hangs in its third step for good. The
request in that step must get 503 `unavailable` saying the step did not return in time, the
server must go on serving (a worker with a fresh backend), count it in /metrics, log it,
stay healthy, and still stop at SIGTERM with exit 0 (not waiting for the stuck thread)."""

import json
import os
import sys
import time
import urllib.error
import urllib.request

import troupe_server

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def post_completion(base_url, prompt, max_tokens, timeout_s=120.0):
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request(base_url + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with _direct.open(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main():
    args = troupe_server.parse_args(__doc__)
    os.environ["TROUPE_TEST_FAULT_STUCK_STEP"] = "3"
    with troupe_server.start(args.troupe, args.model, extra_args=["--step-timeout-ms", "1500"]) as server:
        started = time.monotonic()
        status, body = post_completion(server.base_url, "The capital of France is", 8)
        waited = time.monotonic() - started
        check(status == 503, f"the request in the stuck step gets 503 (got {status}: {body})")
        message = body.get("error", {}).get("message", "")
        check("did not return within" in message, f"its error says why: {message!r}")
        check(waited < 60, f"it ends at the deadline, not never ({waited:.1f} s)")

        status, body = post_completion(server.base_url, "Once upon a time", 8)
        check(status == 200 and body["usage"]["completion_tokens"] == 8,
              f"the next request is served by the replacement worker ({status})")

        status, _, health = troupe_server.http_get(server.base_url + "/health")
        check(status == 200, f"/health stays 200 after a replacement ({health!r})")
        status, _, metrics = troupe_server.http_get(server.base_url + "/metrics")
        text = metrics.decode()
        check("troupe_step_timeouts_total 1\n" in text, "/metrics counts one step timeout")
        check('troupe_worker_replacements_total{reason="step_timeout"} 1\n' in text,
              "/metrics counts one replacement for a step timeout")
        check("troupe_engine_healthy 1\n" in text, "troupe_engine_healthy is 1")
        code = server.stop(timeout_s=30)
        check(code == 0, f"SIGTERM stops the server with 0, not waiting for the stuck thread ({code})")
        with open(server.log_path, errors="replace") as f:
            log = f.read()
        check("abandoning it and starting a worker with a fresh backend" in log, "the log says what happened")
    return 0


if __name__ == "__main__":
    sys.exit(main())
