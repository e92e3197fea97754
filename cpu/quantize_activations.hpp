// Activations quantized to 8-bit blocks of 32 (scale d, scaled sum s = d*sum(q), integer
// sum), the form the integer matmul kernels consume. The scalar quantizer here is the
// reference: every instruction-set path produces bit-identical blocks.
#pragma once
#include <cstdint>

#include "model/quant.hpp"

namespace troupe::cpu {

// Quantizes num_cols floats (a multiple of 32): per block d = max|x|/127,
// q = round-half-even(x/d), s = d*sum(q). d, s and sum hold num_cols/32 entries.
void quantize_row_q8(const float* x, int64_t num_cols, int8_t* q, float* d, float* s, int32_t* sum);

// Whether matmul multiplies `type` against quantized activations (integer kernels) or
// against the float activations (F32, F16, BF16 and Q6_K run a float path).
bool uses_quantized_activations(ggml_type type);

}  // namespace troupe::cpu
