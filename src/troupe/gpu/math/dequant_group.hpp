// Eight consecutive values of a quantized row, dequantized with the same arithmetic as
// model/quant.hpp's dequantize_block: the unit of work of one GPU thread in the GEMV and in
// the fp16 dequantization, so that a warp's lanes read neighbouring bytes of the same blocks
// (coalesced) instead of one lane walking a whole block. Groups never straddle a scale:
// every type's sub-blocks are multiples of 8 values.
#pragma once
#include <cstdint>

#include "troupe/gpu/math/layer_math.hpp"
#include "troupe/model/hd.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::gpu {

// Values 8g .. 8g+7 of block b (g < elements / 8).
TROUPE_HD void dequantize_group(const block_q4_0& b, int g, float* out) {
  const float d = fp16_to_fp32(b.d);
  const int j0 = 8 * (g & 1), shift = g < 2 ? 0 : 4;
  for (int k = 0; k < 8; ++k) out[k] = (float)(((b.qs[j0 + k] >> shift) & 15) - 8) * d;
}

TROUPE_HD void dequantize_group(const block_q4_1& b, int g, float* out) {
  const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
  const int j0 = 8 * (g & 1), shift = g < 2 ? 0 : 4;
  for (int k = 0; k < 8; ++k) out[k] = (float)((b.qs[j0 + k] >> shift) & 15) * d + m;
}

TROUPE_HD void dequantize_group(const block_q5_0& b, int g, float* out) {
  const float d = fp16_to_fp32(b.d);
  const uint32_t qh = load_le_u32(b.qh);
  const int j0 = 8 * (g & 1), shift = g < 2 ? 0 : 4, hbit = g < 2 ? 0 : 16;
  for (int k = 0; k < 8; ++k) {
    const int j = j0 + k;
    const int q = ((b.qs[j] >> shift) & 15) | (int)(((qh >> (j + hbit)) & 1u) << 4);
    out[k] = (float)(q - 16) * d;
  }
}

TROUPE_HD void dequantize_group(const block_q5_1& b, int g, float* out) {
  const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
  const uint32_t qh = load_le_u32(b.qh);
  const int j0 = 8 * (g & 1), shift = g < 2 ? 0 : 4, hbit = g < 2 ? 0 : 16;
  for (int k = 0; k < 8; ++k) {
    const int j = j0 + k;
    const int q = ((b.qs[j] >> shift) & 15) | (int)(((qh >> (j + hbit)) & 1u) << 4);
    out[k] = (float)q * d + m;
  }
}

TROUPE_HD void dequantize_group(const block_q8_0& b, int g, float* out) {
  const float d = fp16_to_fp32(b.d);
  for (int k = 0; k < 8; ++k) out[k] = (float)b.qs[8 * g + k] * d;
}

TROUPE_HD void dequantize_group(const block_q4_k& b, int g, float* out) {
  const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
  const int e = 8 * g, c = e / 64, within = e % 64, high = within >= 32 ? 1 : 0;
  int sc, mn;
  q4_k_scale_min(b.scales, 2 * c + high, sc, mn);
  const uint8_t* qs = b.qs + 32 * c + (within - 32 * high);
#if defined(__CUDA_ARCH__)
  // One 8-byte load: on the device every Q4_K tensor starts its own allocation, blocks are
  // 144 bytes and qs sits 16 bytes in, so qs + 8k is 8-byte aligned.
  const uint2 packed = *reinterpret_cast<const uint2*>(qs);
  for (int k = 0; k < 8; ++k) {
    const uint32_t byte = ((k < 4 ? packed.x : packed.y) >> (8 * (k & 3))) & 0xffu;
    const int q = high ? (int)(byte >> 4) : (int)(byte & 15);
    out[k] = d * (float)sc * (float)q - dmin * (float)mn;
  }
#else
  for (int k = 0; k < 8; ++k) {
    const int q = high ? (qs[k] >> 4) : (qs[k] & 15);
    out[k] = d * (float)sc * (float)q - dmin * (float)mn;
  }
#endif
}

TROUPE_HD void dequantize_group(const block_q6_k& b, int g, float* out) {
  const float d = fp16_to_fp32(b.d);
  const int e = 8 * g, n = e / 128, r = e % 128, quarter = r / 32, l0 = r % 32;
  const uint8_t* ql = b.ql + 64 * n + (quarter & 1) * 32;
  const uint8_t* qh = b.qh + 32 * n;
  const int8_t* sc = b.scales + 8 * n;
  const float scale = (float)sc[l0 / 16 + 2 * quarter];
  const int lshift = quarter >= 2 ? 4 : 0, hshift = 2 * quarter;
  for (int k = 0; k < 8; ++k) {
    const int l = l0 + k;
    const int q = (int)(((ql[l] >> lshift) & 15) | (((qh[l] >> hshift) & 3) << 4)) - 32;
    out[k] = d * scale * (float)q;
  }
}

// Values e .. e+7 (e a multiple of 8) of a row stored as `blocks` (or of a whole matrix whose
// rows are whole blocks, with e counted over the flattened matrix).
template <class Block>
TROUPE_HD void dequantize_group8(const Block* blocks, int64_t e, float* out) {
  constexpr int n = block_info<Block>::elements;
  dequantize_group(blocks[e / n], (int)((e % n) / 8), out);
}

TROUPE_HD void dequantize_group8(const f32_value* v, int64_t e, float* out) {
  for (int k = 0; k < 8; ++k) out[k] = v[e + k].v;
}
TROUPE_HD void dequantize_group8(const f16_value* v, int64_t e, float* out) {
  for (int k = 0; k < 8; ++k) out[k] = fp16_to_fp32(v[e + k].v);
}
TROUPE_HD void dequantize_group8(const bf16_value* v, int64_t e, float* out) {
  for (int k = 0; k < 8; ++k) out[k] = bf16_to_fp32(v[e + k].v);
}

}  // namespace troupe::gpu
