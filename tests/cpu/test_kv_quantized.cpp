// The quantized KV cache (q8_0, q4_0): how close a stored row comes back, attention over
// quantized blocks against float attention over the same numbers dequantized, block copies
// and swap-space copies, and how many blocks a byte budget buys per dtype.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "troupe/cpu/attention.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/cpu/kv_memory.hpp"
#include "troupe/cpu/kv_quant.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

constexpr kv_cache_dtype quantized_dtypes[] = {kv_cache_dtype::q8_0, kv_cache_dtype::q4_0};

std::vector<float> dequantized(kv_cache_dtype dtype, const uint8_t* row, int32_t n) {
  std::vector<float> out(n);
  cpu::dequantize_kv_row(dtype, row, n, out.data());
  return out;
}

// A key or value row of a head: mostly N(0, 1), with a few large outliers as real K rows have.
std::vector<float> random_row(std::mt19937& rng, int32_t n) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  for (int i = 0; i < n / 32; ++i) x[rng() % n] *= 8.0f;
  return x;
}

}  // namespace

TEST_CASE("kv quantization: a q8_0 row comes back within half a quantization step per block") {
  std::mt19937 rng(3);
  const int32_t n = 256;
  cpu::kv_memory kv(1, 2, 16, n, kv_cache_dtype::q8_0);
  for (int trial = 0; trial < 50; ++trial) {
    const auto x = random_row(rng, n);
    kv.store_key(0, 1, trial % 16, x.data());
    const auto y = dequantized(kv_cache_dtype::q8_0, kv.quantized_row(0, 0, 1, trial % 16), n);
    for (int32_t b = 0; b < n / 32; ++b) {
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
      // Half a step of amax / 127, plus the fp16 rounding of the scale over 127 steps.
      const float bound = amax / 127.0f * (0.5f + 127.0f / 2048.0f);
      for (int j = 0; j < 32; ++j) CHECK(std::fabs(x[32 * b + j] - y[32 * b + j]) <= bound);
    }
  }
}

TEST_CASE("kv quantization: a q4_0 row comes back within one step, its largest value exactly") {
  std::mt19937 rng(4);
  const int32_t n = 128;
  cpu::kv_memory kv(1, 1, 8, n, kv_cache_dtype::q4_0);
  double squared_error = 0.0, uniform_squared_error = 0.0;
  for (int trial = 0; trial < 50; ++trial) {
    const auto x = random_row(rng, n);
    kv.store_value(0, 0, trial % 8, x.data());
    const auto y = dequantized(kv_cache_dtype::q4_0, kv.quantized_row(0, 1, 0, trial % 8), n);
    for (int32_t b = 0; b < n / 32; ++b) {
      int extreme = 0;
      for (int j = 1; j < 32; ++j) {
        if (std::fabs(x[32 * b + j]) > std::fabs(x[32 * b + extreme])) extreme = j;
      }
      const float amax = std::fabs(x[32 * b + extreme]);
      // Levels -8..7 of step amax / 8: the largest value maps to level -8 (up to the fp16
      // scale), the other side of the range tops out one step short.
      CHECK(std::fabs(y[32 * b + extreme] - x[32 * b + extreme]) <= amax / 1024.0f);
      for (int j = 0; j < 32; ++j) {
        CHECK(std::fabs(x[32 * b + j] - y[32 * b + j]) <= amax / 8.0f * 1.01f);
        squared_error += std::pow(x[32 * b + j] - y[32 * b + j], 2);
      }
      // Rounding to a grid of step s errs by s^2 / 12 in the mean square.
      uniform_squared_error += 32.0 * std::pow(amax / 8.0, 2) / 12.0;
    }
  }
  // Rounded to the nearest level, not truncated: the mean square error is that of a
  // uniform grid (truncation would make it four times as large).
  CHECK(squared_error < 1.2 * uniform_squared_error);
}

TEST_CASE("kv quantization: quantized dtypes refuse rows that are not whole blocks of 32") {
  CHECK_THROWS_AS(cpu::kv_memory(1, 1, 16, 80, kv_cache_dtype::q8_0), error);
  CHECK_THROWS_AS(cpu::kv_memory(1, 1, 16, 48, kv_cache_dtype::q4_0), error);
  CHECK_NOTHROW(cpu::kv_memory(1, 1, 16, 80, kv_cache_dtype::f16));
}

// Float attention over what the cache holds: keys, values and the query (which the kernel
// quantizes to Q8_0) dequantized, scores and softmax in double.
TEST_CASE("paged attention over a quantized cache equals float attention over the dequantized values") {
  struct shape {
    int32_t block_size, head_dim, num_heads, num_kv_heads;
  };
  const shape shapes[] = {{16, 64, 9, 3}, {4, 64, 4, 2}, {32, 128, 4, 1}, {8, 32, 2, 2}};
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const kv_cache_dtype dtype : quantized_dtypes) {
    for (const auto& sh : shapes) {
      for (const auto kernel : {cpu::attention_kernel::best, cpu::attention_kernel::portable}) {
        CAPTURE(name_of(dtype));
        CAPTURE(sh.block_size);
        CAPTURE(sh.head_dim);
        CAPTURE(sh.num_heads);
        CAPTURE(kernel == cpu::attention_kernel::best);
        model_config c;
        c.num_layers = 2;
        c.num_heads = sh.num_heads;
        c.num_kv_heads = sh.num_kv_heads;
        c.head_dim = sh.head_dim;
        const int32_t kvd = c.kv_dim(), qd = c.q_dim(), hd = c.head_dim, layer = 1, group = c.num_heads / c.num_kv_heads;
        // (start position, tokens fed): decodes and prefill chunks, lengths on and across
        // block boundaries.
        const std::vector<std::pair<int32_t, int32_t>> fed = {{300, 1}, {129, 37}, {0, 70}, {0, 1}, {31, 2}, {15, 17}};
        int32_t total_blocks = 0;
        for (const auto& [start, n] : fed) total_blocks += (start + n + sh.block_size - 1) / sh.block_size;
        cpu::kv_memory kv(c.num_layers, total_blocks, sh.block_size, kvd, dtype);
        std::vector<int32_t> free_blocks(total_blocks);
        std::iota(free_blocks.begin(), free_blocks.end(), 0);
        std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
        std::vector<std::vector<int32_t>> tables;
        std::vector<cpu::attention_sequence> seqs;
        int32_t rows = 0;
        for (const auto& [start, n] : fed) {
          const int32_t blocks = (start + n + sh.block_size - 1) / sh.block_size;
          tables.emplace_back(free_blocks.end() - blocks, free_blocks.end());
          free_blocks.resize(free_blocks.size() - blocks);
          for (int32_t pos = 0; pos < start + n; ++pos) {
            const int32_t block = tables.back()[pos / sh.block_size], off = pos % sh.block_size;
            kv.store_key(layer, block, off, random_row(rng, kvd).data());
            kv.store_value(layer, block, off, random_row(rng, kvd).data());
          }
          seqs.push_back({rows, n, start, tables.back().data()});
          rows += n;
        }
        std::vector<float> q((size_t)rows * qd);
        for (float& x : q) x = 2.0f * normal(rng);
        std::vector<float> got((size_t)rows * qd, NAN);
        cpu::thread_pool pool(2);
        cpu::paged_attention(kv, layer, c, seqs, q.data(), got.data(), pool, kernel);

        float worst = 0.0f;
        for (const auto& s : seqs) {
          for (int32_t t = 0; t < s.num_tokens; ++t) {
            const int32_t num_keys = s.start_pos + t + 1;
            for (int32_t h = 0; h < c.num_heads; ++h) {
              const int32_t kvh = h / group;
              const float* qh = &q[(size_t)(s.first_row + t) * qd + h * hd];
              std::vector<block_q8_0> qq(hd / 32);
              cpu::quantize_q8_0(qh, hd, qq.data());
              const auto qf = dequantized(kv_cache_dtype::q8_0, reinterpret_cast<const uint8_t*>(qq.data()), hd);
              std::vector<double> scores(num_keys);
              std::vector<std::vector<float>> values(num_keys);
              for (int32_t j = 0; j < num_keys; ++j) {
                const int32_t block = s.block_table[j / sh.block_size], off = j % sh.block_size;
                const auto k = dequantized(dtype, kv.quantized_row(layer, 0, block, off), kvd);
                values[j] = dequantized(dtype, kv.quantized_row(layer, 1, block, off), kvd);
                double dot = 0.0;
                for (int32_t d = 0; d < hd; ++d) dot += (double)qf[d] * k[kvh * hd + d];
                scores[j] = dot / std::sqrt((double)hd);
              }
              const double m = *std::max_element(scores.begin(), scores.end());
              double sum = 0.0;
              for (double& x : scores) sum += (x = std::exp(x - m));
              for (int32_t d = 0; d < hd; ++d) {
                double want = 0.0;
                for (int32_t j = 0; j < num_keys; ++j) want += scores[j] / sum * values[j][kvh * hd + d];
                const float g = got[(size_t)(s.first_row + t) * qd + h * hd + d];
                REQUIRE(std::isfinite(g));
                worst = std::max(worst, (float)std::fabs(g - want));
              }
            }
          }
        }
        // The same numbers in float, summed in another order.
        CHECK(worst < 1e-4f);
      }
    }
  }
}

TEST_CASE("kv memory: copy_block and copy_block_to copy every layer's K and V in every dtype") {
  std::mt19937 rng(5);
  for (const kv_cache_dtype dtype : {kv_cache_dtype::f16, kv_cache_dtype::q8_0, kv_cache_dtype::q4_0}) {
    CAPTURE(name_of(dtype));
    const int32_t layers = 3, blocks = 4, bs = 8, kvd = 64;
    cpu::kv_memory kv(layers, blocks, bs, kvd, dtype), swap(layers, 2, bs, kvd, dtype);
    for (int32_t l = 0; l < layers; ++l) {
      for (int32_t b = 0; b < blocks; ++b) {
        for (int32_t o = 0; o < bs; ++o) {
          kv.store_key(l, b, o, random_row(rng, kvd).data());
          kv.store_value(l, b, o, random_row(rng, kvd).data());
        }
      }
    }
    // Every position's K and V as floats, read the way attention reads each dtype.
    auto read = [&](const cpu::kv_memory& m, int32_t l, int32_t b) {
      std::vector<float> out;
      for (int32_t o = 0; o < bs; ++o) {
        for (int32_t kv_index = 0; kv_index < 2; ++kv_index) {
          if (dtype == kv_cache_dtype::f16) {
            for (int32_t c = 0; c < kvd; ++c) {
              out.push_back(fp16_to_fp32(kv_index == 0 ? m.key_at(l, b, o, c) : m.value(l, b, o)[c]));
            }
          } else {
            const auto row = dequantized(dtype, m.quantized_row(l, kv_index, b, o), kvd);
            out.insert(out.end(), row.begin(), row.end());
          }
        }
      }
      return out;
    };
    kv.copy_block(1, 3);
    kv.copy_block_to(swap, 2, 0);
    swap.copy_block_to(kv, 0, 0);
    for (int32_t l = 0; l < layers; ++l) {
      CAPTURE(l);
      CHECK(read(kv, l, 3) == read(kv, l, 1));
      CHECK(read(swap, l, 0) == read(kv, l, 2));
      CHECK(read(kv, l, 0) == read(kv, l, 2));
      CHECK(read(kv, l, 1) != read(kv, l, 2));
    }
  }
}

TEST_CASE("kv pool sizing: one byte budget holds 1.88x the blocks in q8_0 and 3.56x in q4_0") {
  // SmolLM2-135M's geometry: 30 layers, 3 kv heads of 64.
  model_config c;
  c.num_layers = 30;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  c.context_length = 8192;
  cpu::cpu_backend_options o;
  o.block_size = 16;
  o.kv_cache_bytes = 256LL << 20;
  auto blocks = [&](kv_cache_dtype dtype) {
    o.kv_dtype = dtype;
    return cpu::kv_pool_num_blocks(c, o);
  };
  // Bytes per token, K and V of every layer: 2 * 30 * 192 values at 2, 34/32 and 18/32 bytes.
  CHECK(kv_block_bytes(kv_cache_dtype::f16, 30, 16, 192) == 16 * 23040);
  CHECK(kv_block_bytes(kv_cache_dtype::q8_0, 30, 16, 192) == 16 * 12240);
  CHECK(kv_block_bytes(kv_cache_dtype::q4_0, 30, 16, 192) == 16 * 6480);
  CHECK(blocks(kv_cache_dtype::f16) == (256 << 20) / (16 * 23040));
  CHECK(blocks(kv_cache_dtype::q8_0) == (256 << 20) / (16 * 12240));
  CHECK(blocks(kv_cache_dtype::q4_0) == (256 << 20) / (16 * 6480));
  CHECK(double(blocks(kv_cache_dtype::q8_0)) / blocks(kv_cache_dtype::f16) == doctest::Approx(64.0 / 34).epsilon(0.01));
  CHECK(double(blocks(kv_cache_dtype::q4_0)) / blocks(kv_cache_dtype::f16) == doctest::Approx(64.0 / 18).epsilon(0.01));
  // The pool's own accounting agrees with the sizing.
  CHECK(cpu::kv_memory(30, 2, 16, 192, kv_cache_dtype::q4_0).bytes_per_block() ==
        kv_block_bytes(kv_cache_dtype::q4_0, 30, 16, 192));
  // An explicit block count wins over the budget; a budget under one block is refused.
  o.num_blocks = 7;
  CHECK(blocks(kv_cache_dtype::q8_0) == 7);
  o.num_blocks = 0;
  o.kv_cache_bytes = 1000;
  CHECK_THROWS_AS(blocks(kv_cache_dtype::q4_0), error);
}

TEST_CASE("kv rotation: the Hadamard run is orthonormal, its own inverse, and keeps q.k while spreading an outlier") {
  CHECK(cpu::kv_key_rotation_size(64) == 64);
  CHECK(cpu::kv_key_rotation_size(128) == 128);
  CHECK(cpu::kv_key_rotation_size(192) == 64);  // the largest power of two >= 64 dividing it
  CHECK(cpu::kv_key_rotation_size(96) == 0);    // not a multiple of 64: no rotation
  CHECK(cpu::kv_value_rotation_size(128) == 64);
  CHECK(cpu::kv_value_rotation_size(80) == 0);

  // Sylvester's H_4 / 2 on a unit vector: its first column.
  std::vector<float> e = {1, 0, 0, 0};
  cpu::rotate_hadamard(e.data(), 4, 4);
  CHECK(e == std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f});
  std::vector<float> e2 = {0, 1, 0, 0};
  cpu::rotate_hadamard(e2.data(), 4, 4);
  CHECK(e2 == std::vector<float>{0.5f, -0.5f, 0.5f, -0.5f});

  std::mt19937 rng(7);
  for (int32_t size : {64, 128}) {
    CAPTURE(size);
    const int32_t n = 2 * 128;  // two heads of 128, rotated run by run
    const auto q = random_row(rng, n);
    const auto k = random_row(rng, n);
    auto qr = q, kr = k;
    cpu::rotate_hadamard(qr.data(), n, size);
    cpu::rotate_hadamard(kr.data(), n, size);
    double dot = 0, dot_r = 0, norm = 0, norm_r = 0;
    for (int32_t i = 0; i < n; ++i) {
      dot += double(q[i]) * k[i];
      dot_r += double(qr[i]) * kr[i];
      norm += double(q[i]) * q[i];
      norm_r += double(qr[i]) * qr[i];
    }
    CHECK(dot_r == doctest::Approx(dot).epsilon(1e-5));
    CHECK(norm_r == doctest::Approx(norm).epsilon(1e-5));
    auto back = qr;
    cpu::rotate_hadamard(back.data(), n, size);
    for (int32_t i = 0; i < n; ++i) CHECK(back[i] == doctest::Approx(q[i]).epsilon(1e-5));
  }

  // One outlier in a block sets its q8_0 scale; rotated, the same energy is spread over the run.
  std::vector<float> spike(64, 0.01f);
  spike[5] = 50.0f;
  cpu::rotate_hadamard(spike.data(), 64, 64);
  float largest = 0;
  for (float v : spike) largest = std::max(largest, std::fabs(v));
  CHECK(largest < 50.0f / 7.0f);  // 50 / sqrt(64) plus the small values' share
}
