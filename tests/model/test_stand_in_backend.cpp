// The benchmarks' stand-in backend: its made-up tokens stay in the vocabulary, never end a
// sequence, depend only on the fed token and the sample index, and a step answers every
// sequence of its plan in order.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "troupe/model/error.hpp"
#include "troupe/model/stand_in_backend.hpp"

using namespace troupe;

namespace {

model_config small_config(int32_t vocab) {
  model_config c;
  c.architecture = "llama";
  c.vocab_size = vocab;
  c.context_length = 256;
  return c;
}

}  // namespace

TEST_CASE("stand-in backend: tokens stay in the vocabulary and avoid the end tokens") {
  const std::vector<int32_t> eog{0, 2, 150, 151};
  stand_in_backend b(small_config(300), 64, 16, std::chrono::microseconds(0), eog);
  std::set<int32_t> seen;
  for (int32_t last = 0; last < 300; ++last) {
    for (uint64_t i = 0; i < 20; ++i) {
      const int32_t t = b.token_after(last, i);
      CHECK(t >= 100);
      CHECK(t < 300);
      CHECK(std::find(eog.begin(), eog.end(), t) == eog.end());
      CHECK(t == b.token_after(last, i));
      seen.insert(t);
    }
  }
  CHECK(seen.size() > 150);  // spread over the range, not one token
  // A tiny vocabulary starts at half of it.
  stand_in_backend tiny(small_config(10), 4, 16, std::chrono::microseconds(0), {0});
  for (int32_t last = 0; last < 10; ++last) CHECK(tiny.token_after(last, 3) >= 5);
}

TEST_CASE("stand-in backend: a step answers each sequence in plan order, samples only where asked") {
  stand_in_backend b(small_config(1000), 64, 16, std::chrono::microseconds(0), {2});
  CHECK(b.kv_shape().num_blocks == 64);
  CHECK(b.kv_shape().block_size == 16);
  batch_plan plan;
  sequence_step a;
  a.seq_id = 7;
  a.tokens = {5, 6, 7};
  a.sample_index = 4;
  sequence_step chunk;
  chunk.seq_id = 9;
  chunk.tokens = {1, 2};
  chunk.wants_sample = false;
  plan.sequences = {a, chunk};
  const auto r = b.step(plan);
  REQUIRE(r.outputs.size() == 2);
  CHECK(r.outputs[0].seq_id == 7);
  CHECK(r.outputs[0].token == b.token_after(7, 4));
  CHECK(r.outputs[1].seq_id == 9);
  CHECK(r.outputs[1].token == -1);
  // Proposals are verified against the stand-in's rule: accepted while each is the token
  // the rule answers after the one before it (with the sample index advancing), then the
  // sample after the last accepted one; draft-model slots are refused.
  const int32_t t1 = b.token_after(7, 4), t2 = b.token_after(t1, 5), t3 = b.token_after(t2, 6);
  sequence_step spec = a;
  spec.tokens = {5, 6, 7, t1, t2, t1 == 1 ? 2 : 1};
  spec.num_draft_tokens = 3;
  plan.sequences = {spec};
  CHECK(b.supports_speculation());
  const auto verified = b.step(plan);
  REQUIRE(verified.outputs.size() == 1);
  REQUIRE(verified.outputs[0].accepted.size() == 2);
  CHECK(verified.outputs[0].accepted[0].token == t1);
  CHECK(verified.outputs[0].accepted[1].token == t2);
  CHECK(verified.outputs[0].token == t3);
  spec.tokens = {5, 6, 7, t1 == 1 ? 2 : 1};
  spec.num_draft_tokens = 1;
  plan.sequences = {spec};
  CHECK(b.step(plan).outputs[0].accepted.empty());
  CHECK(b.step(plan).outputs[0].token == t1);
  spec.tokens = {5, 6, 7, draft_slot};
  plan.sequences = {spec};
  CHECK_THROWS_AS(b.step(plan), error);
}

TEST_CASE("stand-in backend: refuses a vocabulary of only end tokens and an empty pool") {
  CHECK_THROWS_AS(stand_in_backend(small_config(2), 4, 16, std::chrono::microseconds(0), {0, 1}), error);
  CHECK_THROWS_AS(stand_in_backend(small_config(100), 0, 16, std::chrono::microseconds(0), {}), error);
}
