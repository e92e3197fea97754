#!/usr/bin/env python3
"""Resident memory per model: troupe serve and llama.cpp's llama-server, side by side.

For each GGUF file, each server is started on it (2 threads unless --threads, the same
context for both), answers one 16-token completion, and then its /proc/PID/status is read:
VmRSS (all resident memory), RssAnon (memory the process allocated: packed weights, KV
cache, activations) and RssFile (pages of mapped files: the GGUF's, and shared libraries).
The KV cache is sized to --context tokens for one sequence in both (troupe
--kv-cache-bytes from the model's shape, llama-server -c), in fp16.

Prints a table per model and one line "RESULT {json}".

Usage: bench/memory_report.py [--models 'A B ...'] [--threads 2] [--context 4096]
       [--troupe build/troupe] [--llama-server PATH] [--no-llama]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_serving import ROOT, free_port, wait_healthy  # noqa: E402



def status_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def kv_bytes_per_token(model):
    """fp16 K and V of every layer, from the GGUF header (read with troupe's gguf info)."""
    info = subprocess.run([ARGS.troupe, "info", model], capture_output=True, text=True, check=True).stdout
    meta = {}
    for line in info.splitlines():
        parts = line.split()  # "  qwen2.attention.head_count_kv (u32) = 2"
        for key in ("block_count", "head_count_kv", "head_count", "embedding_length", "key_length"):
            if len(parts) == 4 and parts[0].endswith("." + key) and parts[2] == "=":
                meta[key] = int(parts[3])
    heads = meta["head_count"]
    head_dim = meta.get("key_length", meta["embedding_length"] // heads)
    return 2 * meta["block_count"] * meta.get("head_count_kv", heads) * head_dim * 2


def measure(cmd, name):
    port = free_port()
    proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc, name)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.request("POST", "/v1/completions",
                  json.dumps({"model": "m", "prompt": "The capital of France is", "max_tokens": 16, "temperature": 0}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"{name}: HTTP {r.status}")
        return status_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=" ".join(
        os.path.join(ROOT, "models", m) for m in ("SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2.5-coder-0.5b-instruct.gguf",
                                                   "qwen2.5-coder-1.5b-instruct.gguf")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--llama-server", default=os.path.join(ROOT, "third_party", "llama.cpp", "build", "bin",
                                                           "llama-server"))
    ap.add_argument("--no-llama", action="store_true")
    ARGS = ap.parse_args()
    if not ARGS.no_llama and not os.path.exists(ARGS.llama_server):
        sys.exit(f"{ARGS.llama_server} not found: run bench/build_llama_cpp.sh, or pass --no-llama")
    results = {}
    for model in ARGS.models.split():
        if not os.path.exists(model):
            sys.exit(f"{model} not found (scripts/fetch_model.sh)")
        kv = kv_bytes_per_token(model) * ARGS.context
        rows = {"troupe": measure([ARGS.troupe, "serve", "--model", model, "--threads", str(ARGS.threads),
                                   "--host", "127.0.0.1", "--kv-cache-bytes", str(kv),
                                   "--max-model-len", str(ARGS.context)], "troupe")}
        if not ARGS.no_llama:
            rows["llama.cpp"] = measure([ARGS.llama_server, "-m", model, "-t", str(ARGS.threads), "-np", "1",
                                         "-c", str(ARGS.context), "--host", "127.0.0.1"], "llama-server")
        file_mb = os.path.getsize(model) / 1e6
        print(f"\n{os.path.basename(model)}: file {file_mb:.1f} MB, fp16 KV for {ARGS.context} tokens "
              f"{kv / 1e6:.1f} MB, {ARGS.threads} threads")
        print(f"{'server':<12}{'RSS MB':>10}{'anon MB':>10}{'file MB':>10}{'peak MB':>10}")
        for name, r in rows.items():
            print(f"{name:<12}{r['VmRSS'] / 1024:>10.1f}{r['RssAnon'] / 1024:>10.1f}{r['RssFile'] / 1024:>10.1f}"
                  f"{r['VmHWM'] / 1024:>10.1f}")
        if "llama.cpp" in rows:
            print(f"RSS troupe / llama.cpp: {rows['troupe']['VmRSS'] / rows['llama.cpp']['VmRSS']:.2f}x")
        results[os.path.basename(model)] = {"file_mb": round(file_mb, 1), "kv_mb": round(kv / 1e6, 1), **rows}
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
