// The reference (scalar) quantizers and block dot products of the quantized KV cache;
// attention_quantized.cpp has the vector versions of the dot products.
#include "troupe/cpu/kv_quant.hpp"

#include <algorithm>
#include <cmath>

namespace troupe::cpu {

void quantize_q8_0(const float* x, int64_t num_values, block_q8_0* out) {
  for (int64_t b = 0; b < num_values / 32; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
    out[b].d = fp32_to_fp16(amax / 127.0f);
    for (int j = 0; j < 32; ++j) out[b].qs[j] = static_cast<int8_t>(std::nearbyint(xb[j] * inverse));
  }
}

void quantize_q4_0(const float* x, int64_t num_values, block_q4_0* out) {
  for (int64_t b = 0; b < num_values / 32; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f, extreme = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        extreme = xb[j];
      }
    }
    const float d = extreme / -8.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = fp32_to_fp16(d);
    auto level = [&](float v) { return (uint8_t)std::min(15, (int)(int8_t)(v * inverse + 8.5f)); };
    for (int j = 0; j < 16; ++j) out[b].qs[j] = (uint8_t)(level(xb[j]) | (level(xb[j + 16]) << 4));
  }
}

int32_t kv_key_rotation_size(int32_t head_dim) {
  if (head_dim <= 0 || head_dim % 64 != 0) return 0;
  int32_t size = 64;
  while (head_dim % (2 * size) == 0) size *= 2;
  return size;
}

int32_t kv_value_rotation_size(int32_t head_dim) { return head_dim > 0 && head_dim % 64 == 0 ? 64 : 0; }

void rotate_hadamard(float* x, int64_t num_values, int32_t size) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(size));
  for (int64_t start = 0; start < num_values; start += size) {
    float* v = x + start;
    // The fast transform: log2(size) rounds of butterflies give Sylvester's H times v.
    for (int32_t half = 1; half < size; half *= 2) {
      for (int32_t i = 0; i < size; i += 2 * half) {
        for (int32_t j = i; j < i + half; ++j) {
          const float a = v[j];
          const float b = v[j + half];
          v[j] = a + b;
          v[j + half] = a - b;
        }
      }
    }
    for (int32_t i = 0; i < size; ++i) v[i] *= scale;
  }
}

void quantize_kv_row(kv_cache_dtype dtype, const float* x, int64_t num_values, uint8_t* out) {
  if (dtype == kv_cache_dtype::q8_0) {
    quantize_q8_0(x, num_values, reinterpret_cast<block_q8_0*>(out));
  } else {
    quantize_q4_0(x, num_values, reinterpret_cast<block_q4_0*>(out));
  }
}

void dequantize_kv_row(kv_cache_dtype dtype, const uint8_t* row, int64_t num_values, float* out) {
  for (int64_t b = 0; b < num_values / 32; ++b) {
    if (dtype == kv_cache_dtype::q8_0) {
      dequantize_block(reinterpret_cast<const block_q8_0*>(row)[b], out + 32 * b);
    } else {
      dequantize_block(reinterpret_cast<const block_q4_0*>(row)[b], out + 32 * b);
    }
  }
}

float dot_q8_0_q8_0(const block_q8_0* k, const block_q8_0* q, int32_t num_blocks) {
  float sum = 0.0f;
  for (int32_t b = 0; b < num_blocks; ++b) {
    int32_t dot = 0;
    for (int j = 0; j < 32; ++j) dot += k[b].qs[j] * q[b].qs[j];
    sum += (float)dot * (fp16_to_fp32(k[b].d) * fp16_to_fp32(q[b].d));
  }
  return sum;
}

float dot_q4_0_q8_0(const block_q4_0* k, const block_q8_0* q, int32_t num_blocks) {
  float sum = 0.0f;
  for (int32_t b = 0; b < num_blocks; ++b) {
    int32_t dot = 0;
    for (int j = 0; j < 16; ++j) {
      dot += ((k[b].qs[j] & 15) - 8) * q[b].qs[j] + ((k[b].qs[j] >> 4) - 8) * q[b].qs[j + 16];
    }
    sum += (float)dot * (fp16_to_fp32(k[b].d) * fp16_to_fp32(q[b].d));
  }
  return sum;
}

}  // namespace troupe::cpu
