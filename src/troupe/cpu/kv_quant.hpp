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

// Sum over num_blocks blocks of d_k * d_q * (integer dot of the block's values).
float dot_q8_0_q8_0(const block_q8_0* k, const block_q8_0* q, int32_t num_blocks);
float dot_q4_0_q8_0(const block_q4_0* k, const block_q8_0* q, int32_t num_blocks);

}  // namespace troupe::cpu
