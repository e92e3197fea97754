// Speculative decoding in the scheduler: the n-gram proposer, proposals in the plan within
// the budgets, verification results applied (accepted tokens, rollback of rejected
// positions, adaptive proposal counts), stop rules inside a run of accepted tokens, mixing
// speculative and plain sequences in one step, a property test over random workloads on
// the real block manager (outputs equal those without speculation, every invariant holds),
// and the steady decode lane with sequences that may speculate (the same steps as without it).
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>

#include "engine/fake_kv_space.hpp"
#include "engine/simulated_worker.hpp"
#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/proposer.hpp"
#include "troupe/engine/scheduler_policy.hpp"
#include "troupe/engine/speculation_cost.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using troupe::test::fake_kv_space;
using troupe::test::simulated_worker;

namespace {

constexpr int32_t eog_token = 2;

std::vector<int32_t> propose(const ngram_proposer& p, std::vector<int32_t> tokens, int32_t max_tokens) {
  std::vector<int32_t> out = {99};  // propose clears what was there
  p.propose(tokens, max_tokens, out);
  return out;
}

scheduler_config spec_config(speculative_method method, int32_t max_num_batched_tokens = 256) {
  scheduler_config c;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = max_num_batched_tokens;
  c.max_model_len = 512;
  c.ageing_ms = 0;
  c.speculative = method;
  c.num_speculative_tokens = 4;
  c.ngram_min = 2;
  c.ngram_max = 3;
  c.speculative_max_batch = 8;
  return c;
}

// A prompt that repeats `period` tokens, so that prompt lookup finds its continuation.
sequence_request periodic_request(uint64_t id, int32_t period, int32_t num_prompt_tokens, int32_t max_tokens) {
  sequence_request r;
  r.id = id;
  for (int32_t i = 0; i < num_prompt_tokens; ++i) r.prompt_tokens.push_back(100 + static_cast<int32_t>(id * 50) + i % period);
  r.params.max_tokens = max_tokens;
  r.params.seed = id;
  return r;
}

// The model goes on with the sequence's own cycle (the token `period` back), except that at
// output indices where `deviates` says so it says something new: proposals are then partly
// rejected, and a wrong rollback (KV of a rejected proposal read as context) shows in every
// later token through the hash.
simulated_worker::next_token_rule cyclic_rule(int32_t period, std::function<bool(uint64_t)> deviates) {
  return [=](const std::vector<int32_t>& context, uint64_t seed, uint64_t index) {
    if (deviates(index) || context.size() < static_cast<size_t>(period)) {
      return simulated_worker::next_token(context, seed, index);
    }
    return context[context.size() - static_cast<size_t>(period)];
  };
}

struct run_result {
  std::map<uint64_t, std::vector<int32_t>> outputs;
  std::map<uint64_t, finish_reason> finished;
  int32_t num_steps = 0;
  scheduler_stats stats;
  bool mixed_step = false;  // a step held a sequence with proposals and one without
  double seconds = 0;       // the steps' times, when they were timed
};

template <class Kv>
run_result run(Kv& kv, scheduler_config config, const std::vector<sequence_request>& requests,
               simulated_worker::next_token_rule rule, int32_t num_blocks, int32_t block_size,
               const std::function<void()>& after_step = {}, simulated_worker::next_token_rule draft_rule = {},
               const std::function<double(const scheduled_step&)>& step_seconds = {}) {
  scheduler_policy sched(config, kv, {eog_token});
  simulated_worker worker(num_blocks, block_size, 0);
  worker.set_rule(std::move(rule));
  worker.set_draft_rule(std::move(draft_rule));
  for (const auto& r : requests) sched.add(r, 0);
  run_result out;
  while (sched.has_unfinished()) {
    REQUIRE(out.num_steps < 100000);
    const auto s = sched.schedule(0);
    REQUIRE_FALSE(s.is_empty());
    int64_t tokens = 0;
    bool any_drafts = false, any_plain = false;
    for (const auto& f : s.plan.full) {
      tokens += static_cast<int64_t>(f.tokens.size());
      any_drafts = any_drafts || f.num_draft_tokens > 0;
      any_plain = any_plain || f.num_draft_tokens == 0;
    }
    any_plain = any_plain || !s.plan.next.empty();
    out.mixed_step = out.mixed_step || (any_drafts && any_plain);
    CHECK(s.num_scheduled_tokens <= config.max_num_batched_tokens);
    const auto result = worker.run(s);
    const double seconds = step_seconds ? step_seconds(s) : -1.0;
    out.seconds += std::max(0.0, seconds);
    for (const auto& e : sched.on_step_done(result, seconds)) {
      out.outputs[e.seq_id].push_back(e.token);
      if (e.state == sequence_state::finished) out.finished[e.seq_id] = e.reason;
    }
    ++out.num_steps;
    if (after_step) after_step();
  }
  out.stats = sched.stats();
  return out;
}

run_result run_fake(scheduler_config config, const std::vector<sequence_request>& requests,
                    simulated_worker::next_token_rule rule, int32_t num_blocks = 256, int32_t block_size = 4) {
  fake_kv_space kv(num_blocks, block_size);
  auto r = run(kv, config, requests, std::move(rule), num_blocks, block_size);
  CHECK(kv.is_all_free());
  return r;
}

}  // namespace

TEST_CASE("speculation: prompt lookup proposes what followed the latest, longest earlier match") {
  const ngram_proposer p(1, 3);
  // The suffix (7, 8) occurs twice; the later occurrence is followed by 4, 5.
  CHECK(propose(p, {7, 8, 1, 2, 7, 8, 4, 5, 6, 7, 8}, 3) == std::vector<int32_t>{4, 5, 6});
  // A longer match wins over a later, shorter one: (6, 7, 8) matched at the start.
  CHECK(propose(p, {6, 7, 8, 9, 9, 3, 7, 8, 1, 6, 7, 8}, 2) == std::vector<int32_t>{9, 9});
  // The continuation stops at the end of what is known.
  CHECK(propose(p, {1, 2, 3, 1, 2}, 8) == std::vector<int32_t>{3, 1, 2});
  CHECK(propose(p, {1, 2, 3, 4}, 4).empty());  // nothing recurs
  CHECK(propose(p, {5}, 4).empty());
  CHECK(propose(p, {1, 2, 1, 2}, 0).empty());
  const ngram_proposer bigrams(2, 2);
  CHECK(propose(bigrams, {3, 9, 4, 9}, 2).empty());  // only the single token 9 recurs
  CHECK(propose(bigrams, {3, 9, 4, 3, 9}, 2) == std::vector<int32_t>{4, 3});
  CHECK_THROWS_AS(ngram_proposer(0, 2), error);
  CHECK_THROWS_AS(ngram_proposer(3, 2), error);
  CHECK_THROWS_AS(ngram_proposer(1, 65), error);
  CHECK(parse_speculative_method("ngram") == speculative_method::ngram);
  CHECK(parse_speculative_method("off") == speculative_method::off);
  CHECK(parse_speculative_method("draft") == speculative_method::draft);
  CHECK_THROWS_AS(parse_speculative_method("eagle"), error);
}

TEST_CASE("speculation: a predictable model's output is the same with proposals, in fewer steps") {
  const auto rule = cyclic_rule(5, [](uint64_t) { return false; });
  const std::vector<sequence_request> reqs = {periodic_request(1, 5, 12, 40)};
  const auto plain = run_fake(spec_config(speculative_method::off), reqs, rule);
  const auto spec = run_fake(spec_config(speculative_method::ngram), reqs, rule);
  CHECK(spec.outputs == plain.outputs);
  CHECK(spec.finished == plain.finished);
  CHECK(plain.outputs.at(1).size() == 40);
  CHECK(plain.stats.num_draft_tokens == 0);
  // Every proposal is right: 4 tokens accepted and a fifth sampled per step after the first.
  CHECK(spec.stats.num_accepted_tokens == spec.stats.num_draft_tokens);
  CHECK(spec.stats.num_emitted_tokens == spec.stats.num_accepted_tokens + spec.stats.num_speculative_steps);
  MESSAGE("steps: " << plain.num_steps << " plain, " << spec.num_steps << " speculative");
  CHECK(spec.num_steps <= plain.num_steps / 3);
  REQUIRE(spec.stats.num_drafts_at_position.size() == 4);
  CHECK(spec.stats.num_accepted_at_position == spec.stats.num_drafts_at_position);
}

TEST_CASE("speculation: rejected proposals are rolled back and later tokens are unaffected") {
  // Deviations at every 7th output index: runs of accepted tokens end in a rejection.
  const auto rule = cyclic_rule(6, [](uint64_t i) { return i % 7 == 3; });
  std::vector<sequence_request> reqs;
  for (uint64_t id = 1; id <= 3; ++id) reqs.push_back(periodic_request(id, 6, 14 + static_cast<int32_t>(id), 60));
  const auto plain = run_fake(spec_config(speculative_method::off), reqs, rule);
  fake_kv_space kv(256, 4);
  const auto spec = run(kv, spec_config(speculative_method::ngram), reqs, rule, 256, 4);
  CHECK(kv.is_all_free());
  CHECK(spec.outputs == plain.outputs);
  CHECK(spec.finished == plain.finished);
  CHECK(spec.stats.num_accepted_tokens > 0);
  CHECK(spec.stats.num_accepted_tokens < spec.stats.num_draft_tokens);
  CHECK(kv.num_truncates() > 0);
  CHECK(spec.num_steps < plain.num_steps);
}

TEST_CASE("speculation: a stop token or max_tokens inside a run of accepted proposals ends the sequence there") {
  SUBCASE("end of generation") {
    // A 7-token cycle that holds the end-of-generation id (the prompt may hold it). The
    // first output token departs from the cycle, so that lookup proposes nothing until the
    // output has two cycle tokens in a row; its proposals then run into the end token.
    sequence_request r = periodic_request(1, 7, 21, 100);
    for (size_t pos = 6; pos < r.prompt_tokens.size(); pos += 7) r.prompt_tokens[pos] = eog_token;
    const auto rule = cyclic_rule(7, [](uint64_t i) { return i == 0; });
    const auto plain = run_fake(spec_config(speculative_method::off), {r}, rule);
    const auto spec = run_fake(spec_config(speculative_method::ngram), {r}, rule);
    CHECK(spec.outputs == plain.outputs);
    REQUIRE(spec.finished.count(1) == 1);
    CHECK(spec.finished.at(1) == finish_reason::stop);
    CHECK(spec.outputs.at(1).back() == eog_token);
    CHECK(spec.outputs.at(1).size() == 7);
    CHECK(spec.stats.num_accepted_tokens > 0);
  }
  SUBCASE("max_tokens") {
    for (int32_t max_tokens : {1, 2, 5, 9, 13}) {
      CAPTURE(max_tokens);
      const auto r = periodic_request(1, 3, 9, max_tokens);
      const auto rule = cyclic_rule(3, [](uint64_t) { return false; });
      const auto spec = run_fake(spec_config(speculative_method::ngram), {r}, rule);
      CHECK(spec.outputs.at(1).size() == static_cast<size_t>(max_tokens));
      CHECK(spec.finished.at(1) == finish_reason::length);
    }
  }
}

TEST_CASE("speculation: sequences with and without proposals share a step; a request may opt out") {
  const auto rule = cyclic_rule(5, [](uint64_t) { return false; });
  std::vector<sequence_request> reqs;
  for (uint64_t id = 1; id <= 3; ++id) reqs.push_back(periodic_request(id, 5, 12, 30));
  reqs[1].speculative = speculative_method::off;
  const auto plain = run_fake(spec_config(speculative_method::off), reqs, rule);
  const auto spec = run_fake(spec_config(speculative_method::ngram), reqs, rule);
  CHECK(spec.outputs == plain.outputs);
  CHECK(spec.mixed_step);
  // And the other way round: a server without speculation, one request asking for it.
  auto one = reqs;
  one[1].speculative = std::nullopt;
  one[2].speculative = speculative_method::ngram;
  const auto opted_in = run_fake(spec_config(speculative_method::off), one, rule);
  CHECK(opted_in.outputs == plain.outputs);
  CHECK(opted_in.stats.num_draft_tokens > 0);
  CHECK(opted_in.mixed_step);
}

TEST_CASE("speculation: proposals fit the token budget and stop past speculative_max_batch") {
  const auto rule = cyclic_rule(5, [](uint64_t) { return false; });
  std::vector<sequence_request> reqs;
  for (uint64_t id = 1; id <= 3; ++id) reqs.push_back(periodic_request(id, 5, 12, 20));
  SUBCASE("too many decoding sequences") {
    auto c = spec_config(speculative_method::ngram);
    c.speculative_max_batch = 2;
    const auto r = run_fake(c, reqs, rule);
    CHECK(r.stats.num_draft_tokens == 0);
  }
  SUBCASE("a small budget") {
    auto c = spec_config(speculative_method::ngram, 8);  // 3 decodes + 5 proposals at most
    c.max_num_seqs = 3;
    const auto plain = run_fake(spec_config(speculative_method::off), reqs, rule);
    const auto r = run_fake(c, reqs, rule);
    CHECK(r.outputs == plain.outputs);
    CHECK(r.stats.num_draft_tokens > 0);
  }
}

TEST_CASE("speculation: nothing is planned ahead of a step with proposals") {
  fake_kv_space kv(64, 4);
  auto c = spec_config(speculative_method::ngram);
  c.async_scheduling = true;
  scheduler_policy sched(c, kv, {eog_token});
  simulated_worker worker(64, 4, 0);
  worker.set_rule(cyclic_rule(4, [](uint64_t) { return false; }));
  sched.add(periodic_request(1, 4, 12, 30), 0);
  auto first = sched.schedule(0);  // the prompt
  sched.on_step_done(worker.run(first));
  const auto second = sched.schedule(0);
  REQUIRE(second.plan.full.size() == 1);
  CHECK(second.plan.full[0].num_draft_tokens > 0);
  CHECK(second.num_scheduled_tokens == 1 + second.plan.full[0].num_draft_tokens);
  CHECK(sched.schedule_ahead(0).is_empty());
  CHECK(sched.needs_sync());
  const auto events = sched.on_step_done(worker.run(second));
  CHECK(events.size() == static_cast<size_t>(1 + second.plan.full[0].num_draft_tokens));
  CHECK(events.front().num_proposed == second.plan.full[0].num_draft_tokens);
  CHECK(events.front().num_accepted == second.plan.full[0].num_draft_tokens);
  CHECK(events.back().num_proposed == 0);
}

TEST_CASE("speculation: proposals that keep failing pause, and the proposal count follows acceptance") {
  // A model that picks among 8 tokens at random: with single-token lookup every step finds a
  // match to propose from, and about one proposal in 8 is right.
  const auto rule = [](const std::vector<int32_t>& context, uint64_t seed, uint64_t index) {
    return 100 + simulated_worker::next_token(context, seed, index) % 8;
  };
  auto c = spec_config(speculative_method::ngram);
  c.ngram_min = 1;
  const auto reqs = std::vector<sequence_request>{periodic_request(1, 3, 30, 200)};
  const auto spec = run_fake(c, reqs, rule);
  const auto plain = run_fake(spec_config(speculative_method::off), reqs, rule);
  CHECK(spec.outputs == plain.outputs);
  // Without the pause every one of the ~200 steps would propose; with it, mostly the
  // steps after an acceptance do, and after one a sequence proposes 1 + accepted tokens.
  MESSAGE("proposed " << spec.stats.num_draft_tokens << " in " << spec.stats.num_speculative_steps << " of "
                      << spec.num_steps << " steps, accepted " << spec.stats.num_accepted_tokens);
  CHECK(spec.stats.num_speculative_steps > 10);
  CHECK(spec.stats.num_speculative_steps < spec.num_steps / 2);
  CHECK(spec.stats.num_draft_tokens < 2 * spec.stats.num_speculative_steps);
}

TEST_CASE("speculation cost: plain step times, a proposal's share, the break-even and when to measure again") {
  speculation_cost cost(4, 8);
  CHECK_FALSE(cost.needs_plain_step(1));  // nothing timed yet: no step is planned plain for it
  CHECK(cost.break_even(1, 3) < 0);
  cost.observe(1, 3, 0.040);  // proposals before any plain step teach nothing
  CHECK(cost.seconds_per_proposal() == 0);
  CHECK(cost.needs_plain_step(1));
  cost.observe(1, 0, 0.010);
  CHECK_FALSE(cost.needs_plain_step(1));
  CHECK(cost.needs_plain_step(2));  // each batch size on its own
  cost.observe(1, 4, 0.042);
  CHECK(cost.seconds_per_proposal() == doctest::Approx(0.008));
  // Four proposals hold one sequence back 32 ms, 3.2 plain steps' worth; in a step of two
  // sequences they hold both back.
  CHECK(cost.break_even(1, 4) == doctest::Approx(3.2));
  CHECK(cost.break_even(2, 4) < 0);
  cost.observe(2, 0, 0.016);
  CHECK(cost.break_even(2, 4) == doctest::Approx(2 * 4 * 0.008 / 0.016));
  // A step faster than the plain one counts as free proposals, never negative ones.
  cost.observe(1, 2, 0.005);
  CHECK(cost.seconds_per_proposal() == doctest::Approx(0.8 * 0.008));
  // Eight observed steps after its last plain one, a batch size is measured again.
  for (int i = 0; i < 6; ++i) cost.observe(1, 1, 0.012);
  CHECK(cost.needs_plain_step(1));
  cost.observe(1, 0, 0.020);
  CHECK(cost.plain_seconds(1) == doctest::Approx(0.010 + 0.3 * (0.020 - 0.010)));
  CHECK_FALSE(cost.needs_plain_step(1));
  cost.observe(5, 0, 1.0);  // past max_batch: ignored
  CHECK(cost.plain_seconds(5) == 0);
}

namespace {

// Step times of a machine where a decode step takes 10 ms and each proposal adds `per_proposal`.
std::function<double(const scheduled_step&)> timed_steps(double per_proposal) {
  return [per_proposal](const scheduled_step& s) {
    int64_t num_proposals = 0;
    for (const auto& f : s.plan.full) num_proposals += f.num_draft_tokens;
    return 0.010 + per_proposal * static_cast<double>(num_proposals);
  };
}

}  // namespace

TEST_CASE("speculation: greedy proposals that cost more than they win sit out; proposals that pay go on; sampled ones are left alone") {
  auto c = spec_config(speculative_method::ngram);
  c.ngram_min = 1;
  auto reqs = std::vector<sequence_request>{periodic_request(1, 3, 30, 300)};
  reqs[0].params.temperature = 0.0f;  // greedy
  // A model picking among 3 tokens at random: single-token lookup always finds a proposal,
  // and a third of them are right, 0.33 tokens won per proposal.
  const auto random3 = [](const std::vector<int32_t>& context, uint64_t seed, uint64_t index) {
    return 100 + simulated_worker::next_token(context, seed, index) % 3;
  };
  const auto plain = run_fake(spec_config(speculative_method::off), reqs, random3);
  auto run_timed = [&](const scheduler_config& config, simulated_worker::next_token_rule rule, double per_proposal) {
    fake_kv_space kv(256, 4);
    auto r = run(kv, config, reqs, std::move(rule), 256, 4, {}, {}, timed_steps(per_proposal));
    CHECK(kv.is_all_free());
    return r;
  };
  // At 8 ms a proposal (0.8 plain steps), a third accepted does not pay: the rule makes the
  // sequence sit out. At 1 ms one (0.1 steps) it pays, and the sequence keeps proposing.
  const auto dear = run_timed(c, random3, 0.008);
  const auto cheap = run_timed(c, random3, 0.001);
  auto no_rule = c;
  no_rule.speculative_break_even = false;
  const auto untimed = run_timed(no_rule, random3, 0.008);
  CHECK(dear.outputs == plain.outputs);
  CHECK(cheap.outputs == plain.outputs);
  CHECK(untimed.outputs == plain.outputs);
  const auto cheap_untimed = run_timed(no_rule, random3, 0.001);
  const double plain_seconds = 0.010 * plain.num_steps;
  MESSAGE("8 ms a proposal: " << untimed.stats.num_speculative_steps << " speculative steps, " << untimed.seconds
                              << " s without the rule; " << dear.stats.num_speculative_steps << ", " << dear.seconds
                              << " s with it; plain " << plain_seconds << " s");
  MESSAGE("1 ms a proposal: " << cheap_untimed.stats.num_speculative_steps << " speculative steps, "
                              << cheap_untimed.seconds << " s without the rule; " << cheap.stats.num_speculative_steps
                              << ", " << cheap.seconds << " s with it");
  // Where proposals do not pay, speculating without the rule is slower than plain decoding,
  // and with it within a few percent of plain; where they pay, the rule leaves them be.
  CHECK(untimed.seconds > plain_seconds * 1.1);
  CHECK(dear.seconds < plain_seconds * 1.05);
  CHECK(dear.stats.num_speculative_steps * 3 < untimed.stats.num_speculative_steps);
  CHECK(cheap.seconds < plain_seconds * 0.97);
  CHECK(cheap.seconds <= cheap_untimed.seconds * 1.02);

  // A sampled request is left to the miss rule: whichever steps it speculates in decide its
  // text, so timing must not.
  auto sampled_reqs = reqs;
  sampled_reqs[0].params.temperature = 0.7f;
  {
    fake_kv_space kv(256, 4), kv_untimed(256, 4);
    const auto timed = run(kv, c, sampled_reqs, random3, 256, 4, {}, {}, timed_steps(0.008));
    const auto untimed_sampled = run(kv_untimed, c, sampled_reqs, random3, 256, 4);
    CHECK(timed.outputs == untimed_sampled.outputs);
    CHECK(timed.num_steps == untimed_sampled.num_steps);
    CHECK(timed.stats.num_speculative_steps == untimed_sampled.stats.num_speculative_steps);
  }

  // A model that repeats its cycle: every proposal right. Even at 8 ms a proposal they pay
  // (four proposals cost 3.2 steps and win 4 tokens), so the rule changes nothing but its
  // few plain steps for measuring.
  const auto cycle = cyclic_rule(3, [](uint64_t) { return false; });
  const auto good = run_timed(c, cycle, 0.008);
  const auto good_untimed = run_timed(no_rule, cycle, 0.008);
  CHECK(good.outputs == good_untimed.outputs);
  MESSAGE("all accepted: " << good.num_steps << " steps with the rule, " << good_untimed.num_steps << " without");
  CHECK(good.num_steps <= good_untimed.num_steps + 3);
}

TEST_CASE("speculation: random workloads on the real block manager keep its invariants and the plain outputs") {
  std::mt19937 rng(20261203);
  int64_t num_accepted = 0, num_rejected = 0;
  for (int round = 0; round < 30; ++round) {
    CAPTURE(round);
    const int32_t period = 2 + static_cast<int32_t>(rng() % 6);
    const uint32_t deviation = 2 + rng() % 9;
    const auto rule = cyclic_rule(period, [deviation](uint64_t i) { return i % deviation == deviation - 1; });
    std::vector<sequence_request> reqs;
    const int num_requests = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < num_requests; ++i) {
      auto r = periodic_request(static_cast<uint64_t>(i + 1), period, 4 + static_cast<int32_t>(rng() % 30),
                                1 + static_cast<int32_t>(rng() % 50));
      if (i % 2 == 1) r.prompt_tokens = reqs[0].prompt_tokens;  // shared prefixes: prefix-cache hits
      if (rng() % 4 == 0) r.speculative = speculative_method::off;
      reqs.push_back(std::move(r));
    }
    const int32_t block_size = (rng() % 2) ? 4 : 8;
    auto c = spec_config(speculative_method::ngram, 64 + static_cast<int32_t>(rng() % 64));
    c.num_speculative_tokens = 1 + static_cast<int32_t>(rng() % 6);
    c.ngram_min = 1 + static_cast<int32_t>(rng() % 2);
    c.ngram_max = c.ngram_min + static_cast<int32_t>(rng() % 3);
    c.max_num_seqs = 6;
    // A pool that is sometimes tight: proposals are dropped before anything is preempted.
    const int32_t num_blocks = 24 + static_cast<int32_t>(rng() % 40);
    block_manager plain_kv({num_blocks, block_size, 0, true});
    const auto plain = run(plain_kv, spec_config(speculative_method::off, c.max_num_batched_tokens), reqs, rule,
                           num_blocks, block_size);
    block_manager kv({num_blocks, block_size, 0, true});
    const auto spec = run(kv, c, reqs, rule, num_blocks, block_size, [&] { kv.check_invariants(); });
    CHECK(spec.outputs == plain.outputs);
    CHECK(spec.finished == plain.finished);
    CHECK(kv.stats().num_used_blocks == 0);
    num_accepted += spec.stats.num_accepted_tokens;
    num_rejected += spec.stats.num_draft_tokens - spec.stats.num_accepted_tokens;
  }
  MESSAGE("proposals accepted " << num_accepted << ", rejected " << num_rejected);
  CHECK(num_accepted > 100);
  CHECK(num_rejected > 100);
}

TEST_CASE("speculation: draft-model slots on the real block manager keep its invariants and the plain outputs") {
  // The scheduler reserves slots (draft_slot) and the worker's draft fills them: here a
  // draft that follows the cycle but misses the model's deviations, and deviates itself
  // where the model does not, so runs end in rejections at every proposal position.
  std::mt19937 rng(20261204);
  int64_t num_accepted = 0, num_rejected = 0;
  for (int round = 0; round < 30; ++round) {
    CAPTURE(round);
    const int32_t period = 2 + static_cast<int32_t>(rng() % 6);
    const uint32_t deviation = 2 + rng() % 9;
    const uint32_t draft_deviation = 3 + rng() % 7;
    const auto rule = cyclic_rule(period, [deviation](uint64_t i) { return i % deviation == deviation - 1; });
    const auto draft_rule = cyclic_rule(period, [draft_deviation](uint64_t i) { return i % draft_deviation == 1; });
    std::vector<sequence_request> reqs;
    const int num_requests = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < num_requests; ++i) {
      auto r = periodic_request(static_cast<uint64_t>(i + 1), period, 4 + static_cast<int32_t>(rng() % 30),
                                1 + static_cast<int32_t>(rng() % 50));
      if (i % 2 == 1) r.prompt_tokens = reqs[0].prompt_tokens;  // shared prefixes: prefix-cache hits
      if (rng() % 4 == 0) r.speculative = rng() % 2 ? speculative_method::off : speculative_method::ngram;
      reqs.push_back(std::move(r));
    }
    const int32_t block_size = (rng() % 2) ? 4 : 8;
    auto c = spec_config(speculative_method::draft, 64 + static_cast<int32_t>(rng() % 64));
    c.has_draft_model = true;
    c.num_speculative_tokens = 1 + static_cast<int32_t>(rng() % 6);
    c.max_num_seqs = 6;
    const int32_t num_blocks = 24 + static_cast<int32_t>(rng() % 40);
    block_manager plain_kv({num_blocks, block_size, 0, true});
    const auto plain = run(plain_kv, spec_config(speculative_method::off, c.max_num_batched_tokens), reqs, rule,
                           num_blocks, block_size);
    block_manager kv({num_blocks, block_size, 0, true});
    const auto spec = run(kv, c, reqs, rule, num_blocks, block_size, [&] { kv.check_invariants(); }, draft_rule);
    CHECK(spec.outputs == plain.outputs);
    CHECK(spec.finished == plain.finished);
    CHECK(kv.stats().num_used_blocks == 0);
    num_accepted += spec.stats.num_accepted_tokens;
    num_rejected += spec.stats.num_draft_tokens - spec.stats.num_accepted_tokens;
  }
  MESSAGE("proposals accepted " << num_accepted << ", rejected " << num_rejected);
  CHECK(num_accepted > 100);
  CHECK(num_rejected > 100);
}

TEST_CASE("speculation: a draft model that fills fewer slots than were reserved (it stops where unsure)") {
  // The draft stops at some output indices: the unfilled slots are not fed, their positions
  // are rolled back like rejected ones, the counters count only the proposals made, and
  // with draft_min_confidence set every step reserves all num_speculative_tokens slots.
  std::mt19937 rng(20261205);
  int64_t num_made = 0, num_stops = 0;
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    const int32_t period = 2 + static_cast<int32_t>(rng() % 5);
    const uint32_t deviation = 3 + rng() % 9;
    const uint32_t stop_every = 2 + rng() % 5;
    const auto rule = cyclic_rule(period, [deviation](uint64_t i) { return i % deviation == deviation - 1; });
    const auto follow = cyclic_rule(period, [](uint64_t) { return false; });
    simulated_worker::next_token_rule draft_rule = [&, follow, stop_every](const std::vector<int32_t>& context,
                                                                            uint64_t seed, uint64_t index) {
      if (index % stop_every == 0) {
        ++num_stops;
        return simulated_worker::draft_stops;
      }
      ++num_made;
      return follow(context, seed, index);
    };
    std::vector<sequence_request> reqs;
    const int num_requests = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < num_requests; ++i) {
      reqs.push_back(periodic_request(static_cast<uint64_t>(i + 1), period, 4 + static_cast<int32_t>(rng() % 20),
                                      5 + static_cast<int32_t>(rng() % 40)));
    }
    const int32_t block_size = 4;
    auto c = spec_config(speculative_method::draft);
    c.has_draft_model = true;
    c.draft_min_confidence = 0.5;
    c.num_speculative_tokens = 2 + static_cast<int32_t>(rng() % 5);
    const int32_t num_blocks = 64;
    block_manager plain_kv({num_blocks, block_size, 0, true});
    const auto plain = run(plain_kv, spec_config(speculative_method::off), reqs, rule, num_blocks, block_size);
    block_manager kv({num_blocks, block_size, 0, true});
    const int64_t made_before = num_made;
    const auto spec = run(kv, c, reqs, rule, num_blocks, block_size, [&] { kv.check_invariants(); }, draft_rule);
    CHECK(spec.outputs == plain.outputs);
    CHECK(spec.finished == plain.finished);
    CHECK(kv.stats().num_used_blocks == 0);
    CHECK(spec.stats.num_draft_tokens == num_made - made_before);
    CHECK(spec.stats.num_accepted_tokens <= spec.stats.num_draft_tokens);
  }
  MESSAGE(num_made << " proposals made, " << num_stops << " runs stopped early");
  CHECK(num_made > 100);
  CHECK(num_stops > 50);
}

TEST_CASE("speculation: a request asking for draft proposals where no draft model is loaded decodes plainly") {
  const auto rule = cyclic_rule(3, [](uint64_t) { return false; });
  std::vector<sequence_request> reqs = {periodic_request(1, 3, 12, 20)};
  reqs[0].speculative = speculative_method::draft;
  const auto plain = run_fake(spec_config(speculative_method::off), reqs, rule);
  auto c = spec_config(speculative_method::ngram);
  const auto got = run_fake(c, reqs, rule);
  CHECK(got.outputs == plain.outputs);
  CHECK(got.stats.num_draft_tokens == 0);
  // With one, the same request's slots are filled and verified.
  c.has_draft_model = true;
  fake_kv_space kv(256, 4);
  const auto drafted = run(kv, c, reqs, rule, 256, 4, {}, rule);
  CHECK(drafted.outputs == plain.outputs);
  CHECK(drafted.stats.num_accepted_tokens > 0);
  CHECK(drafted.num_steps < plain.num_steps);
}

// Sequences that may speculate join the steady decode lane while the batch is past
// speculative_max_batch (they could not propose there) and are planned one by one again as
// soon as it is not. Arrivals, finishes and aborts move the batch across the limit both
// ways; the lane on and off must plan the same steps (every sequence's position, tokens fed,
// proposals included, and who was preempted) and give the same tokens. Synchronous and
// asynchronous (a step planned ahead while one runs).
TEST_CASE("speculation: the steady lane plans exactly the steps of planning one by one as the batch crosses the limit") {
  struct lane_run {
    std::vector<std::string> trace;
    std::map<uint64_t, std::vector<int32_t>> outputs;
    scheduler_stats stats;
  };
  std::mt19937 rng(20261205);
  int64_t num_steady = 0, num_drafts = 0, num_scheduled = 0, num_steady_all_speculating = 0, num_preemptions = 0;
  for (int round = 0; round < 24; ++round) {
    CAPTURE(round);
    const bool is_async = round % 2 == 1;
    const int32_t period = 2 + static_cast<int32_t>(rng() % 5);
    const uint32_t deviation = 3 + rng() % 8;
    const auto rule = cyclic_rule(period, [deviation](uint64_t i) { return i % deviation == deviation - 1; });
    const int num_requests = 6 + static_cast<int>(rng() % 10);
    std::vector<sequence_request> reqs;
    std::vector<int> arrival;  // the loop iteration each request arrives at
    for (int i = 0; i < num_requests; ++i) {
      auto r = periodic_request(static_cast<uint64_t>(i + 1), period, 2 + static_cast<int32_t>(rng() % 20),
                                4 + static_cast<int32_t>(rng() % 60));
      if (round % 3 == 2 && rng() % 4 == 0) r.speculative = speculative_method::off;
      reqs.push_back(std::move(r));
      arrival.push_back(i < 4 ? 0 : static_cast<int>(rng() % 80));
    }
    std::vector<std::pair<int, uint64_t>> aborts;  // (iteration, id)
    for (int i = 0; i < 2; ++i) aborts.emplace_back(static_cast<int>(rng() % 60), 1 + rng() % num_requests);
    const int32_t block_size = (rng() % 2) ? 4 : 8;
    auto c = spec_config(speculative_method::ngram, 64 + static_cast<int32_t>(rng() % 64));
    c.num_speculative_tokens = 1 + static_cast<int32_t>(rng() % 5);
    c.speculative_max_batch = 1 + static_cast<int32_t>(rng() % 3);
    c.max_num_seqs = 8;
    c.attention_cost = round % 4 < 2 ? 0.0 : 40.0;
    // Some pools are tight: blocks for new positions run short, proposals are dropped and
    // sequences preempted.
    const int32_t num_blocks = (rng() % 2 ? 24 : 200) * 4 / block_size;

    auto run_lane = [&](const scheduler_config& config) {
      fake_kv_space kv(num_blocks, block_size);
      scheduler_policy sched(config, kv, {eog_token});
      simulated_worker worker(num_blocks, block_size, 0);
      worker.set_rule(rule);
      lane_run out;
      std::vector<scheduled_step> sent;
      size_t num_added = 0;
      for (int it = 0; num_added < reqs.size() || sched.has_unfinished() || !sent.empty(); ++it) {
        REQUIRE(it < 20000);
        for (size_t i = 0; i < reqs.size(); ++i) {
          if (arrival[i] == it) {
            sched.add(reqs[i], 0);
            ++num_added;
          }
        }
        for (const auto& [at, id] : aborts) {
          if (at == it) sched.abort(id);
        }
        if (sent.empty()) {
          auto s = sched.schedule(0);
          if (!s.is_empty()) sent.push_back(std::move(s));
        }
        if (is_async && sent.size() == 1) {
          auto s = sched.schedule_ahead(0);
          if (!s.is_empty()) sent.push_back(std::move(s));
        }
        if (sent.empty()) continue;
        const auto result = worker.run(sent.front());
        std::vector<std::string> parts;
        for (const auto& q : worker.last_plan().sequences) {
          std::ostringstream p;
          p << q.seq_id << "@" << q.start_pos << (q.wants_sample ? "s" : "") << ":";
          for (const int32_t t : q.tokens) p << t << ",";
          p << "d" << q.num_draft_tokens;
          parts.push_back(p.str());
        }
        std::sort(parts.begin(), parts.end());
        std::ostringstream step;
        for (const auto& p : parts) step << p << " ";
        auto preempted = sent.front().preempted;
        std::sort(preempted.begin(), preempted.end());
        step << "| preempted";
        for (const uint64_t id : preempted) step << " " << id;
        out.trace.push_back(step.str());
        sent.erase(sent.begin());
        for (const auto& e : sched.on_step_done(result)) out.outputs[e.seq_id].push_back(e.token);
      }
      CHECK(kv.is_all_free());
      out.stats = sched.stats();
      return out;
    };
    auto one_by_one_config = c;
    one_by_one_config.steady_decodes = false;
    const auto one_by_one = run_lane(one_by_one_config);
    const auto lane = run_lane(c);
    CHECK(one_by_one.stats.num_steady_tokens == 0);
    for (size_t i = 0; i < std::min(lane.trace.size(), one_by_one.trace.size()); ++i) {
      CAPTURE(i);
      REQUIRE(lane.trace[i] == one_by_one.trace[i]);
    }
    CHECK(lane.trace.size() == one_by_one.trace.size());
    CHECK(lane.outputs == one_by_one.outputs);
    CHECK(lane.stats.num_draft_tokens == one_by_one.stats.num_draft_tokens);
    CHECK(lane.stats.num_accepted_tokens == one_by_one.stats.num_accepted_tokens);
    CHECK(lane.stats.num_preemptions == one_by_one.stats.num_preemptions);
    num_preemptions += lane.stats.num_preemptions;
    num_steady += lane.stats.num_steady_tokens;
    num_drafts += lane.stats.num_draft_tokens;
    num_scheduled += lane.stats.num_scheduled_tokens;
    // Where every sequence may speculate, what went through the lane were sequences that may.
    if (round % 3 != 2) num_steady_all_speculating += lane.stats.num_steady_tokens;
  }
  MESSAGE("lane tokens " << num_steady << " (" << num_steady_all_speculating << " where all may speculate), proposals "
                         << num_drafts << ", scheduled " << num_scheduled << ", preemptions " << num_preemptions);
  CHECK(num_steady_all_speculating * 10 > num_scheduled);
  CHECK(num_preemptions > 0);
  CHECK(num_drafts * 20 > num_scheduled);
}
