// RoPE cos/sin per (position, rotated pair), computed once at load on the host as ggml
// computes them (a float power chain per position, then the frequency factors and the
// linear scale), shared by the CPU backend and the CUDA backend (which uploads it).
#pragma once
#include <cmath>
#include <vector>

#include "troupe/model/model_config.hpp"

namespace troupe {

struct rope_table {
  std::vector<float> cos, sin;  // [context_length][rope_dim / 2]
};

inline rope_table make_rope_table(const model_config& c) {
  const int32_t half = c.rope_dim / 2;
  const bool has_factors = !c.rope_freq_factors.empty();
  rope_table t;
  t.cos.resize((size_t)c.context_length * half);
  t.sin.resize(t.cos.size());
  const float theta_scale = powf(c.rope_freq_base, -2.0f / (float)c.rope_dim);
  for (int32_t p = 0; p < c.context_length; ++p) {
    float theta = (float)p;
    for (int32_t i = 0; i < half; ++i) {
      // ggml divides by the factor before the linear scale; with a factor of 1 the
      // division is exact, so models without factors get the same bits as before.
      const float extrapolated = has_factors ? theta / c.rope_freq_factors[(size_t)i] : theta;
      const float angle = c.rope_freq_scale * extrapolated;
      t.cos[(size_t)p * half + i] = cosf(angle);
      t.sin[(size_t)p * half + i] = sinf(angle);
      theta *= theta_scale;
    }
  }
  return t;
}

}  // namespace troupe
