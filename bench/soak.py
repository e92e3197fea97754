#!/usr/bin/env python3
"""The soak test behind bench/soak.sh (docs/reliability.md, "Soak").

Starts `troupe serve` on a free loopback port with a small KV pool and --max-num-seqs, so that
its capacity is a known number of streams, and runs twice that many client loops for
--minutes. Each loop sends one request at a time (a WebSocket loop sometimes two or three
at once on its connection), of a random kind: POST /v1/completions or /v1/chat/completions,
streamed or whole, or a WebSocket generate; prompts of a few to a few hundred tokens, random
max_tokens. Most requests run to their end; about 10% are cancelled mid-way (a WebSocket
cancel frame, or closing the HTTP connection), 5% are killed (the socket reset with
SO_LINGER 0, or a WebSocket left without a close frame), 5% read slowly (a small receive
buffer, a pause between events, sometimes a stall past the server's write timeout), 2%
carry a short timeout_ms and 1% are invalid on purpose. Every request has a deadline.

Every --sample-s seconds the server's RSS (/proc/PID/status VmRSS) and its /metrics are
written to samples.csv. At the end the driver waits for the server to go idle and checks:
  every request ended (none passed its deadline without an ending);
  no server error (no 5xx but 503 timeout, no error event but busy / slow consumer, no
    internal / out_of_memory / unavailable ending in /metrics, the server never died);
  every KV block returned (used 0 once idle; `cached` blocks are the prefix cache's, and
    used + cached + free must still be the pool);
  RSS at the end minus RSS after the warm-up below the KV pool's bytes plus --rss-margin-mib;
  every connection closed once idle, a last request answered, exit 0 on SIGTERM.
Prints a summary table (also summary.txt and summary.json in the results folder) and
exits 0 when every check passed, 1 when one failed, 2 when the run could not start.
Python 3 standard library only: HTTP/1.1 and the WebSocket client are written here so that
the driver controls each socket (resets, receive buffers, how fast it reads).
"""
import argparse
import asyncio
import base64
import collections
import csv
import json
import math
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MiB = 1024 * 1024

# Common English words that a BPE vocabulary holds as one token each with a leading space, so
# a prompt of N words is about N tokens (the server's usage.prompt_tokens is the truth).
WORDS = """the of and to in is that for it as was with be by on not he this are or his from
at which but have an they you were her she there one all we their been has when who will
more if no out so said what up its about into than them can only other new some could time
these two may then do first any my now such like our over man me even most made after also
did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get
here between both life being under never day same another know while last might us great
old year off come since against go came right used take three water house small large
""".split()

# The outcomes of a request. The first group is allowed; error and hung fail the run.
OUTCOMES = ["completed", "cancelled", "killed", "busy", "timeout", "slow_consumer",
            "slow_dropped", "refused", "error", "hung"]
KINDS = ["http completions", "http completions stream", "http chat", "http chat stream",
         "websocket"]
ACTIONS = [("normal", 0.77), ("cancel", 0.10), ("kill", 0.05), ("slow", 0.05),
           ("timeout", 0.02), ("bad", 0.01)]

# /metrics series sampled into samples.csv: (column, series).
METRIC_COLUMNS = [
    ("kv_used", 'troupe_kv_cache_blocks{state="used"}'),
    ("kv_cached", 'troupe_kv_cache_blocks{state="cached"}'),
    ("kv_free", 'troupe_kv_cache_blocks{state="free"}'),
    ("kv_capacity", "troupe_kv_cache_capacity_blocks"),
    ("running", "troupe_num_requests_running"),
    ("waiting", "troupe_num_requests_waiting"),
    ("batching", "troupe_num_requests_batching"),
    ("swapped", "troupe_num_requests_swapped"),
    ("in_flight", "troupe_front_door_requests_in_flight"),
    ("http_connections", "troupe_http_connections"),
    ("ws_sessions", "troupe_websocket_sessions"),
    ("cancelled_client_gone", 'troupe_front_door_cancelled_total{reason="client_gone"}'),
    ("cancelled_slow_consumer", 'troupe_front_door_cancelled_total{reason="slow_consumer"}'),
    ("closed_buffer_full", 'troupe_front_door_closed_total{reason="buffer_full"}'),
    ("closed_write_timeout", 'troupe_front_door_closed_total{reason="write_timeout"}'),
    ("preemptions", "troupe_num_preemptions_total"),
    ("prefix_hits", "troupe_prefix_cache_hits_total"),
    ("prompt_tokens", "troupe_prompt_tokens_total"),
    ("generation_tokens", "troupe_generation_tokens_total"),
]
# Endings in /metrics that are server errors whenever they are not zero.
SERVER_ERROR_SERIES = [
    'troupe_request_rejected_total{reason="internal"}',
    'troupe_request_rejected_total{reason="out_of_memory"}',
    'troupe_request_rejected_total{reason="unavailable"}',
    'troupe_request_success_total{finished_reason="error"}',
]


def parse_args():
    p = argparse.ArgumentParser(
        prog="bench/soak.sh",
        description="Runs troupe serve under mixed, partly hostile load at twice its capacity for "
                    "--minutes, samples its RSS and /metrics, and fails on a request that never "
                    "ended, a server error, a KV block not returned or RSS growth past the KV pool "
                    "(docs/reliability.md, \"Soak\").")
    p.add_argument("--minutes", type=float, default=10.0, help="how long the load runs [%(default)s]")
    p.add_argument("--troupe", default=None, help="the troupe binary (default: BUILD_DIR/troupe)")
    p.add_argument("--build-dir", default="build", help=argparse.SUPPRESS)
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf", help="GGUF model [%(default)s]")
    p.add_argument("--out", default=None, help="results folder (default bench/out/soak-<UTC time>)")
    p.add_argument("--threads", type=int, default=2, help="the server's --threads [%(default)s]")
    p.add_argument("--max-num-seqs", type=int, default=8,
                   help="the server's --max-num-seqs: its capacity, in streams [%(default)s]")
    p.add_argument("--kv-pool-mib", type=int, default=48, help="the server's KV pool (--kv-cache-bytes) [%(default)s]")
    p.add_argument("--max-queue-len", type=int, default=8,
                   help="the server's --max-queue-len: past it requests get 429 (busy) [%(default)s]")
    p.add_argument("--max-buffered-bytes", type=int, default=8192,
                   help="the server's --max-buffered-bytes, small so that slow readers may reach it [%(default)s]")
    p.add_argument("--write-timeout-ms", type=int, default=10000,
                   help="the server's --write-timeout-ms; some slow readers stall past it [%(default)s]")
    p.add_argument("--clients", type=int, default=0, help="client loops (0 = 2 x --max-num-seqs) [%(default)s]")
    p.add_argument("--max-prompt-words", type=int, default=400, help="longest prompt, in words [%(default)s]")
    p.add_argument("--max-tokens", type=int, default=256, help="largest max_tokens sent [%(default)s]")
    p.add_argument("--deadline-s", type=float, default=180.0,
                   help="a request not ended this long after it was sent counts as never ended [%(default)s]")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS and /metrics samples [%(default)s]")
    p.add_argument("--warmup-s", type=float, default=None,
                   help="RSS after this much load is the baseline (default: a quarter of the run, at most 60 s)")
    p.add_argument("--rss-margin-mib", type=float, default=32.0,
                   help="RSS may grow by the KV pool plus this much after the warm-up [%(default)s]")
    p.add_argument("--idle-timeout-s", type=float, default=60.0,
                   help="how long the server may take to go idle after the last client [%(default)s]")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for troupe serve, e.g. --server-arg=--swap-space --server-arg=1 "
                        "(its memory then counts against --rss-margin-mib)")
    p.add_argument("--seed", type=int, default=1, help="seeds the requests each client loop draws (kinds, actions, prompts) [%(default)s]")
    a = p.parse_args()
    if a.troupe is None:
        a.troupe = os.path.join(a.build_dir, "troupe")
    if a.clients <= 0:
        a.clients = 2 * a.max_num_seqs
    if a.warmup_s is None:
        a.warmup_s = min(60.0, a.minutes * 60.0 / 4)
    if a.out is None:
        a.out = os.path.join("bench", "out", "soak-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    return a


def mib(kib):
    return kib / 1024.0


# ---------------------------------------------------------------------------------------------
# The server


class Server:
    def __init__(self, args, log_path):
        self.args = args
        self.log_path = log_path
        self.proc = None
        self.port = None
        self.blocks = None
        self.block_size = None

    def start(self):
        a = self.args
        cmd = [a.troupe, "serve", "--model", a.model, "--host", "127.0.0.1", "--port", "0",
               "--threads", str(a.threads), "--max-num-seqs", str(a.max_num_seqs),
               "--kv-cache-bytes", str(a.kv_pool_mib * MiB), "--max-queue-len", str(a.max_queue_len),
               "--max-buffered-bytes", str(a.max_buffered_bytes)]
        cmd += a.server_arg
        # --write-timeout-ms is newer than some binaries; without it the timeout is 30 s.
        help_text = subprocess.run([a.troupe, "serve", "--help"], capture_output=True, text=True).stdout
        if "--write-timeout-ms" in help_text:
            cmd += ["--write-timeout-ms", str(a.write_timeout_ms)]
        else:
            a.write_timeout_ms = 30000
        self.cmd = cmd
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"troupe exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            text = open(self.log_path, errors="replace").read()
            m = re.search(r"(\d+) KV blocks of (\d+)", text)
            if m:
                self.blocks, self.block_size = int(m.group(1)), int(m.group(2))
            m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return
            time.sleep(0.1)
        raise RuntimeError(f"troupe did not say it was serving within 120 s:\n{self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError as e:
            return f"(no log: {e})"

    def stop(self, timeout_s=60.0):
        """SIGTERM, then SIGKILL after timeout_s; returns the exit status (None if it was killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams


async def open_conn(port, slow=False):
    """A connection to the server; a slow one has a small receive buffer and stream limit, so
    that what the driver does not read stays queued in the server."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if slow:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=(1024 if slow else 1 << 16))


def reset(writer):
    """Closes the connection with a TCP reset (SO_LINGER 0): a client killed mid-request."""
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def close_quietly(writer):
    try:
        writer.close()
    except Exception:
        pass


async def read_head(reader):
    """The status and headers (lower-case names) of a response."""
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        line = line.decode("latin-1").rstrip("\r\n")
        if not line:
            return status, headers
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()


async def read_body(reader, headers):
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    data = b""
    async for chunk in read_chunks(reader):
        data += chunk
    return data


async def read_chunks(reader):
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise asyncio.IncompleteReadError(b"", None)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except Exception:
        return "unreadable"


# ---------------------------------------------------------------------------------------------
# A minimal WebSocket client (RFC 6455): text frames, masked; answers pings; no extensions.


CLOSED = object()  # put into every request's queue when the connection ends


class WsConn:
    def __init__(self, port, slow=None):
        self.port = port
        self.slow = slow            # None, or (seconds per frame, stall seconds or 0)
        self.queues = {}
        self.closed = False
        self.killed = False         # the driver killed it on purpose
        self.poisoned = False       # a request on it passed its deadline: close it after
        self.drain_lock = asyncio.Lock()
        self.reader_task = None
        self.close_reason = None

    async def open(self):
        self.reader, self.writer = await open_conn(self.port, slow=self.slow is not None)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write((f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
            close_quietly(self.writer)
            raise ConnectionError("websocket upgrade refused: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
        self.reader_task = asyncio.create_task(self._read_loop())

    @staticmethod
    def _frame(opcode, payload):
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        if n:
            m = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
        return head + mask + payload

    async def _write(self, opcode, payload):
        if self.closed:
            raise ConnectionError("websocket closed")
        self.writer.write(self._frame(opcode, payload))
        async with self.drain_lock:
            await self.writer.drain()

    async def send(self, obj):
        await self._write(0x1, json.dumps(obj).encode())

    async def _read_frame(self):
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        mask = await self.reader.readexactly(4) if b1 & 0x80 else None
        data = await self.reader.readexactly(n)
        if mask and n:
            m = (mask * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
        return bool(b0 & 0x80), b0 & 0x0F, data

    async def _read_loop(self):
        message = b""
        stalled = False
        try:
            while True:
                fin, op, data = await self._read_frame()
                if op == 0x9:  # ping
                    await self._write(0xA, data)
                    continue
                if op == 0x8:
                    self.close_reason = "close frame from the server"
                    break
                if op in (0x1, 0x2, 0x0):
                    message += data
                    if not fin:
                        continue
                    msg = json.loads(message)
                    message = b""
                    q = self.queues.get(msg.get("id"))
                    if q is not None:
                        q.put_nowait(msg)
                    if self.slow:
                        delay, stall = self.slow
                        if stall and not stalled and random.random() < 0.1:
                            stalled = True
                            await asyncio.sleep(stall)
                        await asyncio.sleep(delay)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            self.close_reason = self.close_reason or f"{type(e).__name__}"
        except asyncio.CancelledError:
            self.close_reason = self.close_reason or "closed by the driver"
        finally:
            self.closed = True
            for q in self.queues.values():
                q.put_nowait(CLOSED)

    def register(self, rid):
        q = asyncio.Queue()
        self.queues[rid] = q
        if self.closed:
            q.put_nowait(CLOSED)
        return q

    def forget(self, rid):
        self.queues.pop(rid, None)

    def kill(self, rst=True):
        """Gone without a close frame: a reset (SO_LINGER 0), or a plain TCP close."""
        self.killed = True
        if rst:
            reset(self.writer)
        else:
            close_quietly(self.writer)
        if self.reader_task:
            self.reader_task.cancel()

    async def close(self):
        if not self.closed:
            try:
                await asyncio.wait_for(self._write(0x8, struct.pack("!H", 1000)), 5)
            except Exception:
                pass
        close_quietly(self.writer)
        if self.reader_task:
            self.reader_task.cancel()
            try:
                await self.reader_task
            except BaseException:
                pass


# ---------------------------------------------------------------------------------------------
# Requests


class Spec:
    """One request: its kind, what the client does with it, and its body."""
    counter = 0

    def __init__(self, rng, args, kind, shared_prefix):
        Spec.counter += 1
        self.n = Spec.counter
        self.kind = kind
        self.action = rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS])[0]
        self.stream = kind.endswith("stream") or kind == "websocket"
        words = max(1, int(math.exp(rng.uniform(math.log(3), math.log(args.max_prompt_words)))))
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        if rng.random() < 0.3:  # a shared start, for the prefix cache
            text = shared_prefix + " " + text
        self.max_tokens = max(1, int(math.exp(rng.uniform(0, math.log(args.max_tokens)))))
        if self.action == "slow":  # long enough to fall behind
            self.max_tokens = rng.randint(min(64, args.max_tokens), args.max_tokens)
        body = {"max_tokens": self.max_tokens,
                "temperature": rng.choice([0, 0.7, 1.0]),
                "seed": rng.randrange(1 << 31)}
        if rng.random() < 0.5 or self.action == "slow":
            body["ignore_eos"] = True
        if rng.random() < 0.1:
            body["stop"] = ["\n\n"]
        chat = "chat" in kind or (kind == "websocket" and rng.random() < 0.5)
        if chat:
            msgs = [{"role": "user", "content": text}]
            if rng.random() < 0.5:
                msgs.insert(0, {"role": "system", "content": shared_prefix})
            body["messages"] = msgs
        else:
            body["prompt"] = text
        if kind.startswith("http"):
            body["model"] = "soak"
            if self.stream:
                body["stream"] = True
                if rng.random() < 0.7:
                    body["stream_options"] = {"include_usage": True}
        self.timeout_ms = None
        if self.action == "timeout":
            self.timeout_ms = rng.randint(50, 3000)
            body["timeout_ms"] = self.timeout_ms
        if self.action == "bad":
            body["temprature"] = 0.5  # an unknown field: refused with 400 / invalid_request
        self.body = body
        # When a cancel or kill fires: after k token events, or (k == 0, and always for a
        # whole answer) after a delay.
        self.trigger_k = rng.randint(0, max(0, self.max_tokens - 1)) if self.stream else 0
        self.trigger_delay = rng.uniform(0.05, 1.0) if self.stream else rng.uniform(0.05, 3.0)
        self.rst = rng.random() < 0.5  # a WebSocket kill: reset, or a TCP close without a close frame
        self.slow_delay = rng.uniform(0.1, 0.5)
        self.stall = args.write_timeout_ms / 1000.0 + 2.0 if rng.random() < 0.25 else 0.0
        # A request ends within the deadline, or for a slow reader the deadline plus its own
        # reading time.
        self.deadline_s = args.deadline_s
        if self.action == "slow":
            self.deadline_s += self.max_tokens * self.slow_delay + self.stall

    def triggers(self):
        return self.action in ("cancel", "kill")


class Result:
    def __init__(self, spec, outcome, code=None, tokens=0, detail=None):
        self.spec = spec
        self.outcome = outcome
        self.code = code
        self.tokens = tokens
        self.detail = detail


class Driver:
    def __init__(self, args, port, out_dir):
        self.args = args
        self.port = port
        self.out_dir = out_dir
        self.results = []
        self.started = 0
        self.in_flight = 0
        self.stopped = False  # set when the server died: the loops stop
        prefix_rng = random.Random(args.seed)
        self.shared_prefix = " ".join(prefix_rng.choice(WORDS) for _ in range(48))
        self.req_csv = open(os.path.join(out_dir, "requests.csv"), "w", newline="")
        self.req_writer = csv.writer(self.req_csv)
        self.req_writer.writerow(["n", "t_s", "kind", "action", "outcome", "code", "tokens",
                                  "seconds", "prompt_chars", "max_tokens", "detail"])
        self.failures = open(os.path.join(out_dir, "failures.log"), "w")
        self.t0 = time.monotonic()

    def record(self, res, seconds):
        self.results.append(res)
        s = res.spec
        prompt = s.body.get("prompt") or json.dumps(s.body.get("messages"))
        self.req_writer.writerow([s.n, f"{time.monotonic() - self.t0:.1f}", s.kind, s.action, res.outcome,
                                  res.code or "", res.tokens, f"{seconds:.2f}", len(prompt),
                                  s.max_tokens, res.detail or ""])
        if res.outcome in ("error", "hung"):
            self.failures.write(json.dumps({"n": s.n, "kind": s.kind, "action": s.action,
                                            "outcome": res.outcome, "code": res.code,
                                            "detail": res.detail, "seconds": round(seconds, 2),
                                            "body": s.body}) + "\n")
            self.failures.flush()

    # -- HTTP --------------------------------------------------------------------------------

    async def http_request(self, spec):
        path = "/v1/chat/completions" if "chat" in spec.kind else "/v1/completions"
        body = json.dumps(spec.body).encode()
        start = time.monotonic()
        deadline = start + spec.deadline_s
        try:
            reader, writer = await open_conn(self.port, slow=spec.action == "slow")
        except OSError as e:
            return Result(spec, "error", "connect", detail=str(e))
        state = {"events": 0, "tokens": 0, "last": "sent"}
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            task = asyncio.create_task(self._http_read(reader, spec, state))
            fire_at = start + spec.trigger_delay if spec.triggers() and spec.trigger_k == 0 else None
            while True:
                until = min(deadline, fire_at) if fire_at else deadline
                done, _ = await asyncio.wait({task}, timeout=max(0.0, until - time.monotonic()))
                if done:
                    res = task.result()
                    break
                if fire_at and time.monotonic() >= fire_at:
                    task.cancel()
                    res = "fire"
                    break
                task.cancel()
                return Result(spec, "hung", detail=f"no end after {spec.deadline_s:.0f} s; "
                              f"last seen: {state['last']}, {state['events']} events")
            if res == "fire":
                if spec.action == "kill":
                    reset(writer)
                    return Result(spec, "killed", tokens=state["tokens"])
                close_quietly(writer)
                return Result(spec, "cancelled", tokens=state["tokens"])
            return res
        except (ConnectionError, OSError) as e:
            return Result(spec, "error", "connection", detail=f"{type(e).__name__}: {e}")
        finally:
            close_quietly(writer)

    async def _http_read(self, reader, spec, state):
        """The response's outcome, or "fire" once a stream reached its cancel / kill point."""
        slow = spec.action == "slow"
        try:
            status, headers = await read_head(reader)
            state["last"] = f"status {status}"
            if status != 200:
                code = error_code(await read_body(reader, headers))
                if status == 429 and code == "queue_full":
                    return Result(spec, "busy", "429 queue_full")
                if status == 503 and code == "timeout" and spec.timeout_ms:
                    return Result(spec, "timeout", "503 timeout")
                if status == 400 and spec.action == "bad" and code == "invalid_request":
                    return Result(spec, "refused", "400 invalid_request")
                return Result(spec, "error", f"{status} {code}")
            if not spec.stream:
                if slow:
                    await asyncio.sleep(spec.slow_delay * 10)
                msg = json.loads(await read_body(reader, headers))
                finish = msg["choices"][0]["finish_reason"]
                tokens = msg.get("usage", {}).get("completion_tokens", 0)
                return self._finish(spec, finish, tokens, fired=False)
            finish = None
            done = False
            tokens_from_usage = None
            stalled = False
            buf = b""
            async for chunk in read_chunks(reader):
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    event = event.strip()
                    if not event.startswith(b"data:"):
                        continue
                    data = event[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        state["last"] = "[DONE]"
                        continue
                    msg = json.loads(data)
                    if "error" in msg:
                        code = msg["error"].get("code")
                        state["last"] = f"error event {code}"
                        if code == "slow_consumer":
                            return Result(spec, "slow_consumer", "slow_consumer", state["tokens"])
                        return Result(spec, "error", f"stream {code}", state["tokens"],
                                      detail=msg["error"].get("message"))
                    if msg.get("usage"):
                        tokens_from_usage = msg["usage"].get("completion_tokens")
                    if msg.get("choices"):
                        c = msg["choices"][0]
                        if c.get("finish_reason"):
                            finish = c["finish_reason"]
                            state["last"] = f"finish_reason {finish}"
                        else:
                            state["events"] += 1
                            state["tokens"] += 1
                            state["last"] = f"token event {state['events']}"
                    if spec.triggers() and spec.trigger_k and state["events"] >= spec.trigger_k:
                        return "fire"
                    if slow:
                        if spec.stall and not stalled and state["events"] > 2:
                            stalled = True
                            await asyncio.sleep(spec.stall)
                        await asyncio.sleep(spec.slow_delay)
            if not done or finish is None:
                return Result(spec, "slow_dropped" if slow else "error", "incomplete stream",
                              state["tokens"], detail=f"body ended; last seen {state['last']}")
            tokens = tokens_from_usage if tokens_from_usage is not None else state["tokens"]
            return self._finish(spec, finish, tokens, fired=False)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            if slow:
                return Result(spec, "slow_dropped", "connection closed", state["tokens"])
            return Result(spec, "error", "connection closed", state["tokens"],
                          detail=f"{type(e).__name__}; last seen {state['last']}")

    def _finish(self, spec, finish, tokens, fired, detail=None):
        if finish in ("stop", "length"):
            return Result(spec, "completed", tokens=tokens)
        if finish == "timeout" and spec.timeout_ms:
            return Result(spec, "timeout", "finish timeout", tokens)
        if finish == "cancelled" and fired:
            return Result(spec, "cancelled", tokens=tokens)
        if finish == "cancelled" and detail and detail.startswith("slow consumer"):
            return Result(spec, "slow_consumer", "slow_consumer", tokens)
        return Result(spec, "error", f"finish {finish}", tokens, detail=detail)

    # -- WebSocket ---------------------------------------------------------------------------

    async def ws_request(self, conn, spec, rid):
        start = time.monotonic()
        deadline = start + spec.deadline_s
        q = conn.register(rid)
        frame = dict(spec.body)
        frame["type"] = "generate"
        frame["id"] = rid
        fired = False
        events = 0
        tokens = 0
        last = "sent"
        try:
            try:
                await conn.send(frame)
            except (ConnectionError, OSError) as e:
                if conn.killed:
                    return Result(spec, "killed")
                return Result(spec, "error", "websocket send", detail=str(e))
            fire_at = start + spec.trigger_delay if spec.triggers() and spec.trigger_k == 0 else None
            while True:
                until = deadline if (fired or fire_at is None) else min(deadline, fire_at)
                try:
                    msg = await asyncio.wait_for(q.get(), max(0.0, until - time.monotonic()))
                except asyncio.TimeoutError:
                    if not fired and fire_at is not None and time.monotonic() < deadline:
                        fired = True
                        r = await self._ws_fire(conn, spec, rid, tokens)
                        if r:
                            return r
                        continue
                    conn.poisoned = True
                    return Result(spec, "hung", detail=f"no end after {spec.deadline_s:.0f} s; "
                                  f"last seen: {last}, {events} events")
                if msg is CLOSED:
                    if conn.killed:
                        return Result(spec, "killed", tokens=tokens)
                    if spec.action == "slow":
                        return Result(spec, "slow_dropped", "connection closed", tokens)
                    return Result(spec, "error", "websocket closed", tokens,
                                  detail=f"{conn.close_reason}; last seen {last}")
                t = msg.get("type")
                last = t
                if t == "accepted":
                    continue
                if t == "delta":
                    events += 1
                    tokens += len(msg.get("tokens", ())) or 1
                    if spec.triggers() and not fired and spec.trigger_k and events >= spec.trigger_k:
                        fired = True
                        r = await self._ws_fire(conn, spec, rid, tokens)
                        if r:
                            return r
                    continue
                if t == "done":
                    used = msg.get("usage", {}).get("completion_tokens", tokens)
                    return self._finish(spec, msg.get("finish_reason"), used,
                                        fired=fired and spec.action == "cancel", detail=msg.get("detail"))
                if t == "error":
                    code = msg.get("code")
                    if code == "queue_full":
                        return Result(spec, "busy", "ws queue_full")
                    if code == "invalid_request" and spec.action == "bad":
                        return Result(spec, "refused", "ws invalid_request")
                    return Result(spec, "error", f"ws {code}", tokens, detail=msg.get("message"))
        finally:
            conn.forget(rid)

    async def _ws_fire(self, conn, spec, rid, tokens):
        """Cancels (a cancel frame; the request must still end with done) or kills the connection."""
        if spec.action == "kill":
            conn.kill(rst=spec.rst)
            return Result(spec, "killed", tokens=tokens)
        try:
            await conn.send({"type": "cancel", "id": rid})
        except (ConnectionError, OSError) as e:
            return Result(spec, "error", "websocket send", detail=str(e))
        return None

    # -- the loops ---------------------------------------------------------------------------

    async def timed(self, coro, spec):
        self.started += 1
        self.in_flight += 1
        t = time.monotonic()
        try:
            res = await coro
        except Exception as e:  # a driver bug must not pass for a server error silently
            res = Result(spec, "error", "driver", detail=f"{type(e).__name__}: {e}")
        self.in_flight -= 1
        self.record(res, time.monotonic() - t)
        return res

    async def client_loop(self, idx, end_time):
        rng = random.Random(self.args.seed * 100003 + idx)
        ws = None
        next_id = 0
        while time.monotonic() < end_time and not self.stopped:
            kind = rng.choices(KINDS, [0.15, 0.2, 0.15, 0.2, 0.3])[0]
            results = []
            if kind != "websocket":
                spec = Spec(rng, self.args, kind, self.shared_prefix)
                results.append(await self.timed(self.http_request(spec), spec))
            else:
                specs = [Spec(rng, self.args, kind, self.shared_prefix)
                         for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3))]
                slow = [s for s in specs if s.action == "slow"]
                fast = [s for s in specs if s.action != "slow"]
                jobs = []
                if fast:
                    if ws is None or ws.closed:
                        ws = WsConn(self.port)
                        try:
                            await ws.open()
                        except (OSError, ConnectionError, asyncio.IncompleteReadError) as e:
                            ws = None
                            for s in fast:
                                self.started += 1
                                r = Result(s, "error", "websocket connect", detail=str(e))
                                self.record(r, 0.0)
                                results.append(r)
                            fast = []
                    for s in fast:
                        next_id += 1
                        jobs.append(self.timed(self.ws_request(ws, s, f"c{idx}-{next_id}"), s))
                for s in slow:
                    next_id += 1
                    jobs.append(self.timed(self.slow_ws_request(s, f"c{idx}-{next_id}"), s))
                results += await asyncio.gather(*jobs)
                if ws is not None and (ws.closed or ws.killed or ws.poisoned):
                    await ws.close()
                    ws = None
            if any(r.outcome in ("busy", "timeout") or r.code in ("connect", "websocket connect")
                   for r in results):
                await asyncio.sleep(rng.uniform(0.2, 1.0))
        if ws is not None:
            await ws.close()

    async def slow_ws_request(self, spec, rid):
        conn = WsConn(self.port, slow=(spec.slow_delay, spec.stall))
        try:
            await conn.open()
        except (OSError, ConnectionError, asyncio.IncompleteReadError) as e:
            return Result(spec, "error", "websocket connect", detail=str(e))
        try:
            return await self.ws_request(conn, spec, rid)
        finally:
            await conn.close()

    def tally(self):
        by_kind = {k: collections.Counter() for k in KINDS}
        codes = collections.Counter()
        tokens = 0
        for r in self.results:
            by_kind[r.spec.kind][r.outcome] += 1
            tokens += r.tokens or 0
            if r.outcome in ("error", "hung"):
                codes[r.code or r.outcome] += 1
        return by_kind, codes, tokens


# ---------------------------------------------------------------------------------------------
# /metrics


async def http_get(port, path, timeout=10.0):
    async def go():
        reader, writer = await open_conn(port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            status, headers = await read_head(reader)
            return status, await read_body(reader, headers)
        finally:
            close_quietly(writer)
    return await asyncio.wait_for(go(), timeout)


def parse_metrics(text):
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            pass
    return values


def http_status_counts(m):
    """{status: count} summed over routes, from troupe_http_responses_total."""
    out = collections.Counter()
    for k, v in m.items():
        mm = re.match(r'troupe_http_responses_total\{.*status="(\d+)".*\}', k)
        if mm:
            out[mm.group(1)] += int(v)
    return out


async def get_metrics(port):
    status, body = await http_get(port, "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return parse_metrics(body.decode())


class Sampler:
    def __init__(self, server, driver, path):
        self.server = server
        self.driver = driver
        self.f = open(path, "w", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(["t_s", "rss_kib"] + [c for c, _ in METRIC_COLUMNS] +
                        ["http_429", "http_503", "http_5xx_other", "client_started", "client_in_flight",
                         "client_errors", "client_hung"])
        self.rss = []             # (t, kib)
        self.last = {}
        self.metric_failures = 0
        self.died = False

    async def sample(self):
        t = time.monotonic() - self.driver.t0
        if not self.server.alive():
            self.died = True
            return
        rss = self.server.rss_kib()
        try:
            m = await get_metrics(self.server.port)
            self.last = m
        except Exception:
            self.metric_failures += 1
            m = {}
        if rss is not None:
            self.rss.append((t, rss))
        st = http_status_counts(m)
        errs = sum(1 for r in self.driver.results if r.outcome == "error")
        hung = sum(1 for r in self.driver.results if r.outcome == "hung")
        self.w.writerow([f"{t:.1f}", rss if rss is not None else ""] +
                        [int(m[s]) if s in m else "" for _, s in METRIC_COLUMNS] +
                        [st.get("429", 0), st.get("503", 0),
                         sum(v for k, v in st.items() if k.startswith("5") and k != "503"),
                         self.driver.started, self.driver.in_flight, errs, hung])
        self.f.flush()

    async def run(self, stop_event, progress_s=30.0):
        next_progress = progress_s
        while True:
            try:
                await asyncio.wait_for(stop_event.wait(), self.driver.args.sample_s)
                return
            except asyncio.TimeoutError:
                pass
            await self.sample()
            if self.died:
                return
            t = time.monotonic() - self.driver.t0
            if t >= next_progress:
                next_progress += progress_s
                c = collections.Counter(r.outcome for r in self.driver.results)
                m = self.last
                print(f"  {t:6.0f} s: {self.driver.started} requests sent, {c['completed']} completed, "
                      f"{c['cancelled']} cancelled, {c['killed']} killed, {c['busy']} busy, "
                      f"{c['error']} errors, {c['hung']} never ended; RSS "
                      f"{mib(self.rss[-1][1]) if self.rss else 0:.0f} MiB; KV used "
                      f"{int(m.get(METRIC_COLUMNS[0][1], 0))}/{int(m.get('troupe_kv_cache_capacity_blocks', 0))}",
                      flush=True)


# ---------------------------------------------------------------------------------------------
# The run


def idle(m):
    keys = ["troupe_front_door_requests_in_flight", "troupe_num_requests_running",
            "troupe_num_requests_waiting", "troupe_num_requests_batching", "troupe_num_requests_swapped",
            'troupe_kv_cache_blocks{state="used"}', 'troupe_kv_swap_blocks{state="used"}']
    return all(m.get(k, 0) == 0 for k in keys)


def connections_closed(m):
    # The one connection left is the driver's own GET /metrics.
    return m.get("troupe_http_connections", 0) <= 1 and m.get("troupe_websocket_sessions", 0) == 0


async def soak(args, server, out_dir):
    driver = Driver(args, server.port, out_dir)
    sampler = Sampler(server, driver, os.path.join(out_dir, "samples.csv"))
    stop = asyncio.Event()
    await sampler.sample()
    rss_boot = sampler.rss[-1][1] if sampler.rss else None
    end_time = driver.t0 + args.minutes * 60.0
    sampler_task = asyncio.create_task(sampler.run(stop))
    loops = [asyncio.create_task(driver.client_loop(i, end_time)) for i in range(args.clients)]

    async def watch_death():
        while server.alive():
            await asyncio.sleep(0.2)
        driver.stopped = True
    death = asyncio.create_task(watch_death())
    done, _ = await asyncio.wait(loops + [death], return_when=asyncio.FIRST_COMPLETED)
    while death not in done and not all(t.done() for t in loops):
        done, _ = await asyncio.wait(loops + [death], return_when=asyncio.FIRST_COMPLETED)
    load_end = time.monotonic() - driver.t0
    died = not server.alive()
    if died:
        for t in loops:
            t.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    death.cancel()
    for t in loops:
        if t.done() and not t.cancelled() and t.exception():
            raise t.exception()

    # Wait for the server to go idle, then take the final numbers.
    idle_after = None
    final = {}
    t_idle0 = time.monotonic()
    last_request_ok = None
    if not died:
        while time.monotonic() - t_idle0 < args.idle_timeout_s:
            try:
                final = await get_metrics(server.port)
            except Exception:
                final = {}
            if final and idle(final) and connections_closed(final):
                idle_after = time.monotonic() - t_idle0
                break
            await asyncio.sleep(0.5)
        await sampler.sample()
        # The server still serves: one last small request.
        try:
            spec_body = json.dumps({"model": "soak", "prompt": "The last request", "max_tokens": 4}).encode()
            reader, writer = await open_conn(server.port)
            writer.write(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(spec_body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + spec_body)
            status, headers = await asyncio.wait_for(read_head(reader), 60)
            await asyncio.wait_for(read_body(reader, headers), 60)
            close_quietly(writer)
            last_request_ok = status == 200
        except Exception:
            last_request_ok = False
    stop.set()
    await sampler_task
    rss_warm = None
    for t, kib in sampler.rss:
        if t >= args.warmup_s:
            rss_warm = kib
            break
    if rss_warm is None and sampler.rss:
        rss_warm = sampler.rss[-1][1]
    driver.req_csv.close()
    driver.failures.close()
    return {"driver": driver, "sampler": sampler, "final": final, "idle_after": idle_after,
            "died": died or sampler.died, "rss_boot": rss_boot, "rss_warm": rss_warm,
            "load_s": load_end, "last_request_ok": last_request_ok}


def summarize(args, server, r, exit_status, out_dir, started_at):
    driver, sampler, final = r["driver"], r["sampler"], r["final"]
    by_kind, codes, tokens = driver.tally()
    lines = []
    say = lines.append
    pool_bytes = args.kv_pool_mib * MiB
    say(f"soak: {args.minutes:g} min of load ({r['load_s']:.0f} s with the drain), started {started_at}, "
        f"{os.cpu_count()} CPUs, load average before {open('/proc/loadavg').read().split()[0]}")
    st_bin = os.stat(args.troupe)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    say(f"server: {' '.join(server.cmd)}")
    say(f"binary: {args.troupe}, {st_bin.st_size} bytes, built "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(st_bin.st_mtime))}; soak script at commit {commit or 'unknown'}")
    say(f"capacity: max_num_seqs {args.max_num_seqs} streams; {args.clients} client loops "
        f"(WebSocket loops sometimes send 2-3 at once); KV pool {args.kv_pool_mib} MiB = "
        f"{server.blocks} blocks of {server.block_size}; per-request deadline {args.deadline_s:.0f} s")
    say("")
    cols = ["total"] + OUTCOMES
    width = max(len(k) for k in KINDS + ["all"]) + 2
    say("requests".ljust(width) + "".join(c.rjust(14 if c in ("slow_consumer", "slow_dropped") else 10)
                                          for c in cols))
    total = collections.Counter()
    for k in KINDS + ["all"]:
        c = total if k == "all" else by_kind[k]
        if k != "all":
            total.update(c)
        row = [sum(c.values())] + [c[o] for o in OUTCOMES]
        say(k.ljust(width) + "".join(str(v).rjust(14 if name in ("slow_consumer", "slow_dropped") else 10)
                                     for name, v in zip(cols, row)))
    actions = collections.Counter(r_.spec.action for r_ in driver.results)
    say("actions: " + ", ".join(f"{a} {actions[a]}" for a, _ in ACTIONS))
    say("errors by code: " + (", ".join(f"{k} {v}" for k, v in codes.most_common()) or "none"))
    allowed = collections.Counter(r_.code for r_ in driver.results
                                  if r_.outcome in ("busy", "timeout", "slow_consumer", "slow_dropped", "refused"))
    say("allowed refusals by code: " + (", ".join(f"{k} {v}" for k, v in allowed.most_common()) or "none"))
    st = http_status_counts(final or sampler.last)
    m = final or sampler.last
    say(f"tokens: {tokens} output tokens seen by the clients; the server counted "
        f"{int(m.get('troupe_generation_tokens_total', 0))} generated, "
        f"{int(m.get('troupe_prompt_tokens_total', 0))} prompt ({int(m.get('troupe_prefix_cache_hits_total', 0))} from the prefix cache)")
    def series(name):
        return int(m.get(name, 0))
    say("server: HTTP statuses " + ", ".join(f"{k} {v}" for k, v in sorted(st.items())) +
        "; cancelled client_gone %d, slow_consumer %d; closed buffer_full %d, write_timeout %d; "
        "preemptions %d" % (
            series('troupe_front_door_cancelled_total{reason="client_gone"}'),
            series('troupe_front_door_cancelled_total{reason="slow_consumer"}'),
            series('troupe_front_door_closed_total{reason="buffer_full"}'),
            series('troupe_front_door_closed_total{reason="write_timeout"}'),
            series("troupe_num_preemptions_total")))
    rss_vals = [k for _, k in sampler.rss]
    rss_end = rss_vals[-1] if rss_vals else None
    rss_max = max(rss_vals) if rss_vals else None
    if rss_vals:
        say(f"RSS (MiB): boot {mib(r['rss_boot']):.1f}, after warm-up ({args.warmup_s:.0f} s) "
            f"{mib(r['rss_warm']):.1f}, max {mib(rss_max):.1f}, end {mib(rss_end):.1f}")
    used = int(m.get('troupe_kv_cache_blocks{state="used"}', -1))
    cached = int(m.get('troupe_kv_cache_blocks{state="cached"}', -1))
    free = int(m.get('troupe_kv_cache_blocks{state="free"}', -1))
    cap = int(m.get("troupe_kv_cache_capacity_blocks", -1))
    say(f"KV blocks at end: used {used}, cached (prefix cache) {cached}, free {free}, pool {cap}")

    checks = []

    def check(ok, text):
        checks.append((ok, text))

    hung = total["hung"]
    check(hung == 0, f"every request ended: {hung} of {sum(total.values())} never ended within its deadline")
    check(not r["died"], "the server stayed up" if not r["died"] else
          f"the server died (exit status {server.proc.returncode})")
    bad_series = {s: int(m.get(s, 0)) for s in SERVER_ERROR_SERIES if m.get(s, 0)}
    bad_status = {k: v for k, v in st.items() if k.startswith("5") and k != "503"}
    n_err = total["error"]
    check(n_err == 0 and not bad_series and not bad_status,
          f"no server errors: {n_err} failed requests"
          + (f" ({', '.join(f'{k} {v}' for k, v in codes.most_common() if k != 'hung')})" if n_err else "")
          + (f"; /metrics {bad_series}" if bad_series else "")
          + (f"; HTTP {bad_status}" if bad_status else ""))
    if r["died"]:
        check(False, "not checked, the server died: idle, KV blocks returned, RSS, a last request, SIGTERM")
        return finish_summary(args, r, lines, checks, by_kind, codes, actions, tokens, st, out_dir, started_at,
                              None, None, None, None, None)
    went_idle = r["idle_after"] is not None
    check(went_idle, f"the server went idle after the last client ({r['idle_after']:.1f} s)" if went_idle else
          f"the server did not go idle within {args.idle_timeout_s:.0f} s: in flight "
          f"{int(m.get('troupe_front_door_requests_in_flight', -1))}, running "
          f"{int(m.get('troupe_num_requests_running', -1))}, waiting {int(m.get('troupe_num_requests_waiting', -1))}, "
          f"connections {int(m.get('troupe_http_connections', -1))}, websockets {int(m.get('troupe_websocket_sessions', -1))}")
    swap_used = int(m.get('troupe_kv_swap_blocks{state="used"}', 0))
    check(used == 0 and swap_used == 0 and cap > 0 and used + cached + free == cap,
          f"every KV block returned: used {used} (swap {swap_used}) once idle; cached {cached} + free {free} "
          f"= {cached + free} of {cap}")
    if rss_vals and r["rss_warm"]:
        growth = rss_end - r["rss_warm"]
        limit = (pool_bytes + args.rss_margin_mib * MiB) / 1024
        check(growth < limit, f"RSS growth after warm-up {mib(growth):+.1f} MiB < KV pool "
              f"{args.kv_pool_mib} MiB + margin {args.rss_margin_mib:g} MiB")
    else:
        check(False, "RSS could not be read")
    check(r["last_request_ok"] is True, "a request after the soak got 200" if r["last_request_ok"]
          else "a request after the soak did not get 200")
    check(exit_status == 0, f"SIGTERM: exit status {exit_status}")
    check(sampler.metric_failures == 0, f"/metrics answered every sample ({sampler.metric_failures} failures)")
    return finish_summary(args, r, lines, checks, by_kind, codes, actions, tokens, st, out_dir, started_at,
                          rss_max, rss_end, used, cached, (free, cap))


def finish_summary(args, r, lines, checks, by_kind, codes, actions, tokens, st, out_dir, started_at,
                   rss_max, rss_end, used, cached, free_cap):
    say = lines.append
    free, cap = free_cap or (None, None)
    say("")
    say("checks:")
    for ok, text in checks:
        say(f"  {'PASS' if ok else 'FAIL'}  {text}")
    passed = all(ok for ok, _ in checks)
    say(f"result: {'PASS' if passed else 'FAIL'}; files in {out_dir}")
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"minutes": args.minutes, "started": started_at, "clients": args.clients,
                   "max_num_seqs": args.max_num_seqs, "kv_pool_mib": args.kv_pool_mib,
                   "by_kind": {k: dict(v) for k, v in by_kind.items()}, "errors": dict(codes),
                   "actions": dict(actions), "tokens": tokens,
                   "rss_kib": {"boot": r["rss_boot"], "warm": r["rss_warm"], "max": rss_max, "end": rss_end},
                   "kv_blocks_end": {"used": used, "cached": cached, "free": free, "pool": cap},
                   "http_statuses": dict(st), "checks": [{"ok": ok, "check": t} for ok, t in checks],
                   "passed": passed}, f, indent=1)
    print(text, flush=True)
    return passed


def main():
    args = parse_args()
    os.chdir(ROOT)
    for path, what in [(args.troupe, "the troupe binary"), (args.model, "the model")]:
        if not os.path.isfile(path):
            hint = " (build it: make build, or pass --troupe)" if what == "the troupe binary" else \
                " (fetch it: make model, or pass --model)"
            print(f"soak: {what} {path} is missing{hint}", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    server = Server(args, os.path.join(args.out, "server.log"))
    try:
        server.start()
    except RuntimeError as e:
        print(f"soak: {e}", file=sys.stderr)
        server.stop()
        return 2
    print(f"soak: troupe serving on 127.0.0.1:{server.port} (pid {server.proc.pid}), {server.blocks} KV blocks; "
          f"{args.clients} clients for {args.minutes:g} min; results in {args.out}", flush=True)
    try:
        r = asyncio.run(soak(args, server, args.out))
    finally:
        exit_status = server.stop()
    passed = summarize(args, server, r, exit_status, args.out, started_at)
    if not passed:
        print("soak: server log tail:\n" + server.log_tail(15), file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
