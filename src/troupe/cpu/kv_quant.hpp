// Rows of the quantized KV cache: quantizing a position's K or V when it is stored, reading
// it back as floats, and the block dot products attention takes against a query quantized
// to Q8_0. The block formats are llama.cpp's Q8_0 and Q4_0 (model/quant.hpp), quantized
// with the same rules as llama.cpp's CPU code writes its KV cache, so both engines keep the
// same numbers.
#pragma once
#include <cstdint>

#include "troupe/model/kv_cache_dtype.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::cpu {

// Q8_0: d = fp16(max|x| / 127), q = round-half-even(x * 127 / max|x|).
void quantize_q8_0(const float* x, int64_t num_values, block_q8_0* out);
// Q4_0: m = the value of largest magnitude (sign kept), d = fp16(m / -8),
// q = min(15, trunc(x / d + 8.5)), value j of a block in the low nibble of byte j and
// value j + 16 in its high nibble.
void quantize_q4_0(const float* x, int64_t num_values, block_q4_0* out);

// num_values (a multiple of 32) floats into one row of dtype (q8_0 or q4_0) at out.
void quantize_kv_row(kv_cache_dtype dtype, const float* x, int64_t num_values, uint8_t* out);
// One row of dtype (q8_0 or q4_0) back to num_values floats.
void dequantize_kv_row(kv_cache_dtype dtype, const uint8_t* row, int64_t num_values, float* out);

// The rotation a quantized cache is stored under. An orthonormal Walsh-Hadamard matrix H
// (Sylvester's, scaled by 1/sqrt(n); H*H = I) applied to each run of n values of a head
// spreads one large coordinate over all n, so a block's scale is no longer set by a single
// outlier (Qwen2.5's keys have them: with a plain q8_0 cache its perplexity rises ~6%).
// Queries get the keys' rotation, so q.k is unchanged; values are stored rotated and each
// head's attention output is rotated back. The run lengths are llama.cpp's: for keys the
// largest power of two >= 64 dividing head_dim, for values 64; 0 (no rotation) when
// head_dim is not a multiple of 64.
int32_t kv_key_rotation_size(int32_t head_dim);
int32_t kv_value_rotation_size(int32_t head_dim);
// x[0..num_values) <- H x, run by run of `size` values (a power of two dividing num_values).
void rotate_hadamard(float* x, int64_t num_values, int32_t size);

// Sum over num_blocks blocks of d_k * d_q * (integer dot of the block's values).
float dot_q8_0_q8_0(const block_q8_0* k, const block_q8_0* q, int32_t num_blocks);
float dot_q4_0_q8_0(const block_q4_0* k, const block_q8_0* q, int32_t num_blocks);

}  // namespace troupe::cpu
