"""A WebSocket client (the `websockets` library) against `troupe serve` on the default model:
a chat streams in, requests multiplex and one is cancelled, and SIGTERM ends a request that
is still running with a `done` that says the server is shutting down, then exits 0."""

import json
import signal
import sys
import time

from websockets.sync.client import connect

import troupe_server


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def frames(ws, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for frames")
        yield json.loads(ws.recv(timeout=left))


def run_until_done(ws, ids):
    """Collects text and the last frame of each id until every one has ended."""
    text = {i: "" for i in ids}
    last = {}
    for f in frames(ws):
        if f.get("type") == "delta":
            text[f["id"]] += f["text"]
        elif f.get("type") in ("done", "error"):
            last[f["id"]] = f
            if len(last) == len(ids):
                return text, last


def main():
    args = troupe_server.parse_args(__doc__)
    with troupe_server.start(args.troupe, args.model, extra_args=["--drain-timeout-ms", "300"]) as server:
        with connect(server.ws_url, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "generate", "id": "chat",
                                "messages": [{"role": "user", "content": "Say hello."}],
                                "max_tokens": 24, "temperature": 0}))
            first = next(frames(ws))
            check(first == {"type": "accepted", "id": "chat"}, "a generate is accepted")
            text, last = run_until_done(ws, ["chat"])
            done = last["chat"]
            check(done["type"] == "done" and len(text["chat"]) > 0, f"a chat streams in: {text['chat']!r}")
            check(done["usage"]["completion_tokens"] <= 24 and "ttft_ms" in done["timings"],
                  "done carries usage and timings")

            for i in range(4):
                ws.send(json.dumps({"type": "generate", "id": f"m{i}", "prompt": f"Count to {i + 3}:",
                                    "max_tokens": 400, "ignore_eos": True, "temperature": 0.8, "seed": i}))
            ws.send(json.dumps({"type": "cancel", "id": "m2"}))
            text, last = run_until_done(ws, [f"m{i}" for i in range(4)])
            check(last["m2"]["finish_reason"] == "cancelled", "a cancelled request ends cancelled")
            check(all(last[f"m{i}"]["usage"]["completion_tokens"] == 400 for i in (0, 1, 3)),
                  "the other multiplexed requests run to max_tokens")

            ws.send(json.dumps({"type": "generate", "id": "long", "prompt": "Once upon a time",
                                "max_tokens": 8000, "ignore_eos": True}))
            for f in frames(ws):
                if f.get("type") == "delta":
                    break
            server.process.send_signal(signal.SIGTERM)
            _, last = run_until_done(ws, ["long"])
            done = last["long"]
            check(done["finish_reason"] == "cancelled" and done.get("detail") == "server shutting down",
                  "SIGTERM ends a running request with a done that says the server is shutting down")
        code = server.process.wait(timeout=30)
        check(code == 0, "the server exits 0 after SIGTERM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
