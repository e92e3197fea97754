#!/usr/bin/env python3
"""Measures how well llama.cpp agrees with itself on the teacher-forced golden texts.

golden_teacher_forced.json holds llama.cpp's top-1 predictions with flash attention off.
This script evaluates the same token sequences with flash attention on (same model, same
threads) and writes tests/data/golden_self_agreement.json: the share of positions whose
top-1 id is the same, overall and by llama.cpp's top-2 margin. It is the noise floor of
top-1 agreement for this model: troupe's agreement test is judged against it.

Usage: python3 tests/data/make_self_agreement.py [--model PATH] [--dir DIR]
  e.g. --model models/qwen2.5-coder-0.5b-instruct.gguf --dir tests/data/qwen2.5-coder-0.5b
  [--with-perplexity]  also llama.cpp's GPL-3 perplexity with flash attention on (the noise
                       floor of the perplexity comparison)
  [--kv-type q8_0]     instead: run llama.cpp again exactly as golden_teacher_forced_kv_q8_0.json
                       was made (-ctk/-ctv q8_0, flash attention on) and print how often it
                       agrees with that file. On the machine that made the file this is 100%;
                       on another CPU (other SIMD kernels, so other last bits in K and V before
                       they are quantized) it is llama.cpp's own noise floor for a quantized
                       cache. Prints only: the figure belongs to the pair of machines.
Requires: pip install llama-cpp-python==0.3.36 numpy
"""
import argparse
import json
import os

import numpy as np
import llama_cpp

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def rerun_quantized(args):
    ggml_type = {"q8_0": 8, "q4_0": 2}[args.kv_type]
    golden = json.load(open(os.path.join(args.dir, f"golden_teacher_forced_kv_{args.kv_type}.json")))
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2,
                          n_threads_batch=2, logits_all=True, flash_attn=True, type_k=ggml_type,
                          type_v=ggml_type, verbose=False)
    tops, want, margins = [], [], []
    for text in golden["texts"]:
        llm.reset()
        llm.eval(text["tokens"])
        tops += list(np.array(llm.scores[: len(text["tokens"])]).argmax(axis=1))
        want += text["top1"]
        margins += [a - b for a, b in zip(text["top1_logit"], text["top2_logit"])]
    tops, want, margins = np.array(tops), np.array(want), np.array(margins)
    clear = margins >= 0.2
    print(f"llama.cpp {llama_cpp.__version__}, {args.kv_type} cache, this machine against "
          f"golden_teacher_forced_kv_{args.kv_type}.json: {int((tops == want).sum())}/{len(want)} = "
          f"{(tops == want).mean():.4f}; where the golden's top-2 margin >= 0.2: "
          f"{int((tops[clear] == want[clear]).sum())}/{int(clear.sum())} = {(tops[clear] == want[clear]).mean():.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--dir", default=os.path.join(ROOT, "tests", "data"),
                    help="the folder of golden_teacher_forced.json, where the result goes too")
    ap.add_argument("--with-perplexity", action="store_true",
                    help="also evaluate golden_ppl_gpl3.json's tokens with flash attention on")
    ap.add_argument("--kv-type", choices=["q8_0", "q4_0"], default=None,
                    help="rerun the quantized-cache golden and print its agreement with itself")
    args = ap.parse_args()
    if args.kv_type:
        rerun_quantized(args)
        return
    golden = json.load(open(os.path.join(args.dir, "golden_teacher_forced.json")))
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2,
                          n_threads_batch=2, logits_all=True, flash_attn=True, verbose=False)
    tops, want, margins = [], [], []
    for text in golden["texts"]:
        llm.reset()
        llm.eval(text["tokens"])
        logits = np.array(llm.scores[: len(text["tokens"])])
        tops += list(logits.argmax(axis=1))
        want += text["top1"]
        margins += [a - b for a, b in zip(text["top1_logit"], text["top2_logit"])]
    tops, want, margins = np.array(tops), np.array(want), np.array(margins)
    by_margin = {}
    for threshold in (0.1, 0.2, 0.3, 0.5):
        sel = margins >= threshold
        by_margin[str(threshold)] = {"positions": int(sel.sum()), "agree": int((tops[sel] == want[sel]).sum())}
    out = {
        "definition": ("top-1 ids of llama.cpp with flash_attn=True compared with the golden top-1 ids "
                       "(flash_attn=False) over every position of golden_teacher_forced.json"),
        "llama_cpp_python": llama_cpp.__version__,
        "positions": int(len(want)),
        "agree": int((tops == want).sum()),
        "overall": float((tops == want).mean()),
        "by_min_margin": by_margin,
    }
    # The same for perplexity, when asked: llama.cpp's own GPL-3 perplexity with flash
    # attention on, against golden_ppl_gpl3.json's (off), and how far the per-token NLLs move.
    if args.with_perplexity:
        ppl_golden = json.load(open(os.path.join(args.dir, "golden_ppl_gpl3.json")))
        tokens = ppl_golden["tokens"]
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens)], dtype=np.float64)
        nll = []
        for i in range(1, len(tokens)):
            row = logits[i - 1]
            m = row.max()
            nll.append(-(row[tokens[i]] - m - np.log(np.exp(row - m).sum())))
        nll = np.array(nll)
        diff = nll - np.array(ppl_golden["nll"])
        out["perplexity_gpl3"] = {
            "ppl_flash_attn_on": float(np.exp(nll.mean())), "ppl_flash_attn_off": ppl_golden["ppl"],
            "mean_abs_nll_difference": float(np.abs(diff).mean()),
            "max_abs_nll_difference": float(np.abs(diff).max())}
    path = os.path.join(args.dir, "golden_self_agreement.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {path}: {out['agree']}/{out['positions']} = {out['overall']:.4f}")


if __name__ == "__main__":
    main()
