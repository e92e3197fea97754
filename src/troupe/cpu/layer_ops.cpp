#include "troupe/cpu/layer_ops.hpp"

#include <immintrin.h>

#include "troupe/model/ops_math.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::cpu {

void rms_norm_row(const float* x, const float* weight, float* out, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += (double)(x[i] * x[i]);
  const float scale = rms_scale(sum, n, eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void rope_row(float* row, int32_t num_heads, int32_t head_dim, int32_t rope_dim, rope_kind kind,
              const float* cos_theta, const float* sin_theta) {
  const int32_t half = rope_dim / 2;
  for (int32_t h = 0; h < num_heads; ++h) {
    float* x = row + (int64_t)h * head_dim;
    for (int32_t i = 0; i < half; ++i) {
      if (kind == rope_kind::norm) {
        rope_rotate(x[2 * i], x[2 * i + 1], cos_theta[i], sin_theta[i]);
      } else {
        rope_rotate(x[i], x[i + half], cos_theta[i], sin_theta[i]);
      }
    }
  }
}

void silu_mul_row(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = silu(gate[i]) * up[i];
}

void add_row(float* x, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += delta[i];
}

namespace {

__attribute__((target("avx2,f16c"))) void store_fp16_f16c(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128((__m128i*)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) out[i] = fp32_to_fp16(in[i]);
}

}  // namespace

void store_fp16(const float* in, uint16_t* out, int64_t n) {
  static const bool has_f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2");
  if (has_f16c) return store_fp16_f16c(in, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(in[i]);
}

}  // namespace troupe::cpu
