// Activations quantized to 8-bit blocks of 32 (scale d, scaled sum s = d*sum(q), integer
// sum), the form the integer matmul kernels consume. The scalar quantizer here is the
// reference: every instruction-set path produces bit-identical blocks.
#pragma once
#include <cstdint>

#include "troupe/model/quant.hpp"

namespace troupe::cpu {

// Quantizes num_cols floats (a multiple of 32) the way llama.cpp's x86 code does, so both
// engines feed the integer dot products the same numbers. Per block of 32:
//   q = round-half-even(x * 127/max|x|), d = fp16(max|x|/127),
//   s = fp16(max|x|/127 * sum(q))  (Q8_1's sum, paired with Q4_1/Q5_1 weights),
//   s_exact = d * sum(q)            (what the symmetric formats' offset correction needs),
//   sum = sum(q), sum_lo = the sum of the first 16 q (Q6_K's half-block offsets).
// d, s, s_exact, sum and sum_lo hold num_cols/32 entries each.
void quantize_row_q8(const float* x, int64_t num_cols, int8_t* q, float* d, float* s, float* s_exact,
                     int32_t* sum, int32_t* sum_lo);

// Whether matmul multiplies `type` against quantized activations (integer kernels: every
// quantized type troupe supports) or against the float activations (F32, F16, BF16).
bool uses_quantized_activations(ggml_type type);

}  // namespace troupe::cpu
