// Row-wise element operations of a transformer layer on the CPU, built on the shared math
// in model/ops_math.hpp: RMSNorm, RoPE, SiLU-gating, residual add, fp16 stores into KV.
#pragma once
#include <cstdint>

#include "troupe/model/model_config.hpp"

namespace troupe::cpu {

// out = x * rms_scale(x) * weight, for one row of n values.
void rms_norm_row(const float* x, const float* weight, float* out, int64_t n, float eps);

// Rotates the first rope_dim dims of each of num_heads heads (head_dim apart) in place,
// with precomputed cos/sin of the position (rope_dim/2 each).
void rope_row(float* row, int32_t num_heads, int32_t head_dim, int32_t rope_dim, rope_kind kind,
              const float* cos_theta, const float* sin_theta);

// gate[i] = silu(gate[i]) * up[i]
void silu_mul_row(float* gate, const float* up, int64_t n);

// x[i] += delta[i]
void add_row(float* x, const float* delta, int64_t n);

// Rounds n floats to fp16 (round to nearest even).
void store_fp16(const float* in, uint16_t* out, int64_t n);

}  // namespace troupe::cpu
