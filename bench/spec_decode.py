#!/usr/bin/env python3
"""Speculative decoding, troupe vs llama.cpp's llama-server, over loopback HTTP, in one run.

Four servers on the same model file and thread count, a pair at a time (troupe's two side
by side, then llama.cpp's two):
  troupe plain      `troupe serve`
  troupe ngram      `troupe serve --speculative ngram` (prompt lookup)
  llama.cpp plain   `llama-server`
  llama.cpp ngram   `llama-server --spec-type ngram-simple` (llama.cpp's prompt lookup)
Each serves the same chat requests through POST /v1/chat/completions with stream:true,
greedy, one at a time (single stream): each prompt to one server of the pair and then the
other, which goes first alternating, for --rounds rounds, so that the machine's drift in
speed falls on both alike (an idle server sleeps). Decode speed of one request is its
output tokens after the first over the time from the first to the last token (prefill
excluded), and a workload's figure is total such tokens over total such time; the ratio of
each round's figures is printed too. Workloads:
  rewrite  repeat or lightly rewrite a given paragraph (the output quotes the input)
  code     edit a given function (rename, add a comment): mostly a copy of the input
  open     open questions with nothing to copy (speculation should cost nothing here)
Then N streams at once (default 32) of the rewrite workload on troupe with and without
speculation (the two servers side by side), each making --gen tokens (end of generation
ignored), in alternating rounds:
total output tokens/s, the check that the policy keeps speculation from costing throughput
when the batch is large.

Prints per-workload tok/s side by side with the ratios, acceptance rates (troupe from its
/metrics counters, llama.cpp from its reported draft counts where it reports them), troupe's
accepted proposals per speculative sequence-step ("acc/st"), and one line "RESULT {json}".

Draft mode (--draft-model D): the speculative servers run D as a draft model instead of
prompt lookup (`troupe serve --draft-model D --speculative draft`, `llama-server
--model-draft D --spec-draft-n-max K`, plus `--spec-type draft-simple` where the server has
that option: without it such a server loads D and never drafts), D having the model's
vocabulary (Qwen2.5-Coder-0.5B for Qwen2.5-Coder-1.5B). Columns read "+draft" for "+ngram".

Usage: bench/spec_decode.py [--model M] [--threads T] [--gen N] [--rounds 3] [--streams 32] [--stream-rounds 3]
                            [--only-troupe] [--troupe-args "..."] [--llama-args "..."] [--draft-model D]
                            [--draft-k K]
"""
import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from compare_serving import free_port, read_metrics as metrics, wait_healthy  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

PARAGRAPHS = [
    "The city council met on Tuesday evening to discuss the new park on the east side of town. "
    "Residents asked for more trees, a playground for small children and a path for bicycles. "
    "The council agreed to publish a plan by the end of the month and to hold another meeting in spring.",
    "Our team shipped the new release last week. It adds support for larger files, fixes a crash "
    "when the network drops, and makes the search page twice as fast. Please update your clients and "
    "report any problems to the support address listed on the website.",
    "To make bread, mix flour, water, salt and yeast in a large bowl. Knead the dough for ten minutes, "
    "let it rise for an hour, shape it into a loaf, and bake it in a hot oven for about forty minutes "
    "until the crust is brown and the loaf sounds hollow.",
    "The library will be closed on Monday for maintenance. Books that are due on that day can be "
    "returned on Tuesday without a fine. The reading room on the second floor will reopen next week "
    "with new desks, better lights and more power outlets for laptops.",
]

CODE = [
    "def total_price(items):\n    total = 0\n    for item in items:\n        total += item.price * item.count\n"
    "    return total\n\n\ndef average_price(items):\n    if not items:\n        return 0\n"
    "    return total_price(items) / len(items)\n",
    "int count_words(const char *text) {\n    int count = 0;\n    int in_word = 0;\n"
    "    for (const char *p = text; *p; ++p) {\n        if (*p == ' ' || *p == '\\n') {\n"
    "            in_word = 0;\n        } else if (!in_word) {\n            in_word = 1;\n            ++count;\n"
    "        }\n    }\n    return count;\n}\n",
    "function mergeSorted(a, b) {\n  const out = [];\n  let i = 0, j = 0;\n  while (i < a.length && j < b.length) {\n"
    "    if (a[i] <= b[j]) out.push(a[i++]);\n    else out.push(b[j++]);\n  }\n"
    "  while (i < a.length) out.push(a[i++]);\n  while (j < b.length) out.push(b[j++]);\n  return out;\n}\n",
]

OPEN = ["Tell me a short story about a lighthouse keeper.", "Why is the sky blue? Explain simply.",
        "Give three tips for sleeping better.", "Describe your ideal weekend."]


def workloads():
    rewrite = [f"Repeat the following text exactly, word for word:\n\n{p}" for p in PARAGRAPHS]
    rewrite += [f"Rewrite this text, keeping every sentence:\n\n{p}" for p in PARAGRAPHS[:2]]
    code = [f"Rename the function parameters to longer names and return the whole code:\n\n{c}" for c in CODE]
    code += [f"Add a comment line above each function and repeat the code:\n\n{c}" for c in CODE]
    return {"rewrite": rewrite, "code": code, "open": OPEN}


def chat(port, prompt, n_gen, ignore_eos=False):
    """One streamed greedy chat completion: (output tokens, seconds first->last token, draft stats)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": n_gen,
                       "temperature": 0, "ignore_eos": ignore_eos, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = last = None
    tokens = None
    draft = None
    text = []
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        msg = json.loads(data)
        if msg.get("usage"):
            tokens = msg["usage"].get("completion_tokens")
        t = msg.get("timings")
        if t and "draft_n" in t:
            draft = (t.get("draft_n", 0), t.get("draft_n_accepted", 0))
        for c in msg.get("choices") or []:
            piece = (c.get("delta") or {}).get("content")
            if piece:
                now = time.monotonic()
                first = first or now
                last = now
                text.append(piece)
    conn.close()
    return tokens or 0, (last - first) if first and last else 0.0, draft, "".join(text)


def run_pair(servers, n_gen, rounds, is_troupe):
    """The single-stream workloads on two servers running side by side ((name, port) each),
    `rounds` times: each prompt goes to one server and then the other, which goes first
    alternating from prompt to prompt and round to round, so that this shared machine's
    drift in speed (+-20% over minutes) falls on both alike. Per server and workload: the
    decode tok/s over all rounds, each round's figure, and the proposal counts."""
    out = {name: {} for name, _ in servers}
    texts = {name: {} for name, _ in servers}
    for wl, prompts in workloads().items():
        before = {name: metrics(port) if is_troupe else {} for name, port in servers}
        per_round = {name: [] for name, _ in servers}
        drafts = {name: [0, 0] for name, _ in servers}
        for rnd in range(rounds):
            sums = {name: [0, 0.0] for name, _ in servers}
            for i, p in enumerate(prompts):
                order = servers if (rnd + i) % 2 == 0 else servers[::-1]
                for name, port in order:
                    n, sec, draft, text = chat(port, p, n_gen)
                    # troupe's greedy text is the same every time; llama.cpp's speculative
                    # server's may differ between rounds (verification batches change its
                    # numerics): its first is kept.
                    if texts[name].setdefault(f"{wl}{i}", text) != text and is_troupe:
                        raise RuntimeError(f"{name}: greedy output of {wl} prompt {i} changed between rounds")
                    sums[name][0] += max(n - 1, 0)
                    sums[name][1] += sec
                    if draft:
                        drafts[name][0] += draft[0]
                        drafts[name][1] += draft[1]
            for name, _ in servers:
                per_round[name].append(sums[name])
        for name, port in servers:
            drafted, accepted = drafts[name]
            spec_steps = None
            if is_troupe:
                after = metrics(port)
                delta = lambda key: after.get(key, 0) - before[name].get(key, 0)  # noqa: E731
                drafted = delta("troupe_spec_decode_num_draft_tokens_total")
                accepted = delta("troupe_spec_decode_num_accepted_tokens_total")
                spec_steps = delta("troupe_spec_decode_num_steps_total")
            tokens = sum(t for t, _ in per_round[name])
            seconds = sum(sec for _, sec in per_round[name])
            out[name][wl] = {"decode_tok_s": tokens / seconds if seconds > 0 else 0.0, "tokens": tokens,
                             "rounds_tok_s": [t / sec if sec > 0 else 0.0 for t, sec in per_round[name]],
                             "drafted": drafted, "accepted": accepted,
                             "acceptance": accepted / drafted if drafted else None,
                             "accepted_per_spec_step": accepted / spec_steps if spec_steps else None}
            print(f"{name} {wl}: {out[name][wl]}", file=sys.stderr)
    return out, texts


@contextlib.contextmanager
def serving(pair):
    """Both servers of a pair ((name, command, port) each) running for the block; the
    (name, port) of each."""
    procs = []
    try:
        for name, cmd, port in pair:
            procs.append(serve(cmd, port, name))
        yield [(name, port) for name, _, port in pair]
    finally:
        for proc in procs:
            stop(proc)


def run_streams(port, n, n_gen):
    prompts = workloads()["rewrite"]
    done = [0] * n
    errors = []

    def one(i):
        try:
            # Every stream makes n_gen tokens (end of generation ignored): a point of a few
            # seconds, where the answers' own lengths would make it a burst of two or three.
            done[i] = chat(port, prompts[i % len(prompts)] + " " * (i // len(prompts)), n_gen, True)[0]
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(done) / (time.monotonic() - t0)


def serve(cmd, port, name):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(port, proc, name)
    return proc


def stop(proc):
    proc.terminate()
    proc.wait()


def troupe_cmd(args, port, extra):
    return [args.troupe, "serve", "--model", args.model, "--threads", str(args.threads), "--port", str(port),
            "--max-num-seqs", str(max(args.streams, 1)), *extra]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--streams", type=int, default=32, help="the many-streams point (0: skip it)")
    ap.add_argument("--stream-rounds", type=int, default=3, help="alternating rounds of the many-streams point")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of the single-stream workloads (the two servers of a pair side by side)")
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--llama-server", default=os.path.join(ROOT, "third_party", "llama.cpp", "build", "bin",
                                                            "llama-server"))
    ap.add_argument("--troupe-args", default="", help="more `troupe serve` flags for both troupe runs")
    ap.add_argument("--only-troupe", action="store_true", help="skip llama-server")
    ap.add_argument("--llama-args", default="",
                    help="more `llama-server` flags for both llama.cpp runs, after the script's own (so they "
                         "override them), e.g. \"--spec-draft-n-max 3\" (llama.cpp's default draft length)")
    ap.add_argument("--draft-model", default="", help="speculate with this draft model instead of prompt lookup")
    ap.add_argument("--draft-k", type=int, default=4, help="most proposals per step in draft mode (both servers)")
    args = ap.parse_args()
    extra = args.troupe_args.split()
    method = "draft" if args.draft_model else "ngram"
    spec = f"troupe {method}"
    lspec = f"llama.cpp {method}"
    if args.draft_model:
        spec_flags = ["--speculative", "draft", "--draft-model", args.draft_model,
                      "--num-speculative-tokens", str(args.draft_k)]
        # llama.cpp renamed --draft-max/--draft-min to --spec-draft-n-max/--spec-draft-n-min.
        help_text = subprocess.run([args.llama_server, "-h"], capture_output=True, text=True).stdout \
            if os.access(args.llama_server, os.X_OK) else ""
        n_max, n_min = ("--spec-draft-n-max", "--spec-draft-n-min") if "--spec-draft-n-max" in help_text \
            else ("--draft-max", "--draft-min")
        llama_spec_flags = ["--model-draft", args.draft_model, n_max, str(args.draft_k), n_min, "0",
                            "-td", str(args.threads)]
        # Versions with --spec-type default it to none: the draft model is loaded and never used.
        if "draft-simple" in help_text:
            llama_spec_flags += ["--spec-type", "draft-simple"]
    else:
        spec_flags = ["--speculative", "ngram"]
        llama_spec_flags = ["--spec-type", "ngram-simple"]

    results = {}
    outputs = {}
    # The troupe pair serves the single-stream workloads and then the many-streams point:
    # each round a burst on one server and then the other, which goes first alternating; the
    # median of the per-round ratios is reported beside the medians.
    troupe_pair = [(name, troupe_cmd(args, port, extra + flags), port)
                   for name, flags, port in (("troupe plain", [], free_port()), (spec, spec_flags, free_port()))]
    with serving(troupe_pair) as servers:
        got, texts = run_pair(servers, args.gen, args.rounds, True)
        results.update(got)
        outputs.update(texts)
        for rnd in range(args.stream_rounds if args.streams > 0 else 0):
            for name, port in (servers if rnd % 2 == 0 else servers[::-1]):
                before = metrics(port)
                tok_s = run_streams(port, args.streams, args.gen)
                after = metrics(port)
                results[name].setdefault("streams_tok_s_rounds", []).append(tok_s)
                drafted = after.get("troupe_spec_decode_num_draft_tokens_total", 0) - before.get(
                    "troupe_spec_decode_num_draft_tokens_total", 0)
                results[name]["streams_drafted"] = results[name].get("streams_drafted", 0) + drafted
                print(f"{name} {args.streams} streams, round {rnd + 1}: {tok_s:.1f} tok/s", file=sys.stderr)
    for name in ("troupe plain", spec):
        rounds = results[name].get("streams_tok_s_rounds")
        if rounds:
            results[name]["streams_tok_s"] = sorted(rounds)[len(rounds) // 2]
    if not args.only_troupe:
        if not os.access(args.llama_server, os.X_OK):
            subprocess.run([os.path.join(ROOT, "bench", "build_llama_cpp.sh")], check=True)
        pair = []
        for name, flags in (("llama.cpp plain", []), (lspec, llama_spec_flags)):
            port = free_port()
            pair.append((name, [args.llama_server, "-m", args.model, "-t", str(args.threads), "-np", "1", "-c",
                                "4096", "--host", "127.0.0.1", "--port", str(port), *flags,
                                *args.llama_args.split()], port))
        with serving(pair) as servers:
            got, texts = run_pair(servers, args.gen, args.rounds, False)
            results.update(got)
            outputs.update(texts)

    same = sum(outputs["troupe plain"][k] == outputs[spec][k] for k in outputs["troupe plain"])
    print(f"speculative decoding, single stream, greedy, {args.gen} output tokens at most, {args.threads} threads, "
          f"{os.path.basename(args.model)}, {args.rounds} rounds (each pair of servers side by side, each prompt "
          f"to both in alternating order)")
    print(f"{spec} output identical to troupe plain on {same} of {len(outputs['troupe plain'])} prompts")
    header = (f"{'workload':>8} | {'troupe':>7} {'+' + method:>7} {'x':>5} {'accept':>6} {'acc/st':>6} "
              f"{'x per round':>16}")
    if not args.only_troupe:
        header += f" | {'llama':>7} {'+' + method:>7} {'x':>5} {'accept':>6} | {method + ' t/l':>9}"
    print(header)
    for wl in workloads():
        t0, t1 = results["troupe plain"][wl], results[spec][wl]
        acc = lambda r: f"{100 * r['acceptance']:>5.0f}%" if r["acceptance"] is not None else "     -"
        per_step = t1["accepted_per_spec_step"]
        ratios = sorted(b / max(a, 1e-9) for a, b in zip(t0["rounds_tok_s"], t1["rounds_tok_s"]))
        results.setdefault("ratio_rounds", {})[wl] = ratios
        line = (f"{wl:>8} | {t0['decode_tok_s']:>7.1f} {t1['decode_tok_s']:>7.1f} "
                f"{t1['decode_tok_s'] / max(t0['decode_tok_s'], 1e-9):>5.2f} {acc(t1)} "
                f"{per_step if per_step is not None else 0:>6.2f} "
                f"{' '.join(f'{r:.2f}' for r in ratios):>16}")
        if not args.only_troupe:
            l0, l1 = results["llama.cpp plain"][wl], results[lspec][wl]
            line += (f" | {l0['decode_tok_s']:>7.1f} {l1['decode_tok_s']:>7.1f} "
                     f"{l1['decode_tok_s'] / max(l0['decode_tok_s'], 1e-9):>5.2f} {acc(l1)} | "
                     f"{t1['decode_tok_s'] / max(l1['decode_tok_s'], 1e-9):>9.2f}")
        print(line)
    if args.streams > 0:
        s0, s1 = results["troupe plain"]["streams_tok_s"], results[spec]["streams_tok_s"]
        rounds0 = results["troupe plain"]["streams_tok_s_rounds"]
        rounds1 = results[spec]["streams_tok_s_rounds"]
        ratios = sorted(b / a for a, b in zip(rounds0, rounds1))
        results["streams_ratio_median"] = ratios[len(ratios) // 2]
        r0 = " ".join(f"{x:.0f}" for x in rounds0)
        r1 = " ".join(f"{x:.0f}" for x in rounds1)
        print(f"{args.streams} streams (rewrite), {args.stream_rounds} alternating rounds: troupe "
              f"{s0:.1f} tok/s plain ({r0}), {s1:.1f} with {method} ({r1}): medians {s1 / s0:.2f}x, "
              f"median per-round ratio {results['streams_ratio_median']:.2f}x; "
              f"{results[spec]['streams_drafted']:.0f} tokens proposed in all")
    print("RESULT " + json.dumps({"results": results, "threads": args.threads, "model": args.model,
                                  "draft_model": args.draft_model,
                                  "identical_outputs": same}))


if __name__ == "__main__":
    main()
