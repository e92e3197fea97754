#!/usr/bin/env python3
"""Writes dequant_golden.bin: random blocks of each GGUF weight type with the floats that
llama.cpp's gguf-py (an implementation independent of troupe's) dequantizes them to.

    pip install gguf numpy && python3 tests/data/make_dequant_golden.py

Format (little-endian), repeated until the end of the file:
    u32 ggml type id | u32 element count | u32 byte count | bytes | element count x f32
"""
import pathlib
import struct

import numpy as np
from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES
from gguf.quants import dequantize

SEED = 20240611
rng = np.random.default_rng(SEED)


def fp16_scales(n):
    """Finite fp16 scale bit patterns: normal-sized, tiny, subnormal, zero and negative."""
    kinds = rng.integers(0, 6, n)
    values = np.where(kinds == 0, rng.normal(0, 0.05, n),
             np.where(kinds == 1, rng.normal(0, 1e-4, n),
             np.where(kinds == 2, rng.uniform(-3e-5, 3e-5, n),  # subnormal fp16
             np.where(kinds == 3, 0.0,
             np.where(kinds == 4, -np.abs(rng.normal(0, 0.02, n)), rng.uniform(-2, 2, n)))))).astype(np.float16)
    return values.view(np.uint8).reshape(n, 2)


def random_blocks(qtype, num_blocks):
    """Random payload bytes with every fp16 scale field replaced by a finite value."""
    block_bytes = GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, (num_blocks, block_bytes), dtype=np.uint8)
    # byte offsets of the fp16 fields in each block layout (ggml-common.h)
    fp16_fields = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
                   T.Q4_K: [0, 2], T.Q6_K: [208], T.Q5_K: [0, 2]}
    for at in fp16_fields[qtype]:
        blocks[:, at:at + 2] = fp16_scales(num_blocks)
    return blocks


def f16_values(n):
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    bits[:8] = [0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfc00]  # edges, -inf
    exponent = (bits >> 10) & 0x1f
    bits[exponent == 0x1f] &= 0xfc00  # NaN payloads are not portable: keep only +-inf
    return bits.view(np.uint8).reshape(n, 2)


def bf16_values(n):
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    bits[:6] = [0x0000, 0x8000, 0x0001, 0x3f80, 0x7f7f, 0xff80]
    exponent = (bits >> 7) & 0xff
    bits[(exponent == 0xff)] &= 0xff80
    return bits.view(np.uint8).reshape(n, 2)


def main():
    records = []
    f32 = rng.normal(0, 1, 256).astype(np.float32)
    f32[:4] = [0.0, -0.0, np.inf, 1e-40]
    records.append((T.F32, f32.view(np.uint8).reshape(-1, 4)))
    records.append((T.F16, f16_values(1024)))
    records.append((T.BF16, bf16_values(1024)))
    for qtype, num_blocks in [(T.Q4_0, 48), (T.Q4_1, 48), (T.Q5_0, 48), (T.Q5_1, 48), (T.Q8_0, 48),
                              (T.Q4_K, 12), (T.Q6_K, 12), (T.Q5_K, 12)]:  # new types go last
        records.append((qtype, random_blocks(qtype, num_blocks)))

    out = bytearray()
    for qtype, blocks in records:
        expected = np.asarray(dequantize(blocks, qtype), dtype=np.float32).reshape(-1)
        payload = blocks.tobytes()
        out += struct.pack("<III", int(qtype), expected.size, len(payload))
        out += payload
        out += expected.astype("<f4").tobytes()
    path = pathlib.Path(__file__).with_name("dequant_golden.bin")
    path.write_bytes(bytes(out))
    print(f"wrote {path} ({len(out)} bytes, {len(records)} types)")


if __name__ == "__main__":
    main()
