// Parallel sampling in the scheduler (n > 1, best_of): a group's prompt is prefilled once up
// to its last token, then forked copy-on-write; each member feeds the last token and samples
// with its own seed. Checked on the real block manager with simulated_worker, whose tokens
// hash everything read back through the block tables (a wrong copy-on-write shows at once).
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "engine/simulated_worker.hpp"
#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/scheduler_policy.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using troupe::test::run_alone;
using troupe::test::simulated_worker;

namespace {

constexpr int32_t eog_token = 2;

scheduler_config group_config(int32_t max_num_seqs = 16, int32_t max_num_batched_tokens = 256) {
  scheduler_config c;
  c.max_num_seqs = max_num_seqs;
  c.max_num_batched_tokens = max_num_batched_tokens;
  c.max_model_len = 2048;
  c.ageing_ms = 0;
  return c;
}

sequence_request prompt_request(uint64_t id, int32_t num_prompt_tokens, int32_t max_tokens, uint64_t seed = 7) {
  sequence_request r;
  r.id = id;
  for (int32_t i = 0; i < num_prompt_tokens; ++i) r.prompt_tokens.push_back(100 + (i * 13) % 700);
  r.params.max_tokens = max_tokens;
  r.params.seed = seed;
  return r;
}

// A group of `size` sequences: the parent `id` and members id+1 .. id+size-1.
sequence_request group_request(uint64_t id, int32_t size, int32_t num_prompt_tokens, int32_t max_tokens) {
  auto r = prompt_request(id, num_prompt_tokens, max_tokens);
  for (int32_t i = 1; i < size; ++i) r.fork_ids.push_back(id + static_cast<uint64_t>(i));
  return r;
}

// What member i of the group would draw running alone: its own seed, same prompt.
std::vector<int32_t> expected_member(const sequence_request& group, int32_t i, int32_t max_sequence_tokens) {
  sequence_request alone = group;
  alone.fork_ids.clear();
  alone.params.seed = fork_seed(group.params.seed, static_cast<uint64_t>(i));
  return run_alone(alone, max_sequence_tokens);
}

struct driver {
  block_manager kv;
  scheduler_policy sched;
  simulated_worker worker;
  std::map<uint64_t, std::vector<int32_t>> outputs;
  std::set<uint64_t> finished;
  driver(scheduler_config c, int32_t num_blocks, int32_t block_size, bool prefix_caching = true)
      : kv({.num_blocks = num_blocks, .block_size = block_size, .num_swap_blocks = 0,
            .enable_prefix_caching = prefix_caching}),
        sched(c, kv, {eog_token}),
        worker(num_blocks, block_size, 0) {}
  scheduled_step step() {
    auto s = sched.schedule(0);
    REQUIRE_FALSE(s.is_empty());
    for (const auto& e : sched.on_step_done(worker.run(s))) {
      outputs[e.seq_id].push_back(e.token);
      if (e.state == sequence_state::finished) finished.insert(e.seq_id);
    }
    kv.check_invariants();
    return s;
  }
  void drain() {
    for (int i = 0; sched.has_unfinished(); ++i) {
      REQUIRE(i < 10000);
      step();
    }
  }
};

}  // namespace

TEST_CASE("parallel sampling: the member seeds keep choice 0's and differ from each other and from neighbours") {
  CHECK(fork_seed(42, 0) == 42);
  std::set<uint64_t> seen;
  for (uint64_t seed : {0ull, 1ull, 2ull, 42ull}) {
    for (uint64_t i = 1; i <= 8; ++i) seen.insert(fork_seed(seed, i));
  }
  CHECK(seen.size() == 32);
}

TEST_CASE("parallel sampling: n = 8 on a 512-token prompt holds the prompt's blocks once") {
  constexpr int32_t block_size = 16;
  driver d(group_config(), 400, block_size);
  const auto group = group_request(1, 8, 512, 6);
  d.sched.add(group, 0);
  // The prefill: 511 tokens in two chunks of the 256-token budget, no sample.
  auto s = d.step();
  CHECK(s.plan.full.size() == 1);
  CHECK(d.outputs.empty());
  s = d.step();
  CHECK(d.outputs.empty());
  CHECK(d.kv.block_table(1).size() == 32);  // 511 positions: 31 full blocks and one of 15
  // The fork: eight one-token steps, one sample each.
  s = d.step();
  CHECK(s.plan.full.size() == 8);
  CHECK(d.outputs.size() == 8);
  const auto st = d.kv.stats();
  // 31 full blocks shared by all eight, and each member's own copy of the last block (the
  // first seven to write it copied it; the eighth wrote the original): 39, not 8 x 32.
  CHECK(st.num_used_blocks == 31 + 8);
  CHECK(s.ops.copies.size() == 7);
  CHECK(d.kv.ref_count(d.kv.block_table(1).front()) == 8);
  for (uint64_t id = 2; id <= 8; ++id) {
    CHECK(d.kv.block_table(id).front() == d.kv.block_table(1).front());
    CHECK(d.kv.block_table(id).back() != d.kv.block_table(1).back());
  }
  d.drain();
  for (int32_t i = 0; i < 8; ++i) {
    CAPTURE(i);
    CHECK(d.outputs.at(1 + static_cast<uint64_t>(i)) == expected_member(group, i, d.sched.max_sequence_tokens()));
  }
  CHECK(d.kv.stats().num_used_blocks == 0);
}

TEST_CASE("parallel sampling: prompts of one token and prompts all cached but their last token fork at admission") {
  for (const int32_t num_prompt_tokens : {1, 2, 9}) {
    CAPTURE(num_prompt_tokens);
    driver d(group_config(), 64, 4);
    if (num_prompt_tokens == 9) {
      // 8 of 9 tokens (two whole blocks) in the prefix cache from an earlier request.
      d.sched.add(prompt_request(100, 9, 1), 0);
      d.drain();
    }
    const auto group = group_request(1, 3, num_prompt_tokens, 5);
    d.sched.add(group, 0);
    const auto first = d.step();
    if (num_prompt_tokens != 2) {
      CHECK(first.plan.full.size() == 3);  // nothing to prefill: the members' first tokens at once
      CHECK(d.sched.find(1)->num_cached_prefix_tokens == num_prompt_tokens - 1);
    }
    d.drain();
    for (int32_t i = 0; i < 3; ++i) {
      CHECK(d.outputs.at(1 + static_cast<uint64_t>(i)) == expected_member(group, i, d.sched.max_sequence_tokens()));
    }
    CHECK(d.kv.stats().num_used_blocks == 0);
  }
}

TEST_CASE("parallel sampling: a member cancelled before the fork is never started, the others run") {
  driver d(group_config(8, 8), 64, 4);  // an 8-token budget: the 30-token prompt takes four steps
  const auto group = group_request(1, 4, 30, 5);
  d.sched.add(group, 0);
  d.step();
  CHECK(d.sched.abort(3));
  CHECK_FALSE(d.sched.abort(3));
  CHECK(d.sched.find(3) == nullptr);
  d.drain();
  CHECK(d.outputs.count(3) == 0);
  for (const int32_t i : {0, 1, 3}) {
    CHECK(d.outputs.at(1 + static_cast<uint64_t>(i)) == expected_member(group, i, d.sched.max_sequence_tokens()));
  }
  // With every member cancelled the parent samples its last prompt token itself.
  driver solo(group_config(8, 8), 64, 4);
  const auto lone_group = group_request(10, 2, 30, 5);
  solo.sched.add(lone_group, 0);
  solo.step();
  CHECK(solo.sched.abort(11));
  solo.drain();
  CHECK(solo.outputs.at(10) == expected_member(lone_group, 0, solo.sched.max_sequence_tokens()));
  CHECK(solo.kv.stats().num_used_blocks == 0);
}

TEST_CASE("parallel sampling: the whole group's slots count for admission; groups and ids are checked") {
  driver d(group_config(4, 256), 64, 4);
  d.sched.add(prompt_request(1, 5, 50), 0);
  d.step();
  d.sched.add(group_request(10, 4, 6, 3), 0);  // needs 4 slots with one taken: waits
  auto s = d.step();
  CHECK(d.sched.find(10)->state() == sequence_state::waiting);
  CHECK(d.sched.stats().num_running == 1);
  CHECK_THROWS_AS(d.sched.add(group_request(20, 5, 6, 3), 0), error);  // larger than max_num_seqs
  auto clash = group_request(30, 2, 6, 3);
  clash.fork_ids = {11};  // a member of the waiting group
  CHECK_THROWS_AS(d.sched.add(clash, 0), error);
  clash.fork_ids = {31, 31};
  CHECK_THROWS_AS(d.sched.add(clash, 0), error);
  CHECK(d.sched.abort(1));
  d.drain();
  for (uint64_t id = 10; id < 14; ++id) CHECK(d.outputs.at(id).size() == 3);
}
