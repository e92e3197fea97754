// The reference activation quantizer (scalar) and which weight types use it.
#include "troupe/cpu/quantize_activations.hpp"

#include <cmath>

#include "troupe/model/quant.hpp"

namespace troupe::cpu {

void quantize_row_q8(const float* x, int64_t num_cols, int8_t* q, float* d, float* s, float* s_exact,
                     int32_t* sum, int32_t* sum_lo) {
  for (int64_t b = 0; b < num_cols / 32; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float scale = amax / 127.0f;
    const float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
    int32_t total = 0;
    for (int j = 0; j < 32; ++j) {
      const int v = static_cast<int>(std::nearbyint(xb[j] * inverse));
      q[32 * b + j] = static_cast<int8_t>(v);
      total += v;
      if (j == 15) sum_lo[b] = total;
    }
    d[b] = fp16_to_fp32(fp32_to_fp16(scale));
    s[b] = fp16_to_fp32(fp32_to_fp16(scale * static_cast<float>(total)));
    s_exact[b] = d[b] * static_cast<float>(total);
    sum[b] = total;
  }
}

bool uses_quantized_activations(ggml_type type) {
  switch (type) {
    case ggml_type::q4_0:
    case ggml_type::q4_1:
    case ggml_type::q5_0:
    case ggml_type::q5_1:
    case ggml_type::q8_0:
    case ggml_type::q4_k:
    case ggml_type::q5_k:
    case ggml_type::q6_k:
      return true;
    default:
      return false;
  }
}

}  // namespace troupe::cpu
