#!/usr/bin/env python3
"""Regenerates troupe's golden reference data from llama.cpp (through llama-cpp-python).

llama.cpp is the peer troupe is verified against; this script runs only when the golden
files are regenerated, never during the build or the tests. Output, all under tests/data/:

  golden_teacher_forced.json  next-token predictions at every position of several texts
  golden_ppl_gpl3.json        per-position NLL and perplexity of the first 1024 tokens of
                              /usr/share/common-licenses/GPL-3 (one 1024-token sequence)
  golden_greedy.json          greedy (temperature 0) continuations of 8 prompts, 64 tokens each
  golden_full_logits.json     metadata of golden_full_logits.f16
  golden_full_logits.f16      llama.cpp's full logit rows (float16, little endian,
                              row-major [n_rows][n_vocab]) for a few positions of one prompt

Usage:  python3 tests/data/make_golden_logits.py [--profile NAME] [--model PATH] [--out DIR]
        --profile smollm2-135m (default: files directly in tests/data/) or
                  qwen2.5-coder-0.5b (files in tests/data/qwen2.5-coder-0.5b/, no full
                  logit rows: 151,936 columns would make them 1.2 MB)
        [--llama-perplexity PATH]   (optional: also record llama-perplexity's own estimate;
                                     default third_party/llama.cpp/build/bin/llama-perplexity,
                                     built by bench/build_llama_cpp.sh)
        [--perplexity-tool-only]    (only add llama-perplexity's estimate to the existing file)
        [--kv-type q8_0|q4_0]       (a quantized KV cache, llama.cpp's -ctk/-ctv, which needs
                                     flash attention: writes only the teacher-forced and
                                     perplexity goldens, as golden_teacher_forced_kv_<type>.json
                                     and golden_ppl_gpl3_kv_<type>.json)
        [--no-attn-rotation]        (with --kv-type: turn off llama.cpp's Walsh-Hadamard rotation
                                     of Q/K/V before a quantized cache (LLAMA_ATTN_ROT_DISABLE=1),
                                     the plain block quantization troupe implements; files
                                     get a further _norot suffix)

Requires: pip install llama-cpp-python==0.3.36 numpy
See tests/data/README.md for the exact definitions and file layouts.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
GPL3 = "/usr/share/common-licenses/GPL-3"
APACHE2 = "/usr/share/common-licenses/Apache-2.0"

SETTINGS = dict(n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2, n_threads_batch=2,
                logits_all=True, seed=1234, flash_attn=False, n_gpu_layers=0,
                use_mmap=True, verbose=False)
# ggml type ids of the quantized KV cache types --kv-type takes.
KV_TYPES = {"q4_0": 2, "q8_0": 8}
# Per model: the file, where its goldens go, its end-of-generation ids in llama.cpp, the
# default system prompt of its chat template, and whether full logit rows are written.
PROFILES = {
    "smollm2-135m": dict(
        model="SmolLM2-135M-Instruct.Q4_1.gguf", out=HERE,
        eog_ids=[0, 2, 4],  # <|endoftext|>, <|im_end|>, <reponame>
        system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        full_logits=True),
    "qwen2.5-coder-0.5b": dict(
        model="qwen2.5-coder-0.5b-instruct.gguf", out=os.path.join(HERE, "qwen2.5-coder-0.5b"),
        # <|endoftext|>, <|im_end|>, <|fim_pad|>, <|repo_name|>, <|file_sep|>
        eog_ids=[151643, 151645, 151662, 151663, 151664],
        system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        full_logits=False),
}
EOG_IDS = PROFILES["smollm2-135m"]["eog_ids"]
DEFAULT_SYSTEM = PROFILES["smollm2-135m"]["system"]

# ---------------------------------------------------------------------------------------
# Texts. Prose and code below were written for this file.
# ---------------------------------------------------------------------------------------


def chatml(messages, add_generation_prompt=True, default_system=True):
    """Renders messages like the model's Jinja chat template (ChatML framing, the profile's
    default system prompt)."""
    out = []
    if default_system and (not messages or messages[0][0] != "system"):
        out.append(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    for role, content in messages:
        out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def chat_conversation():
    return chatml([
        ("user", "I have a small garden on a balcony that gets about four hours of sun. "
                 "Which vegetables could I grow there?"),
        ("assistant", "Four hours of direct sun is enough for many leafy crops. Lettuce, spinach, "
                      "chard, kale and rocket all tolerate partial shade, and herbs such as mint, "
                      "parsley and chives do well too. Radishes and spring onions are quick and "
                      "forgiving. Fruiting plants like tomatoes and peppers usually want six to "
                      "eight hours, so they may give a smaller harvest."),
        ("user", "How often should I water lettuce in pots?"),
        ("assistant", "Check the soil every day: water when the top two centimetres feel dry. In "
                      "warm weather that can mean once a day, in cool weather every two or three "
                      "days. Pots dry out faster than beds, so a saucer or a layer of mulch helps "
                      "keep the roots evenly moist."),
    ], add_generation_prompt=False)


CPP_CODE = """#include <algorithm>
#include <cstdint>
#include <vector>

// Returns the indices of the k largest values, largest first.
std::vector<int32_t> top_k(const std::vector<float>& values, int k) {
    std::vector<int32_t> idx(values.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>(i);
    k = std::min<int>(k, static_cast<int>(idx.size()));
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return values[a] > values[b]; });
    idx.resize(k);
    return idx;
}

int main() {
    std::vector<float> v = {0.5f, 2.0f, -1.0f, 3.5f, 1.25f};
    for (int32_t i : top_k(v, 3)) {
        std::printf("%d %f\\n", i, v[i]);
    }
    return 0;
}
"""

PY_CODE = '''import math


def softmax(xs):
    """Numerically stable softmax of a list of floats."""
    m = max(xs)
    exps = [math.exp(x - m) for x in xs]
    total = sum(exps)
    return [e / total for e in exps]


class RunningMean:
    def __init__(self):
        self.count = 0
        self.mean = 0.0

    def add(self, x):
        self.count += 1
        self.mean += (x - self.mean) / self.count
        return self.mean


if __name__ == "__main__":
    r = RunningMean()
    for value in [3.0, 4.0, 5.0]:
        print(r.add(value))
    print(softmax([1.0, 2.0, 3.0]))
'''

PROSE = (
    "The lighthouse at the end of the harbour had not been lit for eleven years when Mara "
    "climbed its stairs for the first time. The iron railing was cold and flaked with rust, "
    "and every step rang under her boots. At the top she found the great lens still in its "
    "frame, dusty but unbroken, and a logbook whose last entry described a storm that had "
    "lasted three days. She sat on the floor and read it by the light of the window. The "
    "keeper had written about the ships he had seen, the gulls that nested on the gallery, "
    "and the long evenings when nothing happened at all. By the time she closed the book the "
    "sun was setting over the water, and she decided that the light should burn again.\n\n"
    "Rivers shape the land slowly. Over thousands of years, water carries sand and silt from "
    "the mountains to the sea, carving valleys and building deltas. A river that floods "
    "every spring spreads fertile soil across its plain, which is why so many early farming "
    "communities grew up along the banks of great rivers. Today engineers build dams and "
    "levees to control floods, but these changes also alter where sediment is deposited, "
    "and some deltas are now shrinking as a result."
)

def greedy_prompts():
    return [
        ("chat_capital_france", chatml([("user", "What is the capital of France?")]), True),
        ("chat_photosynthesis", chatml([("user", "Explain photosynthesis in two sentences.")]), True),
        ("chat_python_reverse", chatml([("user", "Write a Python function that reverses a string.")]),
         True),
        ("chat_no_system_haiku", chatml([("user", "Write a haiku about the sea.")],
                                        default_system=False), True),
        ("chat_multi_turn", chatml([("user", "Hi! My name is Sam."),
                                    ("assistant", "Hello Sam! How can I help you today?"),
                                    ("user", "Can you suggest a name for my new cat?")]), True),
        ("plain_once_upon", "Once upon a time, in a small village by the sea,", False),
        ("plain_gpl_preamble", "The GNU General Public License is a free, copyleft license for", False),
        ("plain_list_planets", "The planets of the solar system, in order from the Sun, are", False),
    ]


FULL_LOGITS_PROMPT = ("plain_numbers", "One, two, three, four, five, six, seven, eight", False)
FULL_LOGITS_MAX_ROWS = 4  # 4 rows x 49152 x 2 bytes = 384 KiB

# ---------------------------------------------------------------------------------------


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r4(x):
    return float(round(float(x), 4))


def top_k(row, k):
    idx = np.argpartition(-row, k)[:k]
    # Sort by logit descending, ties by lower id (like argmax).
    return sorted(idx.tolist(), key=lambda i: (-float(row[i]), i))


def eval_sequence(llm, tokens):
    """Evaluates tokens as one sequence from an empty KV cache; returns logits [n, n_vocab]."""
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens), :], dtype=np.float32, copy=True)


def log_softmax(row):
    row = row.astype(np.float64)
    m = row.max()
    return row - m - math.log(np.exp(row - m).sum())


def run_perplexity_tool(args, ppl_obj):
    """Optional: llama.cpp's own llama-perplexity, which uses a different definition (the
    file in chunks of n_ctx tokens, each scored only on its second half). Recorded for
    information only; tests use ppl_obj["ppl"]."""
    if not os.access(args.llama_perplexity, os.X_OK):
        print(f"llama-perplexity not found at {args.llama_perplexity}: skipped")
        return
    cmd = [args.llama_perplexity, "-m", args.model, "-f", GPL3, "-c", "1024",
           "-b", "1024", "-t", "2", "--chunks", "4"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except Exception as e:  # informational only
        print(f"llama-perplexity skipped: {e}", file=sys.stderr)
        return
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", res.stdout + res.stderr)
    if not m:
        print("llama-perplexity: no 'Final estimate' in its output", file=sys.stderr)
        return
    ppl_obj["llama_perplexity_tool"] = {
        "command": " ".join(["llama-perplexity", "-m", "MODEL"] + cmd[3:]),
        "ppl": float(m.group(1)), "stderr": float(m.group(2)),
        "note": ("llama-perplexity's definition: the file in chunks of -c tokens, each scored "
                 "only on its second half; NOT the definition above.")}
    print(f"llama-perplexity: {m.group(1)} +/- {m.group(2)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default="smollm2-135m", choices=sorted(PROFILES))
    ap.add_argument("--model", default=None, help="default: models/ + the profile's file")
    ap.add_argument("--out", default=None, help="default: the profile's folder")
    ap.add_argument("--llama-perplexity", default=os.path.join(
        ROOT, "third_party", "llama.cpp", "build", "bin", "llama-perplexity"))
    ap.add_argument("--perplexity-tool-only", action="store_true",
                    help="only (re)run llama-perplexity and add its estimate to the existing\n"
                         "golden_ppl_gpl3.json (no llama-cpp-python needed)")
    ap.add_argument("--kv-type", default=None, choices=sorted(KV_TYPES),
                    help="quantized K and V cache (flash attention on); only the teacher-forced\n"
                         "and perplexity goldens, written with a _kv_<type> suffix")
    ap.add_argument("--no-attn-rotation", action="store_true",
                    help="with --kv-type: LLAMA_ATTN_ROT_DISABLE=1 (no Hadamard rotation of Q/K/V)")
    args = ap.parse_args()
    profile = PROFILES[args.profile]
    args.model = args.model or os.path.join(ROOT, "models", profile["model"])
    args.out = args.out or profile["out"]
    global EOG_IDS, DEFAULT_SYSTEM
    EOG_IDS, DEFAULT_SYSTEM = profile["eog_ids"], profile["system"]

    if args.perplexity_tool_only:
        path = os.path.join(args.out, "golden_ppl_gpl3.json")
        with open(path) as f:
            ppl_obj = json.load(f)
        run_perplexity_tool(args, ppl_obj)
        with open(path, "w") as f:
            json.dump(ppl_obj, f, separators=(",", ":"), ensure_ascii=False)
            f.write("\n")
        print(f"updated {path}")
        return

    if args.no_attn_rotation:
        # Read by llama.cpp when the KV cache is created.
        os.environ["LLAMA_ATTN_ROT_DISABLE"] = "1"
    import llama_cpp  # noqa: E402  (imported late so --help works without it)

    settings = dict(SETTINGS)
    kv_cache_type = "f16 (llama.cpp default)"
    suffix = ""
    if args.kv_type:
        # llama.cpp stores a quantized V cache only with flash attention.
        settings.update(flash_attn=True, type_k=KV_TYPES[args.kv_type], type_v=KV_TYPES[args.kv_type])
        kv_cache_type = f"{args.kv_type} for K and V (-ctk {args.kv_type} -ctv {args.kv_type} -fa on)"
        suffix = f"_kv_{args.kv_type}"
        # This llama.cpp rotates Q, K and V by a Walsh-Hadamard matrix before a quantized
        # cache (head sizes that are multiples of 64) unless LLAMA_ATTN_ROT_DISABLE is set.
        if args.no_attn_rotation:
            kv_cache_type += ", attention rotation off (LLAMA_ATTN_ROT_DISABLE=1)"
            suffix += "_norot"
        else:
            kv_cache_type += ", Walsh-Hadamard attention rotation on (llama.cpp's default)"
    llm = llama_cpp.Llama(model_path=args.model, **settings)
    n_vocab = llm.n_vocab()
    add_bos = bool(llm._model.add_bos_token())
    sysinfo = llama_cpp.llama_print_system_info()
    if isinstance(sysinfo, bytes):
        sysinfo = sysinfo.decode("utf-8", "replace")

    def tok(text, special):
        # add_bos as the model's metadata says (false for SmolLM2).
        return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    meta = {
        "generator": "tests/data/make_golden_logits.py",
        "reference": "llama.cpp via llama-cpp-python",
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_system_info": sysinfo.strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "model_file": os.path.basename(args.model),
        "model_sha256": sha256_file(args.model),
        "settings": {**settings, "kv_cache_type": kv_cache_type,
                     "add_bos": add_bos},
        "n_vocab": n_vocab,
        "eog_ids": EOG_IDS,
    }
    os.makedirs(args.out, exist_ok=True)

    def dump(name, obj):
        path = os.path.join(args.out, name)
        with open(path, "w") as f:
            json.dump(obj, f, separators=(",", ":"), ensure_ascii=False)
            f.write("\n")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")

    # 1. Teacher-forced next-token predictions. ---------------------------------------------
    with open(APACHE2, encoding="utf-8") as f:
        apache_tokens = tok(f.read(), special=False)[:400]
    texts = [
        ("apache2_first400", "first 400 tokens of /usr/share/common-licenses/Apache-2.0",
         apache_tokens, False),
        ("chatml_conversation", "ChatML conversation with the default system prompt",
         tok(chat_conversation(), special=True), True),
        ("cpp_code", "C++ snippet", tok(CPP_CODE, special=False), False),
        ("python_code", "Python snippet", tok(PY_CODE, special=False), False),
        ("prose", "English prose", tok(PROSE, special=False), False),
    ]
    tf_records = []
    for name, desc, tokens, special in texts:
        logits = eval_sequence(llm, tokens)
        top1, l1, l2, top5 = [], [], [], []
        for i in range(len(tokens)):
            t5 = top_k(logits[i], 5)
            top5.append(t5)
            top1.append(t5[0])
            l1.append(r4(logits[i][t5[0]]))
            l2.append(r4(logits[i][t5[1]]))
        agree = sum(1 for i in range(len(tokens) - 1) if top1[i] == tokens[i + 1])
        tf_records.append({
            "name": name, "description": desc, "parse_special": special,
            "text": None if name == "apache2_first400" else
            {"chatml_conversation": chat_conversation(), "cpp_code": CPP_CODE,
             "python_code": PY_CODE, "prose": PROSE}[name],
            "n_tokens": len(tokens), "tokens": tokens,
            "top1": top1, "top1_logit": l1, "top2_logit": l2, "top5": top5,
            "top1_matches_next_token": agree,
        })
        print(f"teacher-forced {name}: {len(tokens)} positions, top1==next at {agree}")
    dump(f"golden_teacher_forced{suffix}.json", {
        "meta": meta,
        "definition": ("For each text the token ids are evaluated as one sequence from position 0 "
                       "(empty KV cache). At position i (0-based) the logits row i predicts "
                       "token i+1. top1 = argmax id, top1_logit/top2_logit = the largest and "
                       "second-largest logit (rounded to 4 decimals), top5 = ids of the 5 "
                       "largest logits, descending. A position is a near-tie when "
                       "top1_logit - top2_logit is small (e.g. < 0.1): compare top1 only where "
                       "the margin is larger."),
        "n_positions": sum(r["n_tokens"] for r in tf_records),
        "texts": tf_records,
    })

    # 2. Perplexity of the first 1024 tokens of GPL-3. --------------------------------------
    with open(GPL3, encoding="utf-8") as f:
        gpl_tokens_all = tok(f.read(), special=False)
    gpl = gpl_tokens_all[:1024]
    logits = eval_sequence(llm, gpl)
    nll = []
    for i in range(1, len(gpl)):
        nll.append(-float(log_softmax(logits[i - 1])[gpl[i]]))
    mean_nll = float(np.mean(np.array(nll, dtype=np.float64)))
    ppl = math.exp(mean_nll)
    print(f"GPL-3 first 1024 tokens: ppl {ppl:.4f} (mean NLL {mean_nll:.6f})")
    ppl_obj = {
        "meta": meta,
        "source": GPL3,
        "source_sha256": sha256_file(GPL3),
        "definition": ("tokens = llama.cpp tokenization of the whole file (no BOS, no special "
                       "parsing), first 1024 kept; evaluated as ONE sequence of 1024 tokens "
                       "from an empty KV cache (llama-cpp-python splits it into 2 batches of "
                       "512, same sequence). nll[i-1] = -log softmax(logits[i-1])[tokens[i]] "
                       "for i = 1..1023 (natural log, softmax in float64 over the float32 "
                       "logits); ppl = exp(mean(nll))."),
        "n_tokens": len(gpl),
        "tokens": gpl,
        "nll": [float(round(x, 5)) for x in nll],
        "mean_nll": mean_nll,
        "ppl": ppl,
    }

    if args.kv_type:
        dump(f"golden_ppl_gpl3{suffix}.json", ppl_obj)
        return
    run_perplexity_tool(args, ppl_obj)
    dump("golden_ppl_gpl3.json", ppl_obj)

    # 3. Greedy continuations. --------------------------------------------------------------
    greedy = []
    n_gen = 64
    for name, prompt, special in greedy_prompts():
        ptoks = tok(prompt, special=special)
        llm.reset()
        llm.eval(ptoks)
        gen, margins, l1s = [], [], []
        for _ in range(n_gen):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            t2 = top_k(row, 2)
            gen.append(t2[0])
            l1s.append(r4(row[t2[0]]))
            margins.append(r4(row[t2[0]] - row[t2[1]]))
            llm.eval([t2[0]])
        first_eog = next((i for i, t in enumerate(gen) if t in EOG_IDS), None)
        first_tie = next((i for i, m in enumerate(margins) if m < 0.1), None)
        text = llm.detokenize(gen[:first_eog] if first_eog is not None else gen).decode(
            "utf-8", "replace")
        greedy.append({
            "name": name, "prompt": prompt, "parse_special": special,
            "prompt_tokens": ptoks, "generated": gen, "top1_logit": l1s,
            "margin": margins, "first_margin_below_0_1": first_tie,
            "first_eog_index": first_eog, "text_until_eog": text,
        })
        print(f"greedy {name}: {len(ptoks)} prompt tokens, first near-tie {first_tie}, "
              f"first EOG {first_eog}: {text[:60]!r}")
    dump("golden_greedy.json", {
        "meta": meta,
        "definition": ("Prompt tokens (no BOS; ChatML prompts tokenized with special-token "
                       "parsing) are evaluated from an empty KV cache, then 64 tokens are "
                       "generated greedily (argmax of the last logits row, ties to the lower "
                       "id), one token per step, WITHOUT stopping at end-of-generation ids. "
                       "margin[j] = top1 - top2 logit at generated position j. Compare "
                       "generated tokens only up to the first j with margin < 0.1 "
                       "(first_margin_below_0_1; null = none); a server that stops at EOG "
                       "should produce generated[:first_eog_index+1]."),
        "n_generated": n_gen,
        "prompts": greedy,
    })

    # 4. Full logits for a few positions of one prompt. --------------------------------------
    if not profile["full_logits"]:
        return
    name, prompt, special = FULL_LOGITS_PROMPT
    ptoks = tok(prompt, special=special)
    logits = eval_sequence(llm, ptoks)
    n = len(ptoks)
    rows = sorted(set([0, 1, n // 2, n - 1]))[:FULL_LOGITS_MAX_ROWS]
    block = logits[rows].astype("<f2")
    bin_path = os.path.join(args.out, "golden_full_logits.f16")
    block.tofile(bin_path)
    print(f"wrote {bin_path} ({os.path.getsize(bin_path)} bytes)")
    dump("golden_full_logits.json", {
        "meta": meta,
        "name": name, "prompt": prompt, "parse_special": special,
        "prompt_tokens": ptoks,
        "positions": rows,
        "n_vocab": n_vocab,
        "file": "golden_full_logits.f16",
        "layout": ("little-endian IEEE float16, row-major [len(positions)][n_vocab]; row r is "
                   "the logits at prompt position positions[r] (predicting the next token), "
                   "prompt evaluated as one sequence from an empty KV cache."),
        "top1": [int(np.argmax(logits[r])) for r in rows],
        "max_abs_logit": [r4(np.abs(logits[r]).max()) for r in rows],
        "f16_rounding_max_abs_error": r4(np.abs(block.astype(np.float32) - logits[rows]).max()),
    })


if __name__ == "__main__":
    main()
