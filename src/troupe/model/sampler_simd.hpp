// Four-wide (SSE/NEON-sized) versions of the sampler's per-element math for the CPU loops
// over the vocabulary, written with GCC/Clang vector extensions: the scalar selects in
// sampler_math.hpp do not auto-vectorize while GCC keeps trapping math on.
#pragma once
#include <cstdint>
#include <cstring>

#include "troupe/model/sampler_math.hpp"

namespace troupe {

using float4 = float __attribute__((vector_size(16)));
using int4 = int32_t __attribute__((vector_size(16)));

inline float4 load_float4(const float* values) {
  float4 v;
  std::memcpy(&v, values, sizeof v);
  return v;
}

inline void store_float4(float* values, float4 v) { std::memcpy(values, &v, sizeof v); }

inline float4 broadcast(float value) { return float4{value, value, value, value}; }

// sampler_exp lane by lane: the same operations in the same order, so the same bits.
inline float4 sampler_exp4(float4 x) {
  const float4 zero = broadcast(0.0f);
  x = x >= broadcast(-87.0f) ? x : broadcast(-87.0f);
  x = x >= zero ? zero : x;
  const float4 rounder = broadcast(12582912.0f);
  const float4 n = (x * 1.44269504088896341f + rounder) - rounder;
  const float4 r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float4 p = broadcast(1.0f / 720.0f);
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int4 scale_bits = (__builtin_convertvector(n, int4) + 127) << 23;
  float4 scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// Tempered weights of four logits, 0 below cutoff (which the caller has already raised to
// at least negligible_logit_below).
inline float4 tempered_weight4(float4 logits, float max_logit, float inv_temperature,
                               float cutoff) {
  const float4 weights = sampler_exp4((logits - max_logit) * inv_temperature);
  return logits >= broadcast(cutoff) ? weights : broadcast(0.0f);
}

}  // namespace troupe
