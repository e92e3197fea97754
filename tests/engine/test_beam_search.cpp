// Beam search: the selection rule (beam_search_state) on hand-made distributions, and beam
// groups in the scheduler against the same rule run directly on the stand-in model's
// distributions, alone and beside plain sequences, with preemption (recompute and swap)
// forcing forks of beams that are not resident and re-feeding beams that wait for a round.
#include <doctest/doctest.h>

#include <map>
#include <random>

#include "engine/simulated_worker.hpp"
#include "troupe/engine/beam_search.hpp"
#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/scheduler_policy.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using troupe::test::simulated_worker;

namespace {

constexpr int32_t eog_token = 2;

bool is_eog(int32_t t) { return t == eog_token; }

struct hand_beam {
  std::vector<int32_t> output;
  std::vector<float> logprobs;
  double cumulative = 0.0;
  std::vector<token_logprob> next;
  live_beam view() const { return {&output, &logprobs, cumulative, &next}; }
};

// The search run directly on the stand-in model: what a beam group must return.
std::vector<beam_hypothesis> direct_search(const std::vector<int32_t>& prompt, beam_search_params p, int32_t min_tokens,
                                           int32_t max_output) {
  beam_search_state search(p, min_tokens);
  std::vector<hand_beam> beams(1);
  while (true) {
    std::vector<live_beam> views;
    for (auto& b : beams) {
      std::vector<int32_t> context = prompt;
      context.insert(context.end(), b.output.begin(), b.output.end());
      b.next = simulated_worker::next_distribution(context, 2 * p.width);
      views.push_back(b.view());
    }
    const auto next = search.advance(views, max_output, is_eog);
    if (search.is_done()) return search.hypotheses();
    std::vector<hand_beam> grown;
    for (const auto& n : next) {
      hand_beam g = beams[static_cast<size_t>(n.parent)];
      g.output.push_back(n.token);
      g.logprobs.push_back(n.logprob);
      g.cumulative = n.cumulative_logprob;
      grown.push_back(std::move(g));
    }
    beams = std::move(grown);
  }
}

sequence_request beam_request(uint64_t id, int32_t width, int32_t num_prompt_tokens, int32_t max_tokens,
                              float length_penalty = 1.0f, bool early_stopping = false) {
  sequence_request r;
  r.id = id;
  for (int32_t i = 0; i < num_prompt_tokens; ++i) r.prompt_tokens.push_back(100 + static_cast<int32_t>((id * 37 + i * 11) % 600));
  r.params.max_tokens = max_tokens;
  r.beam = {width, length_penalty, early_stopping};
  for (int32_t i = 1; i < width; ++i) r.fork_ids.push_back(id + static_cast<uint64_t>(i));
  return r;
}

}  // namespace

TEST_CASE("beam search rule: stop tokens among the first w end hypotheses, the rest continue") {
  beam_search_state s({2, 1.0f, false}, 0);
  hand_beam a;
  a.next = {{2, -0.1f}, {50, -0.2f}, {51, -3.0f}, {52, -4.0f}};
  auto next = s.advance({a.view()}, 10, is_eog);
  REQUIRE(next.size() == 2);  // 50 and 51 continue; the end token ended a hypothesis
  CHECK(next[0].token == 50);
  CHECK(next[1].token == 51);
  REQUIRE(s.hypotheses().size() == 1);
  CHECK(s.hypotheses()[0].tokens == std::vector<int32_t>{2});
  CHECK(s.hypotheses()[0].score == doctest::Approx(-0.1));
  CHECK_FALSE(s.is_done());

  // An end token ranked past w is not a hypothesis; with min_tokens none is.
  beam_search_state late({1, 1.0f, false}, 0);
  hand_beam b;
  b.next = {{60, -0.1f}, {2, -0.2f}};
  CHECK(late.advance({b.view()}, 10, is_eog).size() == 1);
  CHECK(late.hypotheses().empty());
  beam_search_state early_end({2, 1.0f, false}, 3);
  hand_beam c;
  c.next = {{2, -0.1f}, {70, -0.5f}, {71, -0.6f}, {72, -0.7f}};
  CHECK(early_end.advance({c.view()}, 10, is_eog).size() == 2);
  CHECK(early_end.hypotheses().empty());
}

TEST_CASE("beam search rule: length ends every beam, scores divide by length^penalty, early stopping") {
  beam_search_state s({2, 2.0f, false}, 0);
  hand_beam a;
  a.output = {5, 6};
  a.logprobs = {-1.0f, -1.0f};
  a.cumulative = -2.0;
  a.next = {{7, -1.0f}, {8, -2.0f}, {9, -3.0f}, {10, -4.0f}};
  CHECK(s.advance({a.view()}, 3, is_eog).empty());
  CHECK(s.is_done());
  REQUIRE(s.hypotheses().size() == 2);
  CHECK(s.hypotheses()[0].tokens == std::vector<int32_t>{5, 6, 7});
  CHECK(s.hypotheses()[0].reason == finish_reason::length);
  CHECK(s.hypotheses()[0].score == doctest::Approx(-3.0 / 9.0));
  CHECK(s.hypotheses()[1].score == doctest::Approx(-4.0 / 9.0));

  // Early stopping ends the search once w hypotheses have ended; without it the search
  // goes on while the best live beam scores above the worst hypothesis.
  for (const bool early : {true, false}) {
    CAPTURE(early);
    beam_search_state e({2, 1.0f, early}, 0);
    hand_beam x;
    x.next = {{2, -0.1f}, {40, -0.25f}, {41, -5.0f}, {45, -6.0f}};
    hand_beam y;
    y.next = {{2, -0.3f}, {42, -0.35f}, {43, -6.0f}, {44, -7.0f}};
    // Ranked: x:2 (-0.1) ends, x:40 (-0.25) continues, y:2 (-0.3) ranks past w, y:42 continues.
    auto next = e.advance({x.view(), y.view()}, 10, is_eog);
    CHECK(e.hypotheses().size() == 1);
    CHECK_FALSE(e.is_done());
    REQUIRE(next.size() == 2);
    hand_beam x40;
    x40.output = {40};
    x40.logprobs = {-0.25f};
    x40.cumulative = -0.25;
    x40.next = {{46, -0.25f}, {2, -0.65f}, {47, -4.0f}, {48, -4.5f}};
    hand_beam y42;
    y42.output = {42};
    y42.logprobs = {-0.35f};
    y42.cumulative = -0.35;
    y42.next = {{49, -0.65f}, {50, -4.0f}, {51, -5.0f}, {52, -6.0f}};
    // Ranked: x40+46 (-0.5) continues, x40+2 (-0.9) ends scoring -0.45, y42+49 (-1.0)
    // continues. Two hypotheses now; the best live beam scores -0.5 / 2 = -0.25 > -0.45.
    next = e.advance({x40.view(), y42.view()}, 10, is_eog);
    CHECK(e.hypotheses().size() == 2);
    CHECK(e.hypotheses()[1].score == doctest::Approx(-0.45));
    CHECK(e.is_done() == early);
    CHECK(next.size() == (early ? 0u : 2u));
  }
}

TEST_CASE("beam groups in the scheduler return what the rule returns run directly, beside plain sequences") {
  struct setup {
    int32_t num_blocks;
    preemption_mode mode;
    int32_t num_swap_blocks;
  };
  for (const auto& [num_blocks, mode, num_swap_blocks] :
       {setup{400, preemption_mode::recompute, 0}, setup{40, preemption_mode::recompute, 0},
        setup{40, preemption_mode::swap, 40}}) {
    CAPTURE(num_blocks);
    CAPTURE(static_cast<int>(mode));
    scheduler_config c;
    c.max_num_seqs = 16;
    c.max_num_batched_tokens = 64;
    c.max_model_len = 256;
    c.ageing_ms = 0;
    c.preemption = mode;
    block_manager kv({.num_blocks = num_blocks, .block_size = 4, .num_swap_blocks = num_swap_blocks,
                      .enable_prefix_caching = true});
    scheduler_policy sched(c, kv, {eog_token});
    simulated_worker worker(num_blocks, 4, num_swap_blocks);
    std::vector<sequence_request> groups = {beam_request(1, 4, 9, 14), beam_request(10, 2, 21, 20, 0.5f, true),
                                            beam_request(20, 3, 5, 30, 1.5f)};
    for (const auto& g : groups) sched.add(g, 0);
    std::vector<sequence_request> plain;
    for (uint64_t id = 40; id < 44; ++id) {
      sequence_request r;
      r.id = id;
      for (int32_t i = 0; i < 15; ++i) r.prompt_tokens.push_back(200 + static_cast<int32_t>(id) + i);
      r.params.max_tokens = 25;
      r.params.seed = id;
      plain.push_back(r);
      sched.add(r, 0);
    }
    std::map<uint64_t, std::vector<beam_hypothesis>> results;
    std::map<uint64_t, std::vector<int32_t>> outputs;
    for (int step = 0; sched.has_unfinished(); ++step) {
      REQUIRE(step < 5000);
      auto s = sched.schedule(0);
      REQUIRE_FALSE(s.is_empty());
      CHECK(sched.stats().num_running <= c.max_num_seqs);
      if (results.size() < groups.size()) CHECK(sched.schedule_ahead(0).is_empty());  // not beside beams
      for (const auto& e : sched.on_step_done(worker.run(s))) {
        if (!e.beams.empty()) {
          CHECK(e.state == sequence_state::finished);
          results[e.seq_id] = e.beams;
        } else {
          outputs[e.seq_id].push_back(e.token);
        }
      }
      kv.check_invariants();
    }
    if (num_blocks == 40) CHECK(sched.stats().num_preemptions > 0);
    for (const auto& g : groups) {
      CAPTURE(g.id);
      REQUIRE(results.count(g.id) == 1);
      const auto expected =
          direct_search(g.prompt_tokens, g.beam, 0, std::min(g.params.max_tokens, sched.max_sequence_tokens() -
                                                                                       static_cast<int32_t>(g.prompt_tokens.size())));
      REQUIRE(results[g.id].size() == expected.size());
      for (size_t i = 0; i < expected.size(); ++i) {
        CAPTURE(i);
        CHECK(results[g.id][i].tokens == expected[i].tokens);
        CHECK(results[g.id][i].score == doctest::Approx(expected[i].score));
      }
      for (uint64_t id : g.fork_ids) CHECK(outputs.count(id) == 0);  // beams send no tokens
    }
    for (const auto& r : plain) CHECK(outputs.at(r.id) == test::run_alone(r, sched.max_sequence_tokens()));
    CHECK(kv.stats().num_used_blocks == 0);
    CHECK(kv.stats().num_used_swap_blocks == 0);
  }
}

TEST_CASE("beam groups: any of the group's ids cancels the search; bad widths are refused") {
  scheduler_config c;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 64;
  c.max_model_len = 256;
  block_manager kv({.num_blocks = 100, .block_size = 4, .num_swap_blocks = 0, .enable_prefix_caching = true});
  scheduler_policy sched(c, kv, {eog_token});
  simulated_worker worker(100, 4, 0);
  sched.add(beam_request(1, 3, 10, 40), 0);
  for (int i = 0; i < 4; ++i) sched.on_step_done(worker.run(sched.schedule(0)));
  CHECK(sched.abort(3));  // an id a beam may or may not hold right now
  CHECK_FALSE(sched.has_unfinished());
  CHECK(kv.stats().num_used_blocks == 0);
  CHECK_FALSE(sched.abort(1));
  auto wide = beam_request(50, max_beam_width + 1, 4, 4);
  CHECK_THROWS_AS(sched.add(wide, 0), error);
  auto short_ids = beam_request(70, 3, 4, 4);
  short_ids.fork_ids.pop_back();
  CHECK_THROWS_AS(sched.add(short_ids, 0), error);
  CHECK_THROWS_AS(sched.add(beam_request(80, 9, 4, 4), 0), error);  // wider than max_num_seqs
}
