// Tensor element types as GGUF stores them (ggml type ids), their block layouts, and the
// per-block dequantization math. Every TROUPE_HD function here is shared with gpu/ kernels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "troupe/model/hd.hpp"
#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace troupe {

enum class ggml_type : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15, bf16 = 30,
};

struct type_traits {
  std::string_view name;
  int64_t block_elements;  // values per block
  int64_t block_bytes;     // bytes per block
  bool is_supported;       // troupe can dequantize and multiply it
};

// Traits of a ggml type id read from a file; nullopt for ids troupe does not know.
std::optional<type_traits> traits_of(uint32_t type_id);
type_traits traits_of(ggml_type type);

// Bytes of a row of num_elements values; nullopt when num_elements is not a whole number of
// blocks or the size overflows.
std::optional<uint64_t> row_bytes(ggml_type type, int64_t num_elements);

// ---- scalar conversions -------------------------------------------------------------------

TROUPE_HD float fp16_to_fp32(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));  // exact, as below, in one instruction
#else
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) { mantissa <<= 1; --exponent; }
      mantissa &= 0x3ffu;
      bits = sign | (exponent << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
#endif
}

// Round to nearest even, as F16C's vcvtps2ph with rounding mode 0.
TROUPE_HD uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // result is subnormal or zero
    if (abs < 0x33000000u) return (uint16_t)sign;
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t half = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return (uint16_t)(sign | half);
}

TROUPE_HD float bf16_to_fp32(uint16_t b) {
  const uint32_t bits = (uint32_t)b << 16;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

TROUPE_HD uint16_t fp32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);  // quiet NaN
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// ---- block layouts (ggml-common.h) ---------------------------------------------------------

constexpr int qk32 = 32;
constexpr int qk_k = 256;

struct block_q4_0 { uint16_t d; uint8_t qs[16]; };
struct block_q4_1 { uint16_t d; uint16_t m; uint8_t qs[16]; };
struct block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct block_q5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[16]; };
struct block_q8_0 { uint16_t d; int8_t qs[32]; };
struct block_q8_1 { uint16_t d; uint16_t s; int8_t qs[32]; };
struct block_q4_k { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct block_q5_k { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct block_q6_k { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };

static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22 && sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q8_0) == 34 && sizeof(block_q8_1) == 36);
static_assert(sizeof(block_q4_k) == 144 && sizeof(block_q5_k) == 176 && sizeof(block_q6_k) == 210);

// ---- per-block dequantization: one block in, block_elements floats out ----------------------

TROUPE_HD void dequantize_block(const block_q4_0& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < 16; ++j) {
    out[j] = (float)((b.qs[j] & 15) - 8) * d;
    out[j + 16] = (float)((b.qs[j] >> 4) - 8) * d;
  }
}

TROUPE_HD void dequantize_block(const block_q4_1& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  for (int j = 0; j < 16; ++j) {
    out[j] = (float)(b.qs[j] & 15) * d + m;
    out[j + 16] = (float)(b.qs[j] >> 4) * d + m;
  }
}

TROUPE_HD uint32_t load_le_u32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

TROUPE_HD void dequantize_block(const block_q5_0& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  const uint32_t qh = load_le_u32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 15) | (int)(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    out[j] = (float)(lo - 16) * d;
    out[j + 16] = (float)(hi - 16) * d;
  }
}

TROUPE_HD void dequantize_block(const block_q5_1& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  const uint32_t qh = load_le_u32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 15) | (int)(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    out[j] = (float)lo * d + m;
    out[j + 16] = (float)hi * d + m;
  }
}

TROUPE_HD void dequantize_block(const block_q8_0& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < 32; ++j) out[j] = (float)b.qs[j] * d;
}

// Q4_K's 6-bit scale and min of sub-block s (0..7).
TROUPE_HD void q4_k_scale_min(const uint8_t* scales, int s, int& sc, int& mn) {
  if (s < 4) {
    sc = scales[s] & 63;
    mn = scales[s + 4] & 63;
  } else {
    sc = (scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4);
    mn = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
  }
}

TROUPE_HD void dequantize_block(const block_q4_k& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  const float dmin = fp16_to_fp32(b.dmin);
  for (int c = 0; c < 4; ++c) {
    int sc0, mn0, sc1, mn1;
    q4_k_scale_min(b.scales, 2 * c, sc0, mn0);
    q4_k_scale_min(b.scales, 2 * c + 1, sc1, mn1);
    for (int l = 0; l < 32; ++l) {
      const uint8_t q = b.qs[32 * c + l];
      out[64 * c + l] = d * (float)sc0 * (float)(q & 15) - dmin * (float)mn0;
      out[64 * c + 32 + l] = d * (float)sc1 * (float)(q >> 4) - dmin * (float)mn1;
    }
  }
}

// Q5_K: Q4_K's scales and nibbles plus a fifth bit per value; bit 2c of qh[l] belongs to the
// low nibble of qs[32c + l], bit 2c+1 to its high nibble.
TROUPE_HD void dequantize_block(const block_q5_k& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  const float dmin = fp16_to_fp32(b.dmin);
  for (int c = 0; c < 4; ++c) {
    int sc0, mn0, sc1, mn1;
    q4_k_scale_min(b.scales, 2 * c, sc0, mn0);
    q4_k_scale_min(b.scales, 2 * c + 1, sc1, mn1);
    for (int l = 0; l < 32; ++l) {
      const uint8_t q = b.qs[32 * c + l];
      const int lo = (q & 15) | (((b.qh[l] >> (2 * c)) & 1) << 4);
      const int hi = (q >> 4) | (((b.qh[l] >> (2 * c + 1)) & 1) << 4);
      out[64 * c + l] = d * (float)sc0 * (float)lo - dmin * (float)mn0;
      out[64 * c + 32 + l] = d * (float)sc1 * (float)hi - dmin * (float)mn1;
    }
  }
}

TROUPE_HD void dequantize_block(const block_q6_k& b, float* out) {
  const float d = fp16_to_fp32(b.d);
  for (int n = 0; n < 2; ++n) {
    const uint8_t* ql = b.ql + 64 * n;
    const uint8_t* qh = b.qh + 32 * n;
    const int8_t* sc = b.scales + 8 * n;
    float* y = out + 128 * n;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = (int)((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32;
      const int q2 = (int)((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * (float)sc[is] * (float)q1;
      y[l + 32] = d * (float)sc[is + 2] * (float)q2;
      y[l + 64] = d * (float)sc[is + 4] * (float)q3;
      y[l + 96] = d * (float)sc[is + 6] * (float)q4;
    }
  }
}

// Dequantizes a row of num_elements values (a whole number of blocks) of any supported type.
// Throws troupe::error for a type troupe cannot dequantize.
void dequantize_row(ggml_type type, const void* row, float* out, int64_t num_elements);

}  // namespace troupe
