// scheduler_policy: admission order, budgets, chunked prefill, preemption and resumption,
// aborts, stop rules and the one-step-in-flight rule, driven against fake_kv_space (and the
// real block_manager) with simulated_worker standing in for the model.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "troupe/engine/block_manager.hpp"
#include "engine/fake_kv_space.hpp"
#include "engine/simulated_worker.hpp"
#include "troupe/engine/scheduler_policy.hpp"
#include "troupe/engine/step_cost.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using troupe::test::fake_kv_space;
using troupe::test::run_alone;
using troupe::test::simulated_worker;

namespace {

constexpr int32_t eog_token = 2;

scheduler_config config(int32_t max_num_seqs, int32_t max_num_batched_tokens, int32_t max_model_len = 256) {
  scheduler_config c;
  c.max_num_seqs = max_num_seqs;
  c.max_num_batched_tokens = max_num_batched_tokens;
  c.max_model_len = max_model_len;
  c.ageing_ms = 0;
  return c;
}

sequence_request request(uint64_t id, int32_t num_prompt_tokens, int32_t priority = 0, int32_t max_tokens = 16) {
  sequence_request r;
  r.id = id;
  for (int32_t i = 0; i < num_prompt_tokens; ++i) r.prompt_tokens.push_back(100 + static_cast<int32_t>((id * 31 + i * 7) % 500));
  r.params.max_tokens = max_tokens;
  r.params.seed = id;
  r.priority = priority;
  return r;
}

// Every sampled token and how each sequence ended, over one run.
struct run_log {
  std::map<uint64_t, std::vector<int32_t>> outputs;
  std::map<uint64_t, finish_reason> finished;
  void record(const std::vector<sequence_event>& events) {
    for (const auto& e : events) {
      outputs[e.seq_id].push_back(e.token);
      if (e.state == sequence_state::finished) finished[e.seq_id] = e.reason;
    }
  }
};

// A scheduled step as it ran: the plan is what the worker made of the delta.
struct ran_step {
  batch_plan plan;
  kv_operations ops;
  std::vector<uint64_t> preempted;
  std::vector<uint64_t> started;
  std::vector<uint64_t> resumed;
  int32_t num_scheduled_tokens = 0;
  bool was_empty = true;
  bool is_empty() const { return was_empty; }
};

struct fixture {
  fake_kv_space kv;
  scheduler_policy sched;
  simulated_worker worker;
  run_log log;
  fixture(scheduler_config c, int32_t num_blocks, int32_t block_size = 4, int32_t num_host_blocks = 0)
      : kv(num_blocks, block_size, num_host_blocks), sched(c, kv, {eog_token}),
        worker(num_blocks, block_size, num_host_blocks) {}

  ran_step step(int64_t now_ms = 0) {
    const auto s = sched.schedule(now_ms);
    ran_step r{{}, s.ops, s.preempted, s.started, s.resumed, s.num_scheduled_tokens, s.is_empty()};
    if (!s.is_empty()) {
      const auto result = worker.run(s);
      r.plan = worker.last_plan();
      log.record(sched.on_step_done(result));
    }
    return r;
  }
  void run_to_end(int64_t now_ms = 0) {
    for (int i = 0; sched.has_unfinished(); ++i) {
      REQUIRE(i < 100000);
      REQUIRE_FALSE(step(now_ms).is_empty());
    }
  }
};

std::vector<uint64_t> ids_in(const batch_plan& plan) {
  std::vector<uint64_t> ids;
  for (const auto& s : plan.sequences) ids.push_back(s.seq_id);
  return ids;
}

bool contains(const std::vector<uint64_t>& ids, uint64_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

const sequence_step* step_of(const batch_plan& plan, uint64_t id) {
  for (const auto& s : plan.sequences) if (s.seq_id == id) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE("waiting sequences are admitted in priority order, lower number first") {
  fixture f(config(2, 64), 64);
  f.sched.add(request(1, 4, 5), 0);
  f.sched.add(request(2, 4, 1), 0);
  f.sched.add(request(3, 4, 3), 0);
  CHECK(f.step().started == std::vector<uint64_t>{2, 3});
}

TEST_CASE("within one priority level sequences are admitted in arrival order") {
  fixture f(config(8, 64), 64);
  for (uint64_t id : {9, 3, 7, 1, 5}) f.sched.add(request(id, 4, 2), 0);
  CHECK(f.step().started == std::vector<uint64_t>{9, 3, 7, 1, 5});
}

TEST_CASE("ageing lets an old low-priority request overtake a newer high-priority one") {
  auto c = config(1, 64);
  SUBCASE("with ageing") {
    c.ageing_ms = 100;
    fixture f(c, 64);
    f.sched.add(request(1, 4, 5), 0);
    f.sched.add(request(2, 4, 1), 1000);  // 1000 ms later: request 1 has aged to priority -5
    CHECK(f.step(1000).started == std::vector<uint64_t>{1});
    // Running with the priority it was admitted with, it is not evicted by what it overtook.
    CHECK(f.step(1001).preempted.empty());
  }
  SUBCASE("without ageing") {
    fixture f(c, 64);
    f.sched.add(request(1, 4, 5), 0);
    f.sched.add(request(2, 4, 1), 1000);
    CHECK(f.step(1000).started == std::vector<uint64_t>{2});
  }
}

namespace {

struct workload_result {
  run_log log;
  std::map<uint64_t, sequence_request> requests;
  std::set<uint64_t> aborted;
  int64_t num_planned_ahead = 0;
  int64_t num_groups = 0;
  std::vector<std::string> step_trace;  // each step as it ran (describe_step)
};

// A step as it ran, in an order that does not depend on how it was planned: every sequence
// with its first position, token count, whether it sampled and its block table (with
// with_blocks), then who was preempted, started or resumed and the block moves.
std::string describe_step(const scheduled_step& s, const batch_plan& ran, bool with_blocks) {
  std::vector<std::string> parts;
  for (const auto& q : ran.sequences) {
    std::ostringstream p;
    p << q.seq_id << "@" << q.start_pos << "+" << q.tokens.size() << (q.wants_sample ? "s" : "");
    if (with_blocks) for (const int32_t b : q.block_table) p << "," << b;
    parts.push_back(p.str());
  }
  std::sort(parts.begin(), parts.end());
  std::ostringstream out;
  for (const auto& p : parts) out << p << " ";
  const auto ids = [&](const char* name, std::vector<uint64_t> v) {
    std::sort(v.begin(), v.end());
    out << name;
    for (const uint64_t id : v) out << " " << id;
  };
  ids("| preempted", s.preempted);
  ids(" started", s.started);
  ids(" resumed", s.resumed);
  out << " | moves " << s.ops.copies.size() << "/" << s.ops.swap_out.size() << "/" << s.ops.swap_in.size();
  return out.str();
}

// 3 s of random arrivals (prompt lengths, priorities, max_tokens, stop tokens, aborts),
// then drains. Checks the budgets at every step, that no step is empty while work is left,
// and that no step feeds a sequence that has finished. Asynchronous: a step is planned
// ahead of the one in flight whenever it can be, and the worker runs them in order.
// With has_groups, a quarter of the arrivals are parallel-sampling groups of 2-4 sequences
// (fork_ids), each member expected to draw what a lone request with its seed draws.
workload_result run_random_workload(scheduler_policy& sched, simulated_worker& worker, const scheduler_config& c,
                                    uint32_t seed, bool has_shared_prefixes, bool is_async = false,
                                    bool has_groups = false, bool trace_blocks = false) {
  std::mt19937 rng(seed);
  workload_result w;
  uint64_t next_id = 1;
  std::vector<std::vector<int32_t>> prefixes(3);
  for (auto& p : prefixes) for (int i = 0; i < 24; ++i) p.push_back(100 + static_cast<int32_t>(rng() % 500));
  std::vector<scheduled_step> sent;  // with the worker, oldest first
  for (int64_t t = 0; t < 3000 || sched.has_unfinished() || !sent.empty(); t += 10) {
    REQUIRE(t < 1000000);
    if (t < 3000) {
      for (int k = static_cast<int>(rng() % 3); k > 0; --k) {
        auto r = request(next_id++, 1 + static_cast<int32_t>(rng() % 60), static_cast<int32_t>(rng() % 4),
                         1 + static_cast<int32_t>(rng() % 40));
        if (has_shared_prefixes) {
          const auto& p = prefixes[rng() % prefixes.size()];
          r.prompt_tokens.insert(r.prompt_tokens.begin(), p.begin(), p.begin() + static_cast<ptrdiff_t>(rng() % 24));
          r.prompt_tokens.resize(std::min<size_t>(r.prompt_tokens.size(), 60));
        }
        // A third stop on any of 30 token ids: about 3% of their tokens end them.
        if (rng() % 3 == 0) for (int i = 0; i < 30; ++i) r.params.stop_token_ids.push_back(10 + static_cast<int32_t>(rng() % 990));
        w.requests[r.id] = r;
        if (has_groups && rng() % 4 == 0) {
          const int num_members = 1 + static_cast<int>(rng() % 3);
          for (int i = 1; i <= num_members; ++i) {
            sequence_request member = r;
            member.id = next_id++;
            member.params.seed = fork_seed(r.params.seed, static_cast<uint64_t>(i));
            r.fork_ids.push_back(member.id);
            w.requests[member.id] = std::move(member);
          }
          w.num_groups += 1;
        }
        sched.add(std::move(r), t);
      }
    }
    // Aborts land between steps and while steps are in flight.
    auto maybe_abort = [&] {
      const uint64_t victim = 1 + rng() % next_id;
      // A parent cancelled before its group forks takes the members with it.
      const sequence* parent = sched.find(victim);
      const std::vector<uint64_t> members = parent ? parent->fork_ids : std::vector<uint64_t>{};
      if (t < 3000 && rng() % 14 == 0 && sched.abort(victim)) {
        w.aborted.insert(victim);
        w.aborted.insert(members.begin(), members.end());
      }
    };
    auto check_step = [&](const scheduled_step& s) {
      CHECK(s.plan.num_tokens() <= c.max_num_batched_tokens);
      CHECK(static_cast<int32_t>(s.plan.full.size() + s.plan.next.size()) <= c.max_num_seqs);
      CHECK(sched.stats().num_running <= c.max_num_seqs);
    };
    maybe_abort();
    if (sent.empty()) {
      auto s = sched.schedule(t);
      check_step(s);
      CHECK((!s.is_empty() || !sched.has_unfinished()));  // never idle with work left
      if (!s.is_empty()) sent.push_back(std::move(s));
    }
    maybe_abort();
    if (is_async && sent.size() == 1) {
      auto s = sched.schedule_ahead(t);
      check_step(s);
      CHECK(s.plan.is_planned_ahead == !s.is_empty());
      if (!s.is_empty()) {
        ++w.num_planned_ahead;
        sent.push_back(std::move(s));
      }
    }
    maybe_abort();
    if (!sent.empty()) {
      const auto result = worker.run(sent.front());
      w.step_trace.push_back(describe_step(sent.front(), worker.last_plan(), trace_blocks));
      sent.erase(sent.begin());
      for (const auto& ran : worker.last_plan().sequences) CHECK_FALSE(w.log.finished.contains(ran.seq_id));
      w.log.record(sched.on_step_done(result));
    }
  }
  return w;
}

// However often it was preempted, each sequence drew what it would have drawn alone.
void check_outputs_match_runs_alone(const workload_result& w, int32_t max_sequence_tokens) {
  for (const auto& [id, r] : w.requests) {
    const auto expected = run_alone(r, max_sequence_tokens);
    const auto it = w.log.outputs.find(id);
    const auto got = it == w.log.outputs.end() ? std::vector<int32_t>{} : it->second;
    if (w.aborted.contains(id)) {
      CHECK(std::equal(got.begin(), got.end(), expected.begin()));
    } else {
      CAPTURE(id);
      CHECK(got == expected);
    }
  }
}

}  // namespace

TEST_CASE("on random workloads the budgets hold and preempted sequences resume exactly") {
  for (const bool is_async : {false, true})
  for (const bool is_chunked : {true, false}) {
    for (const auto mode : {preemption_mode::recompute, preemption_mode::swap}) {
      CAPTURE(is_async);
      CAPTURE(is_chunked);
      CAPTURE(static_cast<int>(mode));
      auto c = config(8, 64, 64);
      c.enable_chunked_prefill = is_chunked;
      c.preemption = mode;
      c.ageing_ms = 50;
      for (const uint32_t seed : {1234u, 7u, 2024u}) {
        CAPTURE(seed);
        fixture f(c, 48, 4, 32);
        const auto w = run_random_workload(f.sched, f.worker, c, seed, false, is_async);
        CHECK((w.num_planned_ahead > 100) == is_async);
        CHECK(f.sched.stats().num_preemptions > 0);
        CHECK(f.kv.is_all_free(32));
        check_outputs_match_runs_alone(w, f.sched.max_sequence_tokens());
      }
    }
  }
}

// With has_groups a quarter of the arrivals are parallel-sampling groups (n > 1): every
// member draws what a lone request with its seed draws, however the group was preempted.
TEST_CASE("with the real block manager and prefix caching, outputs equal uninterrupted runs, groups included") {
  for (const bool has_groups : {false, true})
  for (const bool is_async : {false, true})
  for (const auto mode : {preemption_mode::recompute, preemption_mode::swap}) {
    CAPTURE(has_groups);
    CAPTURE(is_async);
    CAPTURE(static_cast<int>(mode));
    auto c = config(8, 64, 64);
    c.preemption = mode;
    c.ageing_ms = 50;
    for (const uint32_t seed : has_groups ? std::vector<uint32_t>{31u, 8u, 777u} : std::vector<uint32_t>{99u, 5u, 4242u}) {
      CAPTURE(seed);
      block_manager kv({.num_blocks = 48, .block_size = 4, .num_swap_blocks = 32, .enable_prefix_caching = true});
      scheduler_policy sched(c, kv, {eog_token});
      simulated_worker worker(48, 4, 32);
      const auto w = run_random_workload(sched, worker, c, seed, true, is_async, has_groups);
      kv.check_invariants();
      const auto s = kv.stats();
      CHECK(s.num_used_blocks == 0);
      CHECK(s.num_used_swap_blocks == 0);
      CHECK(s.prefix_hit_ratio() > 0.0);
      CHECK(sched.stats().num_preemptions > 0);
      CHECK((w.num_groups > 10) == has_groups);
      check_outputs_match_runs_alone(w, sched.max_sequence_tokens());
    }
  }
}

// The steady decode lane (sequences decoding inside their last block, planned without being
// looked at) must change what planning costs, never what is planned: the same random
// workloads, lane on and off, give the same steps (sequences, positions, token counts,
// preemptions) and the same tokens, synchronous and asynchronous, with stops, aborts and
// preemptions. Block numbers may differ: the lane's members finish after the others of
// their step, so blocks return to the pool in another order (the simulated worker reads
// every context back through the block tables, so a wrong table changes the tokens).
TEST_CASE("the steady decode lane plans exactly the steps of planning every sequence one by one") {
  for (const bool is_async : {false, true})
  for (const int32_t block_size : {4, 16})
  for (const auto mode : {preemption_mode::recompute, preemption_mode::swap})
  for (const double attention_cost : {0.0, 40.0}) {  // with attention counted, the lane's positions are summed
    CAPTURE(is_async);
    CAPTURE(block_size);
    CAPTURE(static_cast<int>(mode));
    CAPTURE(attention_cost);
    auto c = config(8, 64, 64);
    c.preemption = mode;
    c.ageing_ms = 50;
    c.attention_cost = attention_cost;
    const int32_t num_blocks = 192 / block_size;
    for (const uint32_t seed : {11u, 606u}) {
      CAPTURE(seed);
      auto run = [&](bool steady) {
        auto lane_config = c;
        lane_config.steady_decodes = steady;
        fake_kv_space kv(num_blocks, block_size, 128 / block_size);
        scheduler_policy sched(lane_config, kv, {eog_token});
        simulated_worker worker(num_blocks, block_size, 128 / block_size);
        auto w = run_random_workload(sched, worker, lane_config, seed, false, is_async);
        CHECK(kv.is_all_free(128 / block_size));
        check_outputs_match_runs_alone(w, sched.max_sequence_tokens());
        return std::pair(std::move(w), sched.stats());
      };
      const auto [one_by_one, one_by_one_stats] = run(false);
      const auto [lane, lane_stats] = run(true);
      CHECK(one_by_one_stats.num_steady_tokens == 0);
      MESSAGE("lane share of scheduled tokens: " << lane_stats.num_steady_tokens << " / " << lane_stats.num_scheduled_tokens);
      CHECK(lane_stats.num_steady_tokens * 20 > lane_stats.num_scheduled_tokens);
      CHECK(lane_stats.num_preemptions > 0);
      for (size_t i = 0; i < std::min(lane.step_trace.size(), one_by_one.step_trace.size()); ++i) {
        CAPTURE(i);
        REQUIRE(lane.step_trace[i] == one_by_one.step_trace[i]);
      }
      CHECK(lane_stats.num_preemptions == one_by_one_stats.num_preemptions);
      CHECK(lane_stats.num_steps == one_by_one_stats.num_steps);
      CHECK(lane.step_trace.size() == one_by_one.step_trace.size());
      CHECK(lane.log.outputs == one_by_one.log.outputs);
      CHECK(lane.aborted == one_by_one.aborted);
    }
  }
}

// With the real block manager and prefix caching the lane keys full blocks later (when a
// member leaves it), so cache hits may differ; what each sequence draws may not.
TEST_CASE("the steady decode lane with the real block manager: outputs equal uninterrupted runs, pool invariants hold") {
  for (const bool is_async : {false, true})
  for (const auto mode : {preemption_mode::recompute, preemption_mode::swap}) {
    CAPTURE(is_async);
    CAPTURE(static_cast<int>(mode));
    auto c = config(8, 64, 64);
    c.preemption = mode;
    c.ageing_ms = 50;
    for (const uint32_t seed : {3u, 1999u}) {
      CAPTURE(seed);
      block_manager kv({.num_blocks = 24, .block_size = 8, .num_swap_blocks = 16, .enable_prefix_caching = true});
      scheduler_policy sched(c, kv, {eog_token});
      simulated_worker worker(24, 8, 16);
      const auto w = run_random_workload(sched, worker, c, seed, true, is_async, true);
      kv.check_invariants();
      CHECK(kv.stats().num_used_blocks == 0);
      CHECK(kv.stats().num_used_swap_blocks == 0);
      CHECK(sched.stats().num_steady_tokens * 20 > sched.stats().num_scheduled_tokens);
      CHECK(sched.stats().num_preemptions > 0);
      check_outputs_match_runs_alone(w, sched.max_sequence_tokens());
    }
  }
}

TEST_CASE("chunked prefill splits a long prompt while running decodes get a token every step") {
  fixture f(config(8, 16), 64);  // 4-token blocks
  for (uint64_t id = 1; id <= 3; ++id) f.sched.add(request(id, 4, 0, 100), 0);
  f.step();
  f.sched.add(request(9, 40, 0, 100), 0);
  std::vector<int32_t> chunk_starts;
  for (int i = 0; i < 4; ++i) {
    const auto s = f.step();
    // 13 tokens of budget beside the 3 decodes; each chunk but the last ends on a block
    // boundary, giving up the one token that would have started a block.
    CHECK(s.plan.num_tokens() == (i < 3 ? 15 : 7));
    for (uint64_t id = 1; id <= 3; ++id) CHECK(step_of(s.plan, id) != nullptr);
    const auto* chunk = step_of(s.plan, 9);
    REQUIRE(chunk != nullptr);
    chunk_starts.push_back(chunk->start_pos);
    CHECK(chunk->wants_sample == (i == 3));
  }
  CHECK(chunk_starts == std::vector<int32_t>{0, 12, 24, 36});
  CHECK(f.log.outputs[9].size() == 1);
}

// A long prompt arriving while a stream decodes: with attention counted, every step costs at
// most what the first chunk of a prompt costs (plus one block, the least a prompt moves by),
// so the decoding stream's wait for its next token stays bounded however deep the prompt
// goes; counting tokens alone, chunks deep in the prompt cost many times the first.
TEST_CASE("chunked prefill with attention counted: no step costs more than a prompt's first chunk") {
  constexpr double r = 20;  // 20 attended pairs cost as much as one token
  for (const double attention_cost : {r, 0.0}) {
    CAPTURE(attention_cost);
    auto c = config(4, 64, 1024);
    c.attention_cost = attention_cost;
    fixture f(c, 400);  // 4-token blocks
    f.sched.add(request(1, 4, 0, 900), 0);
    f.step();
    f.sched.add(request(2, 700, 0, 1), 0);
    const double first_chunk = step_cost(0, 64, r);
    double worst = 0;
    int num_prefill_steps = 0;
    while (f.log.outputs[2].empty()) {
      REQUIRE(num_prefill_steps < 1000);
      const auto s = f.step();
      ++num_prefill_steps;
      REQUIRE(step_of(s.plan, 1) != nullptr);  // the stream gets its token every step
      const auto* chunk = step_of(s.plan, 2);
      REQUIRE(chunk != nullptr);                // and the prompt moves every step
      double cost = 0;
      for (const auto& seq : s.plan.sequences) {
        cost += step_cost(seq.start_pos, static_cast<int64_t>(seq.tokens.size()), r);
      }
      const double one_block = step_cost(chunk->start_pos, 4, r) + step_cost(step_of(s.plan, 1)->start_pos, 1, r);
      if (attention_cost > 0) CHECK(cost <= std::max(first_chunk, one_block));
      worst = std::max(worst, cost / first_chunk);
    }
    if (attention_cost > 0) {
      CHECK(worst <= 1.0 + 1e-9);
      CHECK(num_prefill_steps > 700 / 64);  // deep chunks are smaller
    } else {
      CHECK(worst > 5.0);  // what the bound prevents
      CHECK(num_prefill_steps == 12);
    }
    f.run_to_end();
    CHECK(f.log.finished.size() == 2);
  }
}

TEST_CASE("attention_cost is validated, and a changed one applies from the next step") {
  auto c = config(4, 64, 1024);
  c.attention_cost = -2;
  CHECK_THROWS_AS(c.validate(), error);
  c.attention_cost = -1;  // measured: the policy alone counts tokens until told
  fixture f(c, 400);
  CHECK(f.sched.attention_cost() == 0.0);
  f.sched.add(request(1, 600, 0, 1), 0);
  CHECK(step_of(f.step().plan, 1)->tokens.size() == 64);
  f.sched.set_attention_cost(10);
  // From position 64, 64 tokens cost 64 + (64·64 + 64·65/2)/10 = 682 > 64 + 64·65/20 = 272.
  const auto n = step_of(f.step().plan, 1)->tokens.size();
  CHECK(n < 64);
  CHECK(n == static_cast<size_t>(max_tokens_within(64, step_cost(0, 64, 10), 10)) / 4 * 4);
  CHECK_THROWS_AS(f.sched.set_attention_cost(-1), error);
}

TEST_CASE("a token budget smaller than a block still moves a long prompt, one unaligned chunk at a time") {
  fixture f(config(2, 3), 64);  // 4-token blocks, 3 tokens a step
  f.sched.add(request(1, 10, 0, 2), 0);
  std::vector<int32_t> chunk_starts;
  for (int i = 0; i < 4; ++i) {
    const auto s = f.step();
    const auto* chunk = step_of(s.plan, 1);
    REQUIRE(chunk != nullptr);
    chunk_starts.push_back(chunk->start_pos);
  }
  CHECK(chunk_starts == std::vector<int32_t>{0, 3, 6, 9});
  CHECK(f.log.outputs[1].size() == 1);
}

TEST_CASE("without chunked prefill a prompt is only scheduled whole") {
  auto c = config(8, 16, 16);
  c.enable_chunked_prefill = false;
  fixture f(c, 64);
  for (uint64_t id = 1; id <= 3; ++id) f.sched.add(request(id, 4, 0, 3), 0);
  f.step();
  f.sched.add(request(9, 14, 0, 1), 0);
  auto s = f.step();  // 3 decode tokens leave 13 of 16: the 14-token prompt waits
  CHECK(step_of(s.plan, 9) == nullptr);
  while (step_of(s.plan, 9) == nullptr) s = f.step();
  CHECK(step_of(s.plan, 9)->tokens.size() == 14);
}

TEST_CASE("a prefix-cache hit shortens the prefill") {
  fixture f(config(8, 64), 64);
  f.kv.set_cached_prefix_tokens(8);
  f.sched.add(request(1, 20), 0);
  const auto s = f.sched.schedule(0);
  REQUIRE(s.plan.full.size() == 1);
  CHECK(s.plan.full[0].start_pos == 8);
  CHECK(s.plan.full[0].tokens.size() == 12);
  CHECK(f.sched.find(1)->num_cached_prefix_tokens == 8);
}

// Pool of 4 blocks of 4 tokens: a (4-token prompt) and b, c (2-token prompts) fit after
// prefill; a's first decode takes the last block, and b's fourth token needs one more.
uint64_t first_victim(fixture& f, int32_t pa, int32_t pb, int32_t pc) {
  f.sched.add(request(1, 4, pa, 12), 0);
  f.sched.add(request(2, 2, pb, 12), 0);
  f.sched.add(request(3, 2, pc, 12), 0);
  for (int i = 0; i < 10; ++i) {
    const auto s = f.step();
    if (!s.preempted.empty()) {
      CHECK(s.preempted.size() == 1);
      return s.preempted[0];
    }
  }
  FAIL("no preemption");
  return 0;
}

TEST_CASE("preemption picks the lowest-priority, latest-arrived running sequence") {
  SUBCASE("latest arrival among the lowest priority") {
    fixture f(config(8, 64), 4);
    CHECK(first_victim(f, 0, 1, 1) == 3);
  }
  SUBCASE("lowest priority even when it arrived first") {
    fixture f(config(8, 64), 4);
    CHECK(first_victim(f, 2, 0, 1) == 1);
  }
}

TEST_CASE("a recomputed sequence is fed prompt+output and continues its sample_index") {
  fixture big(config(8, 64), 64);
  for (auto [id, len] : {std::pair{1, 4}, {2, 2}, {3, 2}}) big.sched.add(request(id, len, 1, 12), 0);
  big.run_to_end();

  fixture f(config(8, 64), 4);
  const uint64_t victim = first_victim(f, 1, 1, 1);
  const auto output_before = f.log.outputs[victim];
  CHECK(f.kv.block_table(victim).empty());
  CHECK(f.sched.find(victim)->state() == sequence_state::waiting);
  ran_step s;
  while (step_of(s.plan, victim) == nullptr) s = f.step();
  const auto& resumed = *step_of(s.plan, victim);
  CHECK(contains(s.resumed, victim));
  CHECK(resumed.start_pos == 0);
  std::vector<int32_t> expected = request(victim, 2).prompt_tokens;
  expected.insert(expected.end(), output_before.begin(), output_before.end());
  CHECK(resumed.tokens == expected);
  CHECK(resumed.sample_index == output_before.size());
  CHECK(resumed.wants_sample);
  f.run_to_end();
  CHECK(f.log.outputs == big.log.outputs);
  CHECK(f.kv.is_all_free());
}

TEST_CASE("swap mode swaps the victim out and back in and resumes where it stopped") {
  fixture big(config(8, 64), 64);
  for (auto [id, len] : {std::pair{1, 4}, {2, 2}, {3, 2}}) big.sched.add(request(id, len, 1, 12), 0);
  big.run_to_end();

  auto c = config(8, 64);
  c.preemption = preemption_mode::swap;
  fixture f(c, 4, 4, 8);
  f.sched.add(request(1, 4, 1, 12), 0);
  f.sched.add(request(2, 2, 1, 12), 0);
  f.sched.add(request(3, 2, 1, 12), 0);
  ran_step s;
  while (s.preempted.empty()) s = f.step();
  CHECK(s.preempted == std::vector<uint64_t>{3});
  CHECK_FALSE(s.ops.swap_out.empty());
  CHECK(f.sched.stats().num_swapped == 1);
  const int32_t num_computed = f.sched.find(3)->num_computed_tokens;
  while (s.ops.swap_in.empty()) s = f.step();
  CHECK(contains(s.resumed, 3));
  const auto* resumed = step_of(s.plan, 3);
  REQUIRE(resumed != nullptr);
  CHECK(resumed->start_pos == num_computed);
  CHECK(resumed->tokens.size() == 1);
  f.run_to_end();
  CHECK(f.log.outputs == big.log.outputs);
  CHECK(f.kv.is_all_free(8));
}

TEST_CASE("a higher-priority arrival preempts lower-priority work when max_num_seqs is reached") {
  fixture f(config(2, 64), 64);
  f.sched.add(request(1, 4, 5), 0);
  f.sched.add(request(2, 4, 5), 0);
  f.step();
  SUBCASE("a strictly higher priority preempts the latest of the lowest") {
    f.sched.add(request(3, 4, 0), 0);
    const auto s = f.step();
    CHECK(s.preempted == std::vector<uint64_t>{2});
    CHECK(s.started == std::vector<uint64_t>{3});
    CHECK(ids_in(s.plan) == std::vector<uint64_t>{1, 3});
  }
  SUBCASE("an equal priority waits") {
    f.sched.add(request(3, 4, 5), 0);
    const auto s = f.step();
    CHECK(s.preempted.empty());
    CHECK(f.sched.find(3)->state() == sequence_state::waiting);
  }
}

TEST_CASE("abort in every state returns all blocks") {
  auto c = config(8, 64);
  c.preemption = preemption_mode::swap;
  fixture f(c, 4, 4, 8);
  SUBCASE("waiting") {
    f.sched.add(request(1, 4), 0);
    CHECK(f.sched.abort(1));
  }
  SUBCASE("running, between steps") {
    f.sched.add(request(1, 4), 0);
    f.step();
    CHECK(f.sched.abort(1));
  }
  SUBCASE("running, in flight: its output is then ignored") {
    f.sched.add(request(1, 4), 0);
    f.sched.add(request(2, 4), 0);
    const auto s = f.sched.schedule(0);
    CHECK(f.sched.abort(1));
    CHECK(f.sched.find(1) == nullptr);
    CHECK(f.kv.num_sequences_holding_blocks() == 2);  // the step still writes its blocks
    const auto events = f.sched.on_step_done(f.worker.run(s));
    REQUIRE(events.size() == 1);
    CHECK(events[0].seq_id == 2);
    CHECK(f.sched.abort(2));
  }
  SUBCASE("swapped and preempted") {
    const uint64_t victim = first_victim(f, 0, 1, 1);
    CHECK(f.sched.find(victim)->state() == sequence_state::swapped);
    for (uint64_t id = 1; id <= 3; ++id) CHECK(f.sched.abort(id));
  }
  SUBCASE("waiting after a recompute preemption") {
    fixture g(config(8, 64), 4);
    const uint64_t victim = first_victim(g, 0, 1, 1);
    CHECK(g.sched.find(victim)->state() == sequence_state::waiting);
    for (uint64_t id = 1; id <= 3; ++id) CHECK(g.sched.abort(id));
    CHECK(g.kv.is_all_free());
  }
  CHECK_FALSE(f.sched.has_unfinished());
  CHECK(f.kv.is_all_free(8));
  CHECK_FALSE(f.sched.abort(1));  // already gone
  CHECK_FALSE(f.sched.abort(77)); // never known
}

TEST_CASE("a prompt that can never fit is refused at add time") {
  fixture f(config(8, 64, 32), 4);  // 4 blocks of 4: 16 tokens of KV
  auto code_of = [&](sequence_request r) {
    try {
      f.sched.add(std::move(r), 0);
    } catch (const error& e) {
      return e.code();
    }
    return error_code::internal;
  };
  CHECK(code_of(request(1, 33)) == error_code::context_overflow);  // over max_model_len
  CHECK(code_of(request(2, 17)) == error_code::context_overflow);  // over the pool
  CHECK(code_of(request(3, 0)) == error_code::invalid_argument);
  CHECK_FALSE(f.sched.has_unfinished());
  f.sched.add(request(4, 16), 0);
  CHECK(code_of(request(4, 3)) == error_code::invalid_argument);  // a live id
  f.run_to_end();
  CHECK(f.log.finished[4] == finish_reason::length);
}

TEST_CASE("stop rules end a sequence with stop or length") {
  auto finish_with = [](int32_t token, sampling_params params, int32_t max_model_len = 256) {
    fake_kv_space kv(64, 4);
    scheduler_policy sched(config(8, 64, max_model_len), kv, {eog_token});
    auto r = request(1, 6);
    r.params = std::move(params);
    sched.add(std::move(r), 0);
    for (int32_t n = 1;; ++n) {
      const auto s = sched.schedule(0);
      step_result result;
      result.outputs.push_back({1, token});
      const auto events = sched.on_step_done(result);
      if (events.at(0).state == sequence_state::finished) {
        CHECK(kv.is_all_free());
        return std::pair{events[0].reason, n};
      }
    }
  };
  sampling_params p;
  p.max_tokens = 5;
  CHECK(finish_with(eog_token, p) == std::pair{finish_reason::stop, 1});
  CHECK(finish_with(50, p) == std::pair{finish_reason::length, 5});
  CHECK(finish_with(50, p, 8) == std::pair{finish_reason::length, 2});
  p.ignore_eos = true;
  CHECK(finish_with(eog_token, p) == std::pair{finish_reason::length, 5});
  p.stop_token_ids = {50};
  CHECK(finish_with(50, p) == std::pair{finish_reason::stop, 1});
}

TEST_CASE("one step in flight: schedule twice without on_step_done is an error") {
  fixture f(config(8, 64), 64);
  CHECK_THROWS_AS(f.sched.on_step_done({}), error);
  f.sched.add(request(1, 4), 0);
  f.sched.schedule(0);
  CHECK(f.sched.is_step_in_flight());
  try {
    f.sched.schedule(0);
    FAIL("schedule() was accepted with a step in flight");
  } catch (const error& e) {
    CHECK(e.code() == error_code::internal);
  }
  CHECK_THROWS_AS(f.sched.on_step_done({}), error);  // the wanted sample is missing
}

TEST_CASE("a failed step fails every sequence in it with the step's code and frees their blocks") {
  fixture f(config(8, 64), 64);
  f.sched.add(request(1, 4), 0);
  f.sched.add(request(2, 4), 0);
  f.sched.schedule(0);
  const auto events = f.sched.on_step_failed(error_code::out_of_memory, "device lost");
  REQUIRE(events.size() == 2);
  CHECK(events[0].state == sequence_state::failed);
  CHECK(events[0].error == error_code::out_of_memory);
  CHECK(events[1].error == error_code::out_of_memory);
  CHECK(events[0].message == "device lost");
  CHECK_FALSE(f.sched.has_unfinished());
  CHECK(f.kv.is_all_free());
}

TEST_CASE("steps carry the penalty window and count the batch efficiency") {
  fixture f(config(4, 16), 64);
  auto r = request(1, 6);
  r.params.repetition_penalty = 1.1f;
  r.params.penalty_last_n = 4;
  f.sched.add(std::move(r), 0);
  f.step();
  const auto s = f.sched.schedule(0);
  f.worker.run(s);
  const auto& step = f.worker.last_plan().sequences.at(0);
  CHECK(step.penalty_tokens.size() == 4);
  CHECK(step.num_prompt_penalty_tokens == 3);
  CHECK(step.sample_index == 1);
  CHECK(s.num_scheduled_tokens == 1);
  CHECK(f.sched.stats().batch_efficiency() == doctest::Approx(7.0 / 32.0));
}

TEST_CASE("a sequence's state changes only along legal transitions") {
  sequence seq(1, {5, 6, 7}, {}, 0, 0, 0);
  CHECK_THROWS_AS(seq.transition_to(sequence_state::finished), error);
  CHECK_THROWS_AS(seq.transition_to(sequence_state::swapped), error);
  seq.transition_to(sequence_state::running);
  seq.num_computed_tokens = 3;
  seq.transition_to(sequence_state::waiting);
  CHECK(seq.num_computed_tokens == 0);
  seq.transition_to(sequence_state::running);
  seq.transition_to(sequence_state::swapped);
  CHECK_THROWS_AS(seq.transition_to(sequence_state::finished), error);
  seq.transition_to(sequence_state::running);
  seq.transition_to(sequence_state::finished);
  CHECK_THROWS_AS(seq.transition_to(sequence_state::cancelled), error);
  CHECK_THROWS_AS(seq.transition_to(sequence_state::running), error);
}

TEST_CASE("a lost worker fails the sequences of the step in flight, re-queues the others and empties the pool") {
  block_manager kv({64, 4, 0, true});
  scheduler_policy sched(config(2, 10), kv, {eog_token});
  simulated_worker worker(64, 4, 0);
  run_log log;
  auto run = [&] {
    const auto s = sched.schedule(0);
    REQUIRE_FALSE(s.is_empty());
    log.record(sched.on_step_done(worker.run(s)));
    return s;
  };
  sched.add(request(1, 40, 0, 6), 0);
  run();                                  // 1: 8 prompt tokens (two blocks), 2 of the budget unused
  sched.add(request(2, 40, -1, 6), 0);
  sched.add(request(3, 8, 0, 6), 0);      // waits: max_num_seqs is 2
  run();                                  // 1: 8 more; 2 admitted with the 2 left
  const auto stuck = sched.schedule(0);   // 2 ranks first and takes the whole budget
  std::vector<uint64_t> in_stuck;
  for (const auto& s : stuck.plan.full) in_stuck.push_back(s.seq_id);
  for (const auto& s : stuck.plan.next) in_stuck.push_back(s.seq_id);
  REQUIRE(in_stuck == std::vector<uint64_t>{2});
  REQUIRE(sched.find(1)->state() == sequence_state::running);

  const auto loss = sched.on_worker_lost(error_code::step_timeout, "stuck", 5);
  REQUIRE(loss.failed.size() == 1);
  CHECK(loss.failed[0].seq_id == 2);
  CHECK(loss.failed[0].state == sequence_state::failed);
  CHECK(loss.failed[0].error == error_code::step_timeout);
  CHECK(loss.failed[0].message == "stuck");
  CHECK(loss.requeued == std::vector<uint64_t>{1});
  CHECK(sched.find(2) == nullptr);
  CHECK(sched.find(1)->state() == sequence_state::waiting);
  CHECK(sched.find(1)->num_computed_tokens == 0);
  CHECK_FALSE(sched.is_step_in_flight());
  kv.check_invariants();
  const auto blocks = kv.stats();
  CHECK(blocks.num_used_blocks == 0);
  CHECK(blocks.num_cached_blocks == 0);  // the prefix cache pointed into the lost pool
  CHECK(blocks.num_free_blocks == 64);

  // A new worker (its pool empty) runs the rest from scratch, to the same tokens.
  sched.forget_worker_state();
  simulated_worker fresh(64, 4, 0);
  for (int i = 0; sched.has_unfinished(); ++i) {
    REQUIRE(i < 1000);
    const auto s = sched.schedule(0);
    REQUIRE_FALSE(s.is_empty());
    log.record(sched.on_step_done(fresh.run(s)));
    kv.check_invariants();
  }
  CHECK(log.outputs[1] == run_alone(request(1, 40, 0, 6), 256));
  CHECK(log.outputs[3] == run_alone(request(3, 8, 0, 6), 256));
  CHECK(kv.stats().num_used_blocks == 0);
}

TEST_CASE("failing everything (no worker left) ends every live sequence and empties the pool") {
  block_manager kv({64, 4, 0, true});
  scheduler_policy sched(config(1, 64), kv, {eog_token});
  simulated_worker worker(64, 4, 0);
  sched.add(request(1, 8), 0);
  sched.add(request(2, 8), 0);  // waiting
  sched.on_step_done(worker.run(sched.schedule(0)));
  sched.schedule(0);  // in flight
  const auto events = sched.fail_all(error_code::step_timeout, "no worker");
  REQUIRE(events.size() == 2);
  for (const auto& e : events) {
    CHECK(e.state == sequence_state::failed);
    CHECK(e.error == error_code::step_timeout);
  }
  CHECK_FALSE(sched.has_unfinished());
  CHECK_FALSE(sched.is_step_in_flight());
  kv.check_invariants();
  CHECK(kv.stats().num_used_blocks == 0);
}
