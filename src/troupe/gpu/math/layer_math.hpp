// Per-element math of the layer kernels that model/ops_math.hpp does not already hold:
// which two dims RoPE rotates together, one normalized element, the SiLU gate, a quantized
// block as fp16, and unquantized types as one-value blocks so every kernel template takes them.
#pragma once
#include <cstdint>

#include "troupe/model/hd.hpp"
#include "troupe/model/model_config.hpp"
#include "troupe/model/ops_math.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::gpu {

// The dims of rotated pair i (0 <= i < rope_dim / 2) within a head: adjacent for llama's
// "norm" RoPE, half a rotation apart for NeoX.
TROUPE_HD void rope_pair(rope_kind kind, int32_t i, int32_t half, int32_t& i0, int32_t& i1) {
  if (kind == rope_kind::norm) {
    i0 = 2 * i;
    i1 = 2 * i + 1;
  } else {
    i0 = i;
    i1 = i + half;
  }
}

// One output of RMSNorm, in the CPU backend's order of operations.
TROUPE_HD float rms_norm_element(float x, float scale, float weight) { return x * scale * weight; }

TROUPE_HD float silu_gate(float gate, float up) { return silu(gate) * up; }

// Values per block of each block type.
template <class Block> struct block_info { static constexpr int elements = qk32; };
template <> struct block_info<block_q4_k> { static constexpr int elements = qk_k; };
template <> struct block_info<block_q6_k> { static constexpr int elements = qk_k; };

// Unquantized element types as one-value "blocks", so every kernel template takes any type.
struct f32_value { float v; };
struct f16_value { uint16_t v; };
struct bf16_value { uint16_t v; };
template <> struct block_info<f32_value> { static constexpr int elements = 1; };
template <> struct block_info<f16_value> { static constexpr int elements = 1; };
template <> struct block_info<bf16_value> { static constexpr int elements = 1; };
TROUPE_HD void dequantize_block(const f32_value& b, float* out) { out[0] = b.v; }
TROUPE_HD void dequantize_block(const f16_value& b, float* out) { out[0] = fp16_to_fp32(b.v); }
TROUPE_HD void dequantize_block(const bf16_value& b, float* out) { out[0] = bf16_to_fp32(b.v); }

// A quantized block as fp16 values: the tile the prefill GEMMs read.
template <class Block>
TROUPE_HD void dequantize_block_to_half(const Block& b, uint16_t* out) {
  constexpr int n = block_info<Block>::elements;
  float tmp[n];
  dequantize_block(b, tmp);
  for (int i = 0; i < n; ++i) out[i] = fp32_to_fp16(tmp[i]);
}

}  // namespace troupe::gpu
