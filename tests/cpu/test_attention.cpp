// paged_attention: the vector kernels (AVX-512, AVX2) against the plain one, over block sizes shorter and
// longer than its 16-key tiles, head sizes, grouped-query ratios, scrambled block tables,
// prefill chunks deep in a sequence and decodes, several sequences in one call.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "troupe/cpu/attention.hpp"
#include "troupe/cpu/kv_memory.hpp"
#include "troupe/model/quant.hpp"

using namespace troupe;

TEST_CASE("paged attention: the vector kernel agrees with the plain one") {
  struct shape {
    int32_t block_size, head_dim, num_heads, num_kv_heads;
  };
  const shape shapes[] = {{16, 64, 9, 3}, {4, 64, 4, 2}, {32, 128, 4, 1}, {8, 64, 2, 2}, {16, 80, 5, 5}};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& sh : shapes) {
    CAPTURE(sh.block_size);
    CAPTURE(sh.head_dim);
    CAPTURE(sh.num_heads);
    model_config c;
    c.num_layers = 2;
    c.num_heads = sh.num_heads;
    c.num_kv_heads = sh.num_kv_heads;
    c.head_dim = sh.head_dim;
    const int32_t kvd = c.kv_dim(), qd = c.q_dim(), layer = 1;
    // Sequences as (start position, tokens fed): a decode deep in, a chunk deep in, a
    // prompt from the start, a decode at position 0, one unaligned to every tile.
    const std::vector<std::pair<int32_t, int32_t>> fed = {{300, 1}, {129, 37}, {0, 70}, {0, 1}, {17, 5}};
    int32_t total_blocks = 0;
    for (const auto& [start, n] : fed) total_blocks += (start + n + sh.block_size - 1) / sh.block_size;
    cpu::kv_memory kv(c.num_layers, total_blocks, sh.block_size, kvd);
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
        std::vector<float> k(kvd);
        for (float& x : k) x = normal(rng);
        kv.store_key(layer, block, off, k.data());
        for (int32_t d = 0; d < kvd; ++d) kv.value(layer, block, off)[d] = fp32_to_fp16(normal(rng));
      }
      rows += n;
    }
    rows = 0;
    for (size_t i = 0; i < fed.size(); ++i) {
      seqs.push_back({rows, fed[i].second, fed[i].first, tables[i].data()});
      rows += fed[i].second;
    }
    std::vector<float> q((size_t)rows * qd);
    for (float& x : q) x = 2.0f * normal(rng);
    std::vector<float> plain((size_t)rows * qd, NAN);
    cpu::thread_pool pool(2);
    cpu::paged_attention(kv, layer, c, seqs, q.data(), plain.data(), pool, cpu::attention_kernel::portable);
    // The fastest kernel this CPU has (AVX-512 or AVX2), and the AVX2 one where that is not it.
    for (const auto kernel : {cpu::attention_kernel::best, cpu::attention_kernel::avx2}) {
      CAPTURE(static_cast<int>(kernel));
      std::vector<float> fast((size_t)rows * qd, NAN);
      cpu::paged_attention(kv, layer, c, seqs, q.data(), fast.data(), pool, kernel);
      float worst = 0.0f;
      for (size_t i = 0; i < fast.size(); ++i) {
        REQUIRE(std::isfinite(fast[i]));
        worst = std::max(worst, std::abs(fast[i] - plain[i]));
      }
      // Sums in another order; a probability on an fp16 rounding edge may round the other way.
      CHECK(worst < 2e-3f);
    }
  }
}
