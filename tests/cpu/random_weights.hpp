// Test helper: random, well-formed weight rows of every ggml type the CPU kernels take
// (random quantized values with small positive scales), and the reference products the
// kernels must reproduce (double-precision dots of dequantize_row with quantized activations).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "troupe/cpu/quantize_activations.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::test {

inline uint16_t random_fp16(std::mt19937& rng, float lo, float hi) {
  return fp32_to_fp16(std::uniform_real_distribution<float>(lo, hi)(rng));
}

// num_rows rows of num_cols values of `type`, as GGUF stores them.
inline std::vector<uint8_t> random_rows(ggml_type type, int64_t num_rows, int64_t num_cols, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto traits = traits_of(type);
  const int64_t num_blocks = num_rows * num_cols / traits.block_elements;
  std::vector<uint8_t> bytes(static_cast<size_t>(num_blocks * traits.block_bytes));
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());  // every quant bit pattern, incl. q8 = -128
  auto put16 = [&](int64_t block, int offset, uint16_t v) {
    std::memcpy(bytes.data() + block * traits.block_bytes + offset, &v, 2);
  };
  for (int64_t i = 0; i < num_blocks; ++i) {
    switch (type) {
      case ggml_type::f32: {
        const float v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
        std::memcpy(bytes.data() + 4 * i, &v, 4);
        break;
      }
      case ggml_type::f16: put16(i, 0, random_fp16(rng, -1.0f, 1.0f)); break;
      case ggml_type::bf16:
        put16(i, 0, fp32_to_bf16(std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng)));
        break;
      case ggml_type::q4_0:
      case ggml_type::q5_0:
      case ggml_type::q8_0: put16(i, 0, random_fp16(rng, 0.001f, 0.02f)); break;
      case ggml_type::q4_1:
      case ggml_type::q5_1:
        put16(i, 0, random_fp16(rng, 0.001f, 0.02f));
        put16(i, 2, random_fp16(rng, -0.2f, 0.1f));
        break;
      case ggml_type::q4_k:
      case ggml_type::q5_k:
        put16(i, 0, random_fp16(rng, 0.0005f, 0.002f));
        put16(i, 2, random_fp16(rng, 0.0005f, 0.002f));
        break;
      case ggml_type::q6_k: put16(i, 208, random_fp16(rng, 0.0005f, 0.002f)); break;
      default: break;
    }
  }
  return bytes;
}

// Like random_rows, with every fp16 scale drawn from the edges: zero, the smallest and
// largest subnormals, the largest finite value (both signs), and ordinary values.
inline std::vector<uint8_t> random_rows_extreme_scales(ggml_type type, int64_t num_rows, int64_t num_cols,
                                                       uint32_t seed) {
  auto bytes = random_rows(type, num_rows, num_cols, seed);
  std::mt19937 rng(seed + 1);
  const uint16_t edges[] = {0x0000, 0x0001, 0x03ff, 0x7bff, 0xfbff, 0x8001, 0x3c00, 0x1400};
  std::vector<int> offsets;
  switch (type) {
    case ggml_type::q4_0: case ggml_type::q5_0: case ggml_type::q8_0: offsets = {0}; break;
    case ggml_type::q4_1: case ggml_type::q5_1: case ggml_type::q4_k: case ggml_type::q5_k: offsets = {0, 2}; break;
    case ggml_type::q6_k: offsets = {208}; break;
    default: return bytes;
  }
  const auto traits = traits_of(type);
  const int64_t num_blocks = num_rows * num_cols / traits.block_elements;
  for (int64_t i = 0; i < num_blocks; ++i)
    for (int offset : offsets) {
      const uint16_t v = edges[rng() % std::size(edges)];
      std::memcpy(bytes.data() + i * traits.block_bytes + offset, &v, 2);
    }
  return bytes;
}

inline std::vector<float> random_activations(int64_t num_tokens, int64_t num_cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(num_tokens * num_cols));
  for (auto& v : x) v = normal(rng);
  return x;
}

struct reference_product {
  std::vector<double> y;          // [token][row]
  std::vector<double> magnitude;  // sum of |w|*|a| per output, to scale the tolerance
};

// What matmul must compute: integer-path types against Q8-quantized activations, float-path
// types against the activations as given.
inline reference_product reference_matmul(ggml_type type, const std::vector<uint8_t>& rows, int64_t num_rows,
                                          int64_t num_cols, const std::vector<float>& x, int64_t num_tokens) {
  const size_t row_size = static_cast<size_t>(*row_bytes(type, num_cols));
  const int64_t nb = num_cols / 32;
  std::vector<float> a(x.size());
  // Q4_1/Q5_1 meet Q8_1 activations, whose per-block sum s is rounded to fp16: the product
  // gains m_w * (s - d*sum(q)) per block over the exact dot.
  const bool has_q8_1_sum = type == ggml_type::q4_1 || type == ggml_type::q5_1;
  std::vector<double> sum_error(static_cast<size_t>(num_tokens * nb));
  if (cpu::uses_quantized_activations(type)) {
    std::vector<int8_t> q(static_cast<size_t>(num_cols));
    std::vector<float> d(static_cast<size_t>(nb)), s(static_cast<size_t>(nb)), s_exact(static_cast<size_t>(nb));
    std::vector<int32_t> sum(static_cast<size_t>(nb)), sum_lo(static_cast<size_t>(nb));
    for (int64_t t = 0; t < num_tokens; ++t) {
      cpu::quantize_row_q8(x.data() + t * num_cols, num_cols, q.data(), d.data(), s.data(), s_exact.data(),
                           sum.data(), sum_lo.data());
      for (int64_t k = 0; k < num_cols; ++k) a[t * num_cols + k] = d[k / 32] * q[k];
      for (int64_t b = 0; b < nb; ++b)
        sum_error[t * nb + b] = static_cast<double>(s[b]) - static_cast<double>(d[b]) * sum[b];
    }
  } else {
    a = x;
  }
  reference_product out{std::vector<double>(static_cast<size_t>(num_rows * num_tokens)),
                        std::vector<double>(static_cast<size_t>(num_rows * num_tokens))};
  std::vector<float> w(static_cast<size_t>(num_cols));
  for (int64_t r = 0; r < num_rows; ++r) {
    dequantize_row(type, rows.data() + r * row_size, w.data(), num_cols);
    for (int64_t t = 0; t < num_tokens; ++t) {
      double acc = 0.0, mag = 0.0;
      for (int64_t k = 0; k < num_cols; ++k) {
        acc += static_cast<double>(w[k]) * a[t * num_cols + k];
        mag += std::fabs(static_cast<double>(w[k]) * a[t * num_cols + k]);
      }
      if (has_q8_1_sum) {
        for (int64_t b = 0; b < nb; ++b) {
          uint16_t m;
          std::memcpy(&m, rows.data() + r * row_size + b * traits_of(type).block_bytes + 2, 2);
          acc += fp16_to_fp32(m) * sum_error[t * nb + b];
        }
      }
      out.y[t * num_rows + r] = acc;
      out.magnitude[t * num_rows + r] = mag;
    }
  }
  return out;
}

}  // namespace troupe::test
