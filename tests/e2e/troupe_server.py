"""Starts and stops `troupe serve` for the Python end-to-end tests (tests/e2e/test_*.py).

    args = troupe_server.parse_args("what this test checks")
    with troupe_server.start(args.troupe, args.model) as server:
        ...  # server.base_url, server.ws_url

The server picks a free port (--port 0); we learn it from the line it prints on stderr
when ready, then wait for GET /health to answer 200. Its stdout and stderr go to a log
file whose tail is printed when something fails, so a broken server explains itself.
"""

import argparse
import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

READY_LINE = re.compile(r"troupe: serving .* on (http://\S+)")


class ServerError(RuntimeError):
    """The server did not come up, or died; the message carries the tail of its log."""


def parse_args(description):
    """The arguments every tests/e2e/test_*.py takes (see tests/e2e/suite.cmake)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--troupe", required=True, help="path to the troupe binary")
    parser.add_argument("--model", required=True, help="GGUF model to serve")
    parser.add_argument("--build-dir", default=None, help="the CMake build directory")
    args = parser.parse_args()
    # A missing model is a failure, never a skip: say how to get it.
    if not os.path.isfile(args.model):
        sys.exit(f"FAIL: the model {args.model} is missing: run `make model` "
                 f"(scripts/fetch_model.sh) to fetch it")
    return args


class TroupeServer:
    def __init__(self, process, log_path):
        self.process = process
        self.log_path = log_path
        self.base_url = None  # http://HOST:PORT, no trailing slash, once the server is ready
        self.ws_url = None    # ws://HOST:PORT/v1/ws

    def _set_base_url(self, base_url):
        self.base_url = base_url.rstrip("/")
        self.ws_url = "ws" + self.base_url[len("http"):] + "/v1/ws"

    def log_tail(self, num_lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-num_lines:])
        except OSError as e:
            return f"(no log: {e})"

    def is_running(self):
        return self.process.poll() is None

    def stop(self, timeout_s=15.0):
        """SIGTERM, then SIGKILL if it has not exited within timeout_s. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                print(f"troupe_server: no exit {timeout_s:.0f} s after SIGTERM, killing",
                      file=sys.stderr)
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is not None:
            print(f"--- tail of the troupe log ({self.log_path}) ---\n{self.log_tail()}",
                  file=sys.stderr)
        return False


# A proxy from the environment must not stand between a test and its local server.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url, timeout_s=10.0):
    """GET url without any proxy; returns (status, headers, body bytes), also for 4xx/5xx."""
    try:
        with _direct.open(url, timeout=timeout_s) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _health_status(base_url, timeout_s):
    try:
        with _direct.open(base_url + "/health", timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def start(binary, model, extra_args=(), threads=2, host="127.0.0.1", startup_timeout_s=90.0,
          log_path=None):
    """Starts `binary serve --model model --host host --port 0 --threads threads *extra_args`
    and returns a TroupeServer once GET /health answers 200; raises ServerError otherwise."""
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="troupe-serve-", suffix=".log")
        os.close(fd)
    command = [binary, "serve", "--model", model, "--host", host, "--port", "0",
               "--threads", str(threads), *extra_args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    server = TroupeServer(process, log_path)
    atexit.register(server.stop)

    def fail(why):
        server.stop()
        raise ServerError(f"{why}\ncommand: {' '.join(command)}\n"
                          f"--- tail of {log_path} ---\n{server.log_tail()}")

    deadline = time.monotonic() + startup_timeout_s
    while server.base_url is None:
        if process.poll() is not None:
            fail(f"troupe serve exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            fail(f"troupe serve printed no 'serving ... on http://HOST:PORT' line "
                 f"within {startup_timeout_s:.0f} s")
        with open(log_path, errors="replace") as f:
            match = READY_LINE.search(f.read())
        if match:
            server._set_base_url(match.group(1))
        else:
            time.sleep(0.05)

    while True:
        status = _health_status(server.base_url, timeout_s=2.0)
        if status == 200:
            return server
        if process.poll() is not None:
            fail(f"troupe serve exited with code {process.returncode} while /health was {status}")
        if time.monotonic() > deadline:
            fail(f"GET {server.base_url}/health was {status}, not 200, after {startup_timeout_s:.0f} s")
        time.sleep(0.1)
