// step_cost: the cost arithmetic chunked prefill budgets by, and the fit of attention_cost
// from step timings.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "troupe/engine/step_cost.hpp"

using namespace troupe;

TEST_CASE("step cost: pairs attended, and the most tokens a cost buys from a position") {
  CHECK(attended_pairs(0, 1) == 1);
  CHECK(attended_pairs(0, 4) == 1 + 2 + 3 + 4);
  CHECK(attended_pairs(100, 2) == 101 + 102);
  CHECK(step_cost(100, 2, 0) == 2.0);  // 0: tokens alone
  CHECK(step_cost(100, 2, 203) == doctest::Approx(3.0));
  for (const double r : {0.0, 1.0, 37.5, 440.0, 4096.0}) {
    for (const int64_t start : {0, 1, 15, 2048, 6000}) {
      for (const double cost : {0.5, 1.0, 17.0, 2048.0, 6814.0, 1e6}) {
        CAPTURE(r);
        CAPTURE(start);
        CAPTURE(cost);
        const int32_t n = max_tokens_within(start, cost, r);
        CHECK(n >= 0);
        if (n > 0) CHECK(step_cost(start, n, r) <= cost);
        CHECK(step_cost(start, n + 1, r) > cost);
      }
    }
  }
}

TEST_CASE("step cost: a chunk deep in a prompt gets fewer tokens than the first for the same cost") {
  const double r = 440;
  const double first_chunk = step_cost(0, 2048, r);
  CHECK(max_tokens_within(0, first_chunk, r) == 2048);
  const int32_t deep = max_tokens_within(4096, first_chunk, r);
  CHECK(deep < 2048);
  CHECK(deep > 256);
}

TEST_CASE("step cost: the prior from the model's shape") {
  model_config c;
  c.num_layers = 30;
  c.embedding_dim = 576;
  c.ffn_dim = 1536;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  c.vocab_size = 49152;
  // (30 · 3.54M + 576 · 49152) matmul multiply-adds per token over 2 · 30 · 576 per pair.
  const double full = attention_cost_from_shape(c, 1.0);
  CHECK(full == doctest::Approx((30.0 * (576 * 576 * 2 + 576 * 192 * 2 + 3.0 * 576 * 1536) + 576.0 * 49152) /
                                (2.0 * 30 * 576)));
  CHECK(attention_cost_from_shape(c, 0.25) == doctest::Approx(full * 0.25));
  CHECK(attention_cost_from_shape(model_config{}, 1.0) == 0.0);
}

TEST_CASE("step cost model: learns attention_cost from timed steps, and keeps the prior until it can") {
  step_cost_model m(1000.0);
  CHECK(m.attention_cost() == 1000.0);
  CHECK_FALSE(m.is_fitted());
  // Decodes at one context length: pairs move with tokens, nothing to tell them apart.
  for (int i = 0; i < 50; ++i) m.observe(8, 8 * 300, 1e-3 + 8 * 1e-4 + 8 * 300 * 1e-6);
  CHECK_FALSE(m.is_fitted());
  CHECK(m.attention_cost() == 1000.0);
  // The machine: 1e-4 s per token, 2.5e-7 s per pair, so 400 pairs cost one token; steps of
  // every shape, timed with 2% noise.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> tokens(1, 2048), start(0, 6000);
  std::normal_distribution<double> noise(1.0, 0.02);
  for (int i = 0; i < 400; ++i) {
    const int64_t n = tokens(rng), s = start(rng);
    const int64_t pairs = attended_pairs(s, n);
    m.observe(n, pairs, (2e-3 + n * 1e-4 + pairs * 2.5e-7) * noise(rng));
  }
  CHECK(m.is_fitted());
  CHECK(m.attention_cost() == doctest::Approx(400.0).epsilon(0.1));
  // One odd step moves it a quarter of the way at most.
  const double settled = m.attention_cost();
  m.observe(2048, attended_pairs(4000, 2048), 100.0);
  CHECK(m.attention_cost() >= settled * std::pow(0.25, 0.25) * 0.99);
  // Nonsense timings are ignored.
  const double before = m.attention_cost();
  m.observe(10, 100, -1.0);
  m.observe(0, 0, 1.0);
  m.observe(10, 100, std::numeric_limits<double>::quiet_NaN());
  CHECK(m.attention_cost() == before);
}

TEST_CASE("step cost model: a fit far from the prior is held within four times of it") {
  step_cost_model m(1000.0);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> tokens(1, 512), start(0, 4000);
  for (int i = 0; i < 200; ++i) {
    const int64_t n = tokens(rng), s = start(rng);
    m.observe(n, attended_pairs(s, n), n * 1e-4 + attended_pairs(s, n) * 1e-9);  // 100,000 pairs per token
  }
  CHECK(m.is_fitted());
  CHECK(m.attention_cost() == doctest::Approx(4000.0));
}
