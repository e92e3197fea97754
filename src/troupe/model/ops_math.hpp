// Per-element math of the transformer layers, shared by the CPU backend and the CUDA
// kernels: RMSNorm scale, RoPE angles and pair rotation, SiLU, and the online-softmax
// update used by attention. Each follows llama.cpp's float arithmetic where it matters.
#pragma once
#include <cmath>
#include <cstdint>

#include "troupe/model/hd.hpp"

namespace troupe {

// 1 / sqrt(mean(x^2) + eps), given the sum of squares (accumulated in double, as llama.cpp).
TROUPE_HD float rms_scale(double sum_of_squares, int64_t n, float eps) {
  const float mean = (float)(sum_of_squares / (double)n);
  return 1.0f / sqrtf(mean + eps);
}

// Rotates one pair (x0, x1) by angle theta: (x0 cos - x1 sin, x0 sin + x1 cos).
TROUPE_HD void rope_rotate(float& x0, float& x1, float cos_theta, float sin_theta) {
  const float a = x0, b = x1;
  x0 = a * cos_theta - b * sin_theta;
  x1 = a * sin_theta + b * cos_theta;
}

// theta for rotated pair i (0 <= i < rope_dim/2) at position pos: pos * freq_scale *
// base^(-2i/rope_dim). Computed like ggml (a float power chain), so angles match its
// rounding: theta_scale^i by repeated multiplication.
TROUPE_HD float rope_theta(int32_t pos, int32_t pair, int32_t rope_dim, float freq_base, float freq_scale) {
  const float theta_scale = powf(freq_base, -2.0f / (float)rope_dim);
  float theta = (float)pos;
  for (int32_t i = 0; i < pair; ++i) theta *= theta_scale;
  return freq_scale * theta;
}

TROUPE_HD float silu(float x) { return x / (1.0f + expf(-x)); }

// Online softmax over a stream of scores: m is the running max, l the running sum of
// exp(score - m). Returns the factor by which earlier accumulations must be rescaled and
// sets p to exp(score - m_new).
struct online_softmax {
  float m = -INFINITY;
  float l = 0.0f;
};

TROUPE_HD float online_softmax_push(online_softmax& s, float score, float& p) {
  if (score > s.m) {
    const float rescale = (s.m == -INFINITY) ? 0.0f : expf(s.m - score);
    s.l = s.l * rescale + 1.0f;
    s.m = score;
    p = 1.0f;
    return rescale;
  }
  p = expf(score - s.m);
  s.l += p;
  return 1.0f;
}

}  // namespace troupe
