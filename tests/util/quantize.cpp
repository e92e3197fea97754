// Test quantizers: each block picks its scale from the block's range, rounds every value to
// the nearest level, and packs the bits in the layout model/quant.hpp dequantizes.
#include "tests/util/quantize.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe::test {
namespace {

int clamp_round(float x, int lo, int hi) { return std::clamp(static_cast<int>(std::lround(x)), lo, hi); }

// The value with the largest magnitude, sign kept.
float signed_absmax(const float* x, int n) {
  float best = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(best)) best = x[i];
  }
  return best;
}

float rounded_fp16(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }
float inverse(float d) { return d != 0 ? 1.0f / d : 0.0f; }

void quantize_q4_0(const float* x, block_q4_0& b) {
  const float d = signed_absmax(x, 32) / -8;  // the extreme value lands on level 0
  b.d = fp32_to_fp16(d);
  const float id = inverse(rounded_fp16(d));
  for (int j = 0; j < 16; ++j) {
    const int lo = clamp_round(x[j] * id, -8, 7) + 8;
    const int hi = clamp_round(x[j + 16] * id, -8, 7) + 8;
    b.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void quantize_q4_1(const float* x, block_q4_1& b) {
  const float lo_value = *std::min_element(x, x + 32);
  const float hi_value = *std::max_element(x, x + 32);
  b.d = fp32_to_fp16((hi_value - lo_value) / 15);
  b.m = fp32_to_fp16(lo_value);
  const float id = inverse(fp16_to_fp32(b.d));
  const float m = fp16_to_fp32(b.m);
  for (int j = 0; j < 16; ++j) {
    const int lo = clamp_round((x[j] - m) * id, 0, 15);
    const int hi = clamp_round((x[j + 16] - m) * id, 0, 15);
    b.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// Q5_0/Q5_1 share the split of each 5-bit level into a nibble and a bit of qh.
void pack_5bit(const int* q, uint8_t* qs, uint8_t* qh) {
  uint32_t high_bits = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    high_bits |= static_cast<uint32_t>(q[j] >> 4) << j;
    high_bits |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
  }
  for (int i = 0; i < 4; ++i) qh[i] = static_cast<uint8_t>(high_bits >> (8 * i));
}

void quantize_q5_0(const float* x, block_q5_0& b) {
  const float d = signed_absmax(x, 32) / -16;
  b.d = fp32_to_fp16(d);
  const float id = inverse(rounded_fp16(d));
  int q[32];
  for (int j = 0; j < 32; ++j) q[j] = clamp_round(x[j] * id, -16, 15) + 16;
  pack_5bit(q, b.qs, b.qh);
}

void quantize_q5_1(const float* x, block_q5_1& b) {
  const float lo_value = *std::min_element(x, x + 32);
  const float hi_value = *std::max_element(x, x + 32);
  b.d = fp32_to_fp16((hi_value - lo_value) / 31);
  b.m = fp32_to_fp16(lo_value);
  const float id = inverse(fp16_to_fp32(b.d));
  const float m = fp16_to_fp32(b.m);
  int q[32];
  for (int j = 0; j < 32; ++j) q[j] = clamp_round((x[j] - m) * id, 0, 31);
  pack_5bit(q, b.qs, b.qh);
}

void quantize_q8_0(const float* x, block_q8_0& b) {
  const float d = std::fabs(signed_absmax(x, 32)) / 127;
  b.d = fp32_to_fp16(d);
  const float id = inverse(rounded_fp16(d));
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(clamp_round(x[j] * id, -127, 127));
}

// Q4_K and Q5_K share their scales: eight sub-blocks of 32, each x ≈ d·sc·q − dmin·mn
// with 6-bit sc and mn and q in [0, max_q]. Sets b.d, b.dmin and b.scales; returns q.
template <class Block>
std::array<int, 256> quantize_k_sub_blocks(const float* x, int max_q, Block& b) {
  float scale[8], min_neg[8];
  for (int s = 0; s < 8; ++s) {
    const float lo_value = std::min(0.0f, *std::min_element(x + 32 * s, x + 32 * s + 32));
    const float hi_value = *std::max_element(x + 32 * s, x + 32 * s + 32);
    scale[s] = (hi_value - lo_value) / static_cast<float>(max_q);
    min_neg[s] = -lo_value;
  }
  const float d = *std::max_element(scale, scale + 8) / 63;
  const float dmin = *std::max_element(min_neg, min_neg + 8) / 63;
  b.d = fp32_to_fp16(d);
  b.dmin = fp32_to_fp16(dmin);
  int sc[8], mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = clamp_round(scale[s] * inverse(d), 0, 63);
    mn[s] = clamp_round(min_neg[s] * inverse(dmin), 0, 63);
  }
  for (int s = 0; s < 4; ++s) {
    b.scales[s] = static_cast<uint8_t>(sc[s] | ((sc[s + 4] >> 4) << 6));
    b.scales[s + 4] = static_cast<uint8_t>(mn[s] | ((mn[s + 4] >> 4) << 6));
    b.scales[s + 8] = static_cast<uint8_t>((sc[s + 4] & 15) | ((mn[s + 4] & 15) << 4));
  }
  const float d_stored = fp16_to_fp32(b.d);
  const float dmin_stored = fp16_to_fp32(b.dmin);
  std::array<int, 256> q;
  for (int i = 0; i < 256; ++i) {
    const int s = i / 32;
    q[i] = clamp_round((x[i] + dmin_stored * mn[s]) * inverse(d_stored * sc[s]), 0, max_q);
  }
  return q;
}

void quantize_q4_k(const float* x, block_q4_k& b) {
  const auto q = quantize_k_sub_blocks(x, 15, b);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
  }
}

// Q5_K: Q4_K with 5-bit values; bit 4 of value 64c+l goes to bit 2c of qh[l], of value
// 64c+32+l to bit 2c+1.
void quantize_q5_k(const float* x, block_q5_k& b) {
  const auto q = quantize_k_sub_blocks(x, 31, b);
  for (int l = 0; l < 32; ++l) b.qh[l] = 0;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
      b.qs[32 * c + l] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
      b.qh[l] = static_cast<uint8_t>(b.qh[l] | ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
    }
  }
}

// Q6_K: sixteen sub-blocks of 16 (sub-block i holds elements [16i, 16i+16)), x ≈ d·sc·(q−32).
void quantize_q6_k(const float* x, block_q6_k& b) {
  float scale[16];
  for (int i = 0; i < 16; ++i) scale[i] = signed_absmax(x + 16 * i, 16) / -32;
  const float d = std::fabs(signed_absmax(scale, 16)) / 127;
  b.d = fp32_to_fp16(d);
  const float d_stored = fp16_to_fp32(b.d);
  int q[256];
  for (int i = 0; i < 16; ++i) {
    const int sc = clamp_round(scale[i] * inverse(d), -127, 127);
    b.scales[i] = static_cast<int8_t>(sc);
    for (int k = 0; k < 16; ++k) q[16 * i + k] = clamp_round(x[16 * i + k] * inverse(d_stored * sc), -32, 31) + 32;
  }
  std::memset(b.ql, 0, sizeof b.ql);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int e = 0; e < 256; ++e) {
    const int n = e / 128, part = (e % 128) / 32, l = e % 32;
    uint8_t& ql = b.ql[64 * n + l + (part & 1) * 32];
    ql = static_cast<uint8_t>(ql | ((q[e] & 15) << (part >= 2 ? 4 : 0)));
    b.qh[32 * n + l] = static_cast<uint8_t>(b.qh[32 * n + l] | ((q[e] >> 4) << (2 * part)));
  }
}

template <class Block, int N, void (*Quantize)(const float*, Block&)>
std::vector<std::byte> quantize_blocks(std::span<const float> values) {
  std::vector<std::byte> out(values.size() / N * sizeof(Block));
  for (size_t i = 0; i < values.size() / N; ++i) {
    Block b{};
    Quantize(values.data() + i * N, b);
    std::memcpy(out.data() + i * sizeof(Block), &b, sizeof(Block));
  }
  return out;
}

template <uint16_t (*Convert)(float)>
std::vector<std::byte> convert_halves(std::span<const float> values) {
  std::vector<std::byte> out(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = Convert(values[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

}  // namespace

std::vector<std::byte> quantize(ggml_type type, std::span<const float> values) {
  const auto traits = traits_of(static_cast<uint32_t>(type));
  if (!traits || values.size() % static_cast<size_t>(traits->block_elements) != 0) {
    throw error(error_code::invalid_argument, "quantize: " + std::to_string(values.size()) +
                                                  " values are not a whole number of blocks of type " +
                                                  std::to_string(static_cast<uint32_t>(type)));
  }
  switch (type) {
    case ggml_type::f32: {
      std::vector<std::byte> out(values.size() * 4);
      std::memcpy(out.data(), values.data(), out.size());
      return out;
    }
    case ggml_type::f16: return convert_halves<fp32_to_fp16>(values);
    case ggml_type::bf16: return convert_halves<fp32_to_bf16>(values);
    case ggml_type::q4_0: return quantize_blocks<block_q4_0, qk32, quantize_q4_0>(values);
    case ggml_type::q4_1: return quantize_blocks<block_q4_1, qk32, quantize_q4_1>(values);
    case ggml_type::q5_0: return quantize_blocks<block_q5_0, qk32, quantize_q5_0>(values);
    case ggml_type::q5_1: return quantize_blocks<block_q5_1, qk32, quantize_q5_1>(values);
    case ggml_type::q8_0: return quantize_blocks<block_q8_0, qk32, quantize_q8_0>(values);
    case ggml_type::q4_k: return quantize_blocks<block_q4_k, qk_k, quantize_q4_k>(values);
    case ggml_type::q5_k: return quantize_blocks<block_q5_k, qk_k, quantize_q5_k>(values);
    case ggml_type::q6_k: return quantize_blocks<block_q6_k, qk_k, quantize_q6_k>(values);
    default:
      throw error(error_code::invalid_argument, "quantize: no test quantizer for type " + std::string(traits->name));
  }
}

}  // namespace troupe::test
