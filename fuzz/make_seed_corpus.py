#!/usr/bin/env python3
"""Writes the GGUF fuzzer's seed corpus (fuzz/corpus/gguf/) with llama.cpp's gguf-py writer,
an implementation independent of troupe's, and copies one seed to tests/data/gguf_py_sample.gguf
for the reader's cross-check test.

    pip install gguf numpy && python3 fuzz/make_seed_corpus.py
"""
import pathlib
import shutil

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType as T

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus" / "gguf"
rng = np.random.default_rng(1)


def write(name, build, alignment=None):
    path = CORPUS / name
    w = GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def every_type(w):
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_uint64("t.u64", 18000000000000000000)
    w.add_int64("t.i64", -9000000000000000000)
    w.add_float32("t.f32", 0.125)
    w.add_float64("t.f64", 1e300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo")
    w.add_array("t.strs", ["a", "", "\u0120the"])
    w.add_array("t.ints", [1, -2, 3])
    w.add_block_count(2)
    w.add_tensor("norm.weight", np.arange(8, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", rng.integers(0, 256, (2, 34), dtype=np.uint8), raw_dtype=T.Q8_0)
    w.add_tensor("blk.0.attn_k.weight", rng.integers(0, 256, (1, 20), dtype=np.uint8), raw_dtype=T.Q4_1)
    w.add_tensor("half.weight", np.ones((3, 4), dtype=np.float16))


def aligned(w):
    w.add_string("general.name", "aligned")
    w.add_tensor("a", np.ones(3, dtype=np.float32))
    w.add_tensor("b", np.full((2, 2), 2.0, dtype=np.float32))


def metadata_only(w):
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.merges", ["\u0120 t", "h e"])


def main():
    CORPUS.mkdir(parents=True, exist_ok=True)
    sample = write("every_type.gguf", every_type)
    write("alignment_64.gguf", aligned, alignment=64)
    write("metadata_only.gguf", metadata_only)
    shutil.copyfile(sample, ROOT / "tests" / "data" / "gguf_py_sample.gguf")
    for p in sorted(CORPUS.iterdir()):
        print(p.relative_to(ROOT), p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
