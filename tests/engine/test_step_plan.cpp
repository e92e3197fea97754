// plan_state: the worker's side of step deltas. A decode_next continues a sequence with
// the token the worker sampled for it, one position on, its table grown and its sample
// index and penalty window advanced; a stop token drops it from the next step; held
// sequences that sit a step out are kept; a failed step forgets what it named.
#include <doctest/doctest.h>

#include "troupe/engine/step_plan.hpp"
#include "troupe/grammar/compile.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/tokenizer.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

constexpr int32_t eog = 2;

sequence_step whole(uint64_t id, std::vector<int32_t> tokens, int32_t start_pos, std::vector<int32_t> table) {
  sequence_step s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start_pos;
  s.block_table = std::move(table);
  s.sample_index = 0;
  return s;
}

// The result a backend would give: token `t` for every sampling sequence, in plan order.
step_result answer(const batch_plan& plan, int32_t t) {
  step_result r;
  for (const auto& s : plan.sequences) r.outputs.push_back({s.seq_id, s.wants_sample ? t : -1});
  return r;
}

std::vector<uint64_t> ids(const batch_plan& plan) {
  std::vector<uint64_t> out;
  for (const auto& s : plan.sequences) out.push_back(s.seq_id);
  return out;
}

}  // namespace

TEST_CASE("a decode_next feeds the last sample one position on, with the new block") {
  plan_state st({eog});
  step_delta d;
  d.full = {whole(1, {5, 6, 7}, 0, {10})};
  const auto& first = st.apply(std::move(d));
  REQUIRE(first.sequences.size() == 1);
  st.on_result(answer(first, 42));

  step_delta n;
  n.next = {{1, 3, -1}};
  const auto& second = st.apply(std::move(n));
  REQUIRE(second.sequences.size() == 1);
  CHECK(second.sequences[0].tokens == std::vector<int32_t>{42});
  CHECK(second.sequences[0].start_pos == 3);
  CHECK(second.sequences[0].sample_index == 1);
  CHECK(second.sequences[0].block_table == std::vector<int32_t>{10});
  st.on_result(answer(second, 43));

  step_delta m;
  m.next = {{1, 4, 11}};
  const auto& third = st.apply(std::move(m));
  CHECK(third.sequences[0].tokens == std::vector<int32_t>{43});
  CHECK(third.sequences[0].block_table == std::vector<int32_t>{10, 11});
  CHECK(third.sequences[0].sample_index == 2);
}

TEST_CASE("the penalty window slides by the sampled tokens, prompt tokens leaving first") {
  plan_state st({eog});
  auto s = whole(1, {5, 6, 7}, 0, {10});
  s.params.repetition_penalty = 1.2f;
  s.params.penalty_last_n = 3;
  s.penalty_tokens = {5, 6, 7};
  s.num_prompt_penalty_tokens = 3;
  step_delta d;
  d.full = {s};
  st.on_result(answer(st.apply(std::move(d)), 40));
  step_delta n;
  n.next = {{1, 3, -1}};
  const auto& plan = st.apply(std::move(n));
  CHECK(plan.sequences[0].penalty_tokens == std::vector<int32_t>{6, 7, 40});
  CHECK(plan.sequences[0].num_prompt_penalty_tokens == 2);
}

TEST_CASE("a continuation that does not fit what the worker holds is refused, and nothing changes") {
  plan_state st({eog});
  step_delta d;
  d.full = {whole(1, {5, 6}, 0, {10}), whole(2, {8}, 0, {11})};
  const auto& first = st.apply(std::move(d));
  st.on_result(answer(first, 30));
  auto code_of = [&](step_delta x) {
    try {
      st.apply(std::move(x));
    } catch (const error& e) {
      return e.code();
    }
    return error_code::internal;
  };
  step_delta unknown;
  unknown.next = {{1, 2, -1}, {9, 0, -1}};
  CHECK(code_of(unknown) == error_code::bad_plan);
  step_delta wrong_pos;
  wrong_pos.next = {{1, 5, -1}};
  CHECK(code_of(wrong_pos) == error_code::bad_plan);
  // Both still continue from where they were.
  step_delta ok;
  ok.next = {{1, 2, -1}, {2, 1, -1}};
  const auto& plan = st.apply(std::move(ok));
  CHECK(plan.sequences.size() == 2);
  for (const auto& s : plan.sequences) CHECK(s.tokens == std::vector<int32_t>{30});
}

TEST_CASE("a stop token drops the sequence from the step planned behind it") {
  plan_state st({eog});
  step_delta d;
  d.full = {whole(1, {5}, 0, {10}), whole(2, {6}, 0, {11})};
  auto stops = whole(3, {7}, 0, {12});
  stops.params.stop_token_ids = {77};
  d.full.push_back(stops);
  const auto& first = st.apply(std::move(d));
  step_result r;
  for (const auto& s : first.sequences) r.outputs.push_back({s.seq_id, s.seq_id == 1 ? eog : 77});
  st.on_result(r);
  // 1 sampled an end-of-generation token, 3 its own stop token; 2 sampled 77, not a stop for it.
  step_delta ahead;
  ahead.next = {{1, 1, -1}, {2, 1, -1}, {3, 1, -1}};
  ahead.is_planned_ahead = true;
  const auto& plan = st.apply(std::move(ahead));
  CHECK(ids(plan) == std::vector<uint64_t>{2});
  // The scheduler's forget for them later is harmless.
  st.on_result(answer(plan, 50));
  step_delta later;
  later.forget = {1, 3};
  later.next = {{2, 2, -1}};
  CHECK(st.apply(std::move(later)).sequences.size() == 1);
  CHECK(st.num_sequences() == 1);
}

TEST_CASE("ignore_eos keeps a sequence going past an end-of-generation token") {
  plan_state st({eog});
  auto s = whole(1, {5}, 0, {10});
  s.params.ignore_eos = true;
  step_delta d;
  d.full = {s};
  st.on_result(answer(st.apply(std::move(d)), eog));
  step_delta n;
  n.next = {{1, 1, -1}};
  CHECK(st.apply(std::move(n)).sequences.size() == 1);
}

TEST_CASE("a sequence that sits a step out keeps its state for the next") {
  plan_state st({eog});
  step_delta d;
  d.full = {whole(1, {5}, 0, {10}), whole(2, {6}, 0, {11})};
  st.on_result(answer(st.apply(std::move(d)), 20));
  step_delta only_two;
  only_two.next = {{2, 1, -1}};
  const auto& plan = st.apply(std::move(only_two));
  CHECK(ids(plan) == std::vector<uint64_t>{2});
  st.on_result(answer(plan, 21));
  step_delta both;
  both.next = {{1, 1, -1}, {2, 2, -1}};
  const auto& next = st.apply(std::move(both));
  REQUIRE(next.sequences.size() == 2);
  for (const auto& s : next.sequences) CHECK(s.tokens == std::vector<int32_t>{s.seq_id == 1 ? 20 : 21});
}

TEST_CASE("a failed step forgets the sequences it named and keeps the others") {
  plan_state st({eog});
  step_delta d;
  d.full = {whole(1, {5}, 0, {10}), whole(2, {6}, 0, {11})};
  st.on_result(answer(st.apply(std::move(d)), 20));
  step_delta failing;
  failing.next = {{1, 1, -1}};
  st.apply(std::move(failing));
  step_delta named;
  named.next = {{1, 1, -1}};
  st.fail(named);
  CHECK(st.num_sequences() == 1);
  // A continuation of the failed one is dropped; the other carries on.
  step_delta after;
  after.next = {{1, 2, -1}, {2, 1, -1}};
  CHECK(ids(st.apply(std::move(after))) == std::vector<uint64_t>{2});
}

TEST_CASE("a whole entry replaces what the worker held, and a forget drops it") {
  plan_state st({eog});
  step_delta d;
  d.full = {whole(1, {5, 6, 7, 8}, 0, {10})};  // a first chunk
  d.full[0].wants_sample = false;
  st.on_result(answer(st.apply(std::move(d)), -1));
  step_delta chunk;
  chunk.full = {whole(1, {9}, 4, {10, 11})};
  const auto& plan = st.apply(std::move(chunk));
  CHECK(plan.sequences[0].start_pos == 4);
  st.on_result(answer(plan, 33));
  step_delta gone;
  gone.forget = {1};
  CHECK(st.apply(std::move(gone)).sequences.empty());
  CHECK(st.num_sequences() == 0);
  step_delta stale;
  stale.next = {{1, 5, -1}};
  CHECK_THROWS_AS(st.apply(std::move(stale)), error);
}

TEST_CASE("a delta's prefill tokens: every token of a whole entry except a sampled decode's (proposals included)") {
  step_delta d;
  d.full.push_back(whole(1, {5, 6, 7, 8}, 0, {0}));  // a prompt
  auto chunk = whole(2, {5, 6, 7}, 0, {1});
  chunk.wants_sample = false;                        // a non-final prompt chunk
  d.full.push_back(chunk);
  d.full.push_back(whole(3, {9}, 12, {2}));          // a decode new to the worker
  d.next.push_back({4, 20, -1});                     // a decode continuing
  CHECK(d.num_tokens() == 9);
  CHECK(d.num_prefill_tokens() == 7);
  auto speculative = whole(5, {9, 10, 11}, 30, {3, 4, 5});
  speculative.num_draft_tokens = 2;                  // a decode with two proposals
  d.full.push_back(speculative);
  CHECK(d.num_tokens() == 12);
  CHECK(d.num_prefill_tokens() == 7);
}

namespace {

int32_t byte_token(unsigned char b) { return 3 + b; }  // the tiny model's byte tokens

bool allows(const sequence_step& s, int32_t token) {
  REQUIRE(s.allowed_tokens != nullptr);
  return ((*s.allowed_tokens)[static_cast<size_t>(token) >> 6] >> (token & 63)) & 1;
}

std::shared_ptr<const grammar_masks> yes_or_no() {
  static const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  static const tokenizer tok = tokenizer::from_gguf(file);
  static grammar_cache cache(token_trie::from_tokenizer(tok));
  return cache.get({grammar_kind::choice, {}, {"yes", "no"}});
}

}  // namespace

TEST_CASE("a constrained sequence carries its grammar's mask, which follows its samples and a whole step's output") {
  plan_state st({eog});
  step_delta d;
  d.full = {whole(1, {5, 6, 7}, 0, {10}), whole(2, {5, 6}, 0, {11})};
  d.full[0].params.grammar = yes_or_no();
  const auto& first = st.apply(std::move(d));
  REQUIRE(first.sequences.size() == 2);
  CHECK(allows(first.sequences[0], byte_token('y')));
  CHECK(allows(first.sequences[0], byte_token('n')));
  CHECK_FALSE(allows(first.sequences[0], byte_token('e')));
  CHECK_FALSE(allows(first.sequences[0], eog));  // nothing is complete yet
  CHECK(first.sequences[1].allowed_tokens == nullptr);  // unconstrained
  st.on_result(answer(first, byte_token('y')));

  step_delta n;
  n.next = {{1, 3, -1}};
  const auto& second = st.apply(std::move(n));
  CHECK(allows(second.sequences[0], byte_token('e')));
  CHECK_FALSE(allows(second.sequences[0], byte_token('y')));
  CHECK_FALSE(allows(second.sequences[0], byte_token('o')));

  // A whole step (after a preemption, say) brings the matcher to the output it names.
  step_delta again;
  again.full = {whole(1, {5, 6, 7, byte_token('y'), byte_token('e')}, 0, {10, 12})};
  again.full[0].params.grammar = yes_or_no();
  again.full[0].output_tokens = {byte_token('y'), byte_token('e')};
  const auto& third = st.apply(std::move(again));
  CHECK(allows(third.sequences[0], byte_token('s')));
  CHECK_FALSE(allows(third.sequences[0], byte_token('e')));
  st.on_result(answer(third, byte_token('s')));
  step_delta last;
  last.next = {{1, 5, -1}};
  const auto& fourth = st.apply(std::move(last));
  CHECK(allows(fourth.sequences[0], eog));  // "yes" is complete: only the end may follow
  CHECK_FALSE(allows(fourth.sequences[0], byte_token('s')));

  // An output the grammar cannot have produced is a bad plan.
  step_delta bad;
  bad.full = {whole(3, {5}, 0, {13})};
  bad.full[0].params.grammar = yes_or_no();
  bad.full[0].output_tokens = {byte_token('x')};
  CHECK_THROWS_AS(st.apply(std::move(bad)), error);
}

TEST_CASE("an end token ends a constrained sequence under ignore_eos too") {
  sampling_params plain;
  plain.ignore_eos = true;
  CHECK_FALSE(is_stop_token(plain, std::vector<int32_t>{eog}, eog));
  sampling_params constrained = plain;
  constrained.grammar = yes_or_no();
  // The sampler draws an end token under ignore_eos only when the grammar allows nothing
  // else: the output is complete.
  CHECK(is_stop_token(constrained, std::vector<int32_t>{eog}, eog));
  CHECK_FALSE(is_stop_token(constrained, std::vector<int32_t>{eog}, byte_token('y')));
}
