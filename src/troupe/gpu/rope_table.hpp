// RoPE cos/sin per (position, pair), computed on the host as the CPU backend computes them
// (ggml's float power chain, model/ops_math.hpp rope_theta) and uploaded once.
#pragma once
#include <cmath>
#include <vector>

#include "troupe/model/model_config.hpp"

namespace troupe::gpu {

struct rope_table {
  std::vector<float> cos, sin;  // [context_length][rope_dim / 2]
};

inline rope_table make_rope_table(const model_config& c) {
  const int32_t half = c.rope_dim / 2;
  rope_table t;
  t.cos.resize((size_t)c.context_length * half);
  t.sin.resize(t.cos.size());
  const float theta_scale = powf(c.rope_freq_base, -2.0f / (float)c.rope_dim);
  for (int32_t p = 0; p < c.context_length; ++p) {
    float theta = (float)p;
    for (int32_t i = 0; i < half; ++i) {
      const float angle = c.rope_freq_scale * theta;
      t.cos[(size_t)p * half + i] = cosf(angle);
      t.sin[(size_t)p * half + i] = sinf(angle);
      theta *= theta_scale;
    }
  }
  return t;
}

}  // namespace troupe::gpu
