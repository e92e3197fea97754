// The CUDA kernels' per-element math, run on the CPU against the CPU backend: a dequantized
// block (as the fp16 the GEMMs read), a normalized row, rotated pairs, SiLU gating and one
// attention row with its online softmax read through a block table.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "troupe/cpu/attention.hpp"
#include "troupe/cpu/kv_memory.hpp"
#include "troupe/cpu/layer_ops.hpp"
#include "troupe/gpu/math/attention_math.hpp"
#include "troupe/gpu/math/dequant_group.hpp"
#include "troupe/gpu/math/layer_math.hpp"
#include "troupe/model/rope_table.hpp"
#include "util/quantize.hpp"

using namespace troupe;

namespace {

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

template <class Block>
void check_blocks_to_half(ggml_type type) {
  const int64_t n = 4 * 256;
  const auto values = random_values((size_t)n, 7);
  const auto bytes = test::quantize(type, values);
  std::vector<float> cpu(n);
  dequantize_row(type, bytes.data(), cpu.data(), n);
  const auto* blocks = reinterpret_cast<const Block*>(bytes.data());
  constexpr int per = gpu::block_info<Block>::elements;
  std::vector<uint16_t> half(n);
  for (int64_t b = 0; b < n / per; ++b) gpu::dequantize_block_to_half(blocks[b], half.data() + b * per);
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) mismatches += half[i] != fp32_to_fp16(cpu[i]);
  CHECK(mismatches == 0);
  // The GEMV's and the fp16 dequantization's unit: eight values at a time, bit-identical.
  int group_mismatches = 0;
  for (int64_t e = 0; e < n; e += 8) {
    float v[8];
    gpu::dequantize_group8(blocks, e, v);
    for (int k = 0; k < 8; ++k) group_mismatches += v[k] != cpu[e + k];
  }
  CHECK(group_mismatches == 0);
}

}  // namespace

TEST_CASE("shared math: every block type dequantizes to the fp16 of the CPU's dequantized values") {
  check_blocks_to_half<block_q4_0>(ggml_type::q4_0);
  check_blocks_to_half<block_q4_1>(ggml_type::q4_1);
  check_blocks_to_half<block_q5_0>(ggml_type::q5_0);
  check_blocks_to_half<block_q5_1>(ggml_type::q5_1);
  check_blocks_to_half<block_q8_0>(ggml_type::q8_0);
  check_blocks_to_half<block_q4_k>(ggml_type::q4_k);
  check_blocks_to_half<block_q6_k>(ggml_type::q6_k);
  check_blocks_to_half<gpu::f32_value>(ggml_type::f32);
  check_blocks_to_half<gpu::f16_value>(ggml_type::f16);
  check_blocks_to_half<gpu::bf16_value>(ggml_type::bf16);
}

TEST_CASE("shared math: a normalized row is bit-identical to the CPU backend's RMSNorm") {
  const int64_t n = 576;
  const auto x = random_values(n, 1, 3.0f), w = random_values(n, 2);
  std::vector<float> cpu_out(n), gpu_out(n);
  cpu::rms_norm_row(x.data(), w.data(), cpu_out.data(), n, 1e-5f);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += (double)(x[i] * x[i]);  // each thread's share, reduced
  const float scale = rms_scale(sum, n, 1e-5f);
  for (int64_t i = 0; i < n; ++i) gpu_out[i] = gpu::rms_norm_element(x[i], scale, w[i]);
  CHECK(gpu_out == cpu_out);
}

TEST_CASE("shared math: rotated pairs match the CPU backend's RoPE for both pair layouts") {
  model_config c;
  c.num_heads = 3;
  c.head_dim = 64;
  c.rope_dim = 48;  // fewer rotated dims than head_dim: the rest must stay untouched
  c.context_length = 300;
  c.rope_freq_base = 10000.0f;
  const auto table = make_rope_table(c);
  const int32_t half = c.rope_dim / 2;
  for (const auto kind : {rope_kind::norm, rope_kind::neox}) {
    for (int32_t pos : {0, 1, 17, 299}) {
      auto cpu_row = random_values(c.num_heads * c.head_dim, 10 + pos);
      auto gpu_row = cpu_row;
      const float* cs = &table.cos[(size_t)pos * half];
      const float* sn = &table.sin[(size_t)pos * half];
      cpu::rope_row(cpu_row.data(), c.num_heads, c.head_dim, c.rope_dim, kind, cs, sn);
      for (int32_t h = 0; h < c.num_heads; ++h) {
        for (int32_t i = 0; i < half; ++i) {
          int32_t i0, i1;
          gpu::rope_pair(kind, i, half, i0, i1);
          rope_rotate(gpu_row[h * c.head_dim + i0], gpu_row[h * c.head_dim + i1], cs[i], sn[i]);
        }
      }
      CHECK(gpu_row == cpu_row);
    }
  }
}

TEST_CASE("shared math: the uploaded RoPE table holds the angles of rope_theta") {
  model_config c;
  c.rope_dim = 64;
  c.context_length = 64;
  c.rope_freq_base = 500000.0f;
  c.rope_freq_scale = 0.5f;
  const auto table = make_rope_table(c);
  for (int32_t p = 0; p < c.context_length; p += 7) {
    for (int32_t i = 0; i < c.rope_dim / 2; ++i) {
      const float theta = rope_theta(p, i, c.rope_dim, c.rope_freq_base, c.rope_freq_scale);
      CHECK(table.cos[(size_t)p * 32 + i] == cosf(theta));
      CHECK(table.sin[(size_t)p * 32 + i] == sinf(theta));
    }
  }
}

TEST_CASE("shared math: SiLU gating is bit-identical to the CPU backend's") {
  auto gate = random_values(1000, 3, 4.0f);
  const auto up = random_values(1000, 4);
  std::vector<float> gpu_out(1000);
  for (size_t i = 0; i < gate.size(); ++i) gpu_out[i] = gpu::silu_gate(gate[i], up[i]);
  cpu::silu_mul_row(gate.data(), up.data(), (int64_t)gate.size());
  CHECK(gpu_out == gate);
}

TEST_CASE("shared math: online-softmax attention rows agree with the CPU backend's paged attention") {
  model_config c;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  const int32_t bs = 4, num_blocks = 16, layers = 2, layer = 1;
  const int32_t kvd = c.kv_dim(), qd = c.q_dim();
  cpu::kv_memory cpu_kv(layers, num_blocks, bs, kvd);
  const gpu::kv_layout layout{layers, bs, kvd};
  std::vector<uint16_t> pool((size_t)(layout.block_elements() * num_blocks));
  // Scrambled block table: positions 0..22 live in blocks 9, 2, 14, 0, 7, 11.
  const std::vector<int32_t> table = {9, 2, 14, 0, 7, 11};
  const int32_t start = 15, num_tokens = 8;  // a prefill chunk at positions 15..22
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int32_t pos = 0; pos < start + num_tokens; ++pos) {
    const int32_t block = table[pos / bs], off = pos % bs;
    for (int32_t kv = 0; kv < 2; ++kv) {
      std::vector<float> row(kvd);
      for (float& x : row) x = fp16_to_fp32(fp32_to_fp16(dist(rng)));
      if (kv == 0) {
        cpu_kv.store_key(layer, block, off, row.data());
      } else {
        for (int32_t d = 0; d < kvd; ++d) cpu_kv.value(layer, block, off)[d] = fp32_to_fp16(row[d]);
      }
      uint16_t* gpu_dst = pool.data() + layout.index(block, layer, kv, off);
      for (int32_t d = 0; d < kvd; ++d) gpu_dst[d] = fp32_to_fp16(row[d]);
    }
  }
  const auto q = random_values((size_t)num_tokens * qd, 6, 2.0f);
  std::vector<float> cpu_out((size_t)num_tokens * qd);
  cpu::thread_pool threads(1);
  const cpu::attention_sequence seq{0, num_tokens, start, table.data()};
  cpu::paged_attention(cpu_kv, layer, c, std::span(&seq, 1), q.data(), cpu_out.data(), threads);
  const float scale = 1.0f / std::sqrt((float)c.head_dim);
  float worst = 0.0f;
  for (int32_t t = 0; t < num_tokens; ++t) {
    for (int32_t h = 0; h < c.num_heads; ++h) {
      float out[64];
      gpu::attend_row(&q[(size_t)t * qd + h * c.head_dim], c.head_dim, pool.data(), layout, layer, table.data(),
                      h / (c.num_heads / c.num_kv_heads), start + t + 1, scale, out);
      for (int32_t d = 0; d < c.head_dim; ++d) {
        worst = std::max(worst, std::fabs(out[d] - cpu_out[(size_t)t * qd + h * c.head_dim + d]));
      }
    }
  }
  // The CPU rounds the normalized probabilities to fp16 (as llama.cpp); the online softmax
  // cannot, so the two differ by about fp16's precision, never more.
  CHECK(worst < 2e-3f);
}

TEST_CASE("shared math: merging two partial attention states equals pushing every key into one") {
  const int n = 8;
  const auto scores = random_values(20, 8, 3.0f);
  std::vector<uint16_t> values(20 * n);
  for (auto& v : values) v = fp32_to_fp16(random_values(1, (uint32_t)(&v - values.data()) + 100)[0]);
  online_softmax all, a, b;
  float acc_all[n] = {}, acc_a[n] = {}, acc_b[n] = {};
  for (int j = 0; j < 20; ++j) gpu::attention_push(all, scores[j], &values[j * n], acc_all, n);
  for (int j = 0; j < 20; ++j) gpu::attention_push(j % 3 == 0 ? a : b, scores[j], &values[j * n], j % 3 == 0 ? acc_a : acc_b, n);
  gpu::attention_merge(a, acc_a, b, acc_b, n);
  gpu::attention_finish(all, acc_all, n);
  gpu::attention_finish(a, acc_a, n);
  for (int d = 0; d < n; ++d) CHECK(acc_a[d] == doctest::Approx(acc_all[d]).epsilon(1e-5));
}

TEST_CASE("shared math: a KV block is one contiguous span and positions do not overlap") {
  const gpu::kv_layout layout{3, 16, 128};
  CHECK(layout.index(1, 0, 0, 0) == layout.block_elements());
  CHECK(layout.index(0, 2, 1, 15) + 128 == layout.block_elements());
  CHECK(layout.index(0, 0, 1, 0) == layout.index(0, 0, 0, 15) + 128);
  const std::vector<int32_t> table = {5, 3};
  CHECK(layout.index_at(table.data(), 1, 0, 17) == layout.index(3, 1, 0, 1));
}
