// step_deadline: the watchdog's deadline per step. It must never give up on a step that is
// merely slow (a long prefill chunk on a slow or busy CPU), and must still be a deadline.
#include <doctest/doctest.h>

#include "troupe/engine/scheduler_config.hpp"
#include "troupe/engine/step_cost.hpp"
#include "troupe/engine/step_deadline.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

// SmolLM2-135M's shape, the default model.
model_config smollm2_135m() {
  model_config c;
  c.num_layers = 30;
  c.embedding_dim = 576;
  c.ffn_dim = 1536;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  c.rope_dim = 64;
  c.vocab_size = 49152;
  c.context_length = 8192;
  return c;
}

// The CPU backend's measured speed on the 2-core machine, SmolLM2-135M (cpu_backend.hpp):
// 0.76 ms per fed token and 0.43 us per attended pair, times `slowdown`.
double measured_seconds(int64_t start, int64_t n, double slowdown) {
  return slowdown * (static_cast<double>(n) * 0.76e-3 + static_cast<double>(attended_pairs(start, n)) * 0.43e-6);
}

step_deadline default_deadline(const model_config& m) {
  return step_deadline({scheduler_config{}.step_timeout_ms, 4.0, prior_seconds_per_cost(m)});
}

}  // namespace

TEST_CASE("step_deadline: 0 turns the watchdog off, whatever the step") {
  step_deadline d({0, 4.0, 1.0});
  CHECK_FALSE(d.is_enabled());
  CHECK(d.deadline_ms(1) == 0);
  CHECK(d.deadline_ms(1e9) == 0);
  d.observe(10, 100.0);
  CHECK(d.deadline_ms(1e6) == 0);
}

TEST_CASE("step_deadline: the default is 120 s, and a decode step gets exactly that") {
  CHECK(scheduler_config{}.step_timeout_ms == 120000);
  auto d = default_deadline(smollm2_135m());
  CHECK(d.deadline_ms(1) == 120000);  // before any step is timed
  d.observe(8, 0.03);
  CHECK(d.deadline_ms(8) == 120000);
}

TEST_CASE("step_deadline: the slowest legitimate CPU prefill chunk stays well inside the default deadline") {
  const auto m = smollm2_135m();
  const double ac = attention_cost_from_shape(m, 0.45);
  auto cost = [&](int64_t start, int64_t n) { return step_cost(start, n, ac); };
  // The worst chunk seen on the 2-core machine: 2,048 prompt tokens at depth 4,096 with
  // tokens-only chunks, 39.1 s while other builds ran (docs/reliability.md).
  const double worst_seen_ms = 39100;
  SUBCASE("before any step is timed (the prior), even a first chunk deep in a prompt") {
    const auto d = default_deadline(m);
    CHECK(d.deadline_ms(cost(4096, 2048)) > 2 * worst_seen_ms);
    CHECK(d.deadline_ms(cost(30000, 2048)) > 2 * 1000 * measured_seconds(30000, 2048, 10.0));
  }
  for (double slowdown : {1.0, 3.0, 20.0}) {
    CAPTURE(slowdown);
    // A warm engine on a machine `slowdown` times slower than the measured one (a busy
    // machine, a bigger model, fewer cores): it has timed some decodes and a first chunk.
    auto d = default_deadline(m);
    for (int i = 0; i < 20; ++i) d.observe(cost(300, 8), measured_seconds(300, 8, slowdown) + slowdown * 0.004);
    d.observe(cost(0, 2048), measured_seconds(0, 2048, slowdown));
    for (int64_t depth : {4096, 8192, 30000}) {
      CAPTURE(depth);
      const double chunk_ms = 1000 * measured_seconds(depth, 2048, slowdown);
      CHECK(d.deadline_ms(cost(depth, 2048)) > 2 * chunk_ms);
      CHECK(d.deadline_ms(cost(depth, 2048)) > 2 * worst_seen_ms);
    }
  }
}

TEST_CASE("step_deadline: the first timed step replaces the prior; a one-off slow step fades") {
  auto d = default_deadline(smollm2_135m());
  const int64_t cold = d.deadline_ms(20000);
  d.observe(100, 0.05);  // 0.5 ms a unit
  CHECK(d.deadline_ms(20000) < cold);
  CHECK(d.deadline_ms(20000) == 120000);  // 4 x 10 s is under the floor
  d.observe(100, 5.0);   // one step 100 times slower: a page-in, a busy neighbour
  CHECK(d.deadline_ms(20000) == 4000000);
  for (int i = 0; i < 2000; ++i) d.observe(100, 0.05);
  CHECK(d.deadline_ms(20000) == 120000);
}

TEST_CASE("step_deadline: a negative floor or a slack under 1 is refused") {
  CHECK_THROWS_AS(step_deadline({-1, 4.0, 0}), error);
  CHECK_THROWS_AS(step_deadline({1000, 0.5, 0}), error);
}
