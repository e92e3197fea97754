// request_choices on the tiny model's byte-level vocabulary: one choice gives request_state's
// events unchanged; n > 1 indexes deltas and ends each choice with a choice_done before the
// request's done; best_of keeps the n choices with the highest summed log-probability.
#include <doctest/doctest.h>

#include <string>
#include <variant>
#include <vector>

#include "troupe/engine/request_choices.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

const tokenizer& tiny_tokenizer() {
  static const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  static const tokenizer tok = tokenizer::from_gguf(file);
  return tok;
}

int32_t byte_token(unsigned char b) { return 3 + b; }

request choices_request(int32_t n, int32_t best_of = 0) {
  request r;
  r.id.assign(1, 'r');  // not = "r": GCC 12 warns falsely (-Wrestrict, PR105651)
  r.prompt = "hi";
  r.n = n;
  r.best_of = best_of;
  return r;
}

request_choices running(const request& r) {
  request_choices c(r, tiny_tokenizer(), 256, 0);
  c.set_num_prompt_tokens(4);
  c.transition_all(request_status::queued, 0);
  c.transition_all(request_status::running, 0);
  return c;
}

template <class T>
std::vector<T> of_type(const std::vector<request_event>& events) {
  std::vector<T> out;
  for (const auto& e : events) {
    if (const auto* x = std::get_if<T>(&e)) out.push_back(*x);
  }
  return out;
}

}  // namespace

TEST_CASE("request_choices: one choice gives a plain delta and done, with no index or choice_done") {
  auto c = running(choices_request(1));
  REQUIRE(c.size() == 1);
  auto r = c.on_token(0, {byte_token('a'), -0.5f, {}}, 1);
  REQUIRE(r.events.size() == 1);
  CHECK(std::get<delta_event>(r.events[0]).text == "a");
  const auto end = c.finish(0, request_finish_reason::length, 2);
  REQUIRE(end.size() == 1);
  const auto& done = std::get<done_event>(end[0]);
  CHECK(done.choices.empty());
  CHECK(done.usage.completion_tokens == 1);
  CHECK(c.is_done());
}

TEST_CASE("request_choices: n = 3 interleaves indexed deltas, ends each choice, then the request") {
  auto c = running(choices_request(3));
  REQUIRE(c.size() == 3);
  std::vector<request_event> events;
  const auto take = [&](std::vector<request_event> more) { events.insert(events.end(), more.begin(), more.end()); };
  take(c.on_token(1, {byte_token('x'), -1.0f, {}}, 1).events);
  take(c.on_token(0, {byte_token('a'), -0.25f, {}}, 1).events);
  take(c.on_token(2, {byte_token('p'), -2.0f, {}}, 2).events);
  take(c.on_token(0, {byte_token('b'), -0.25f, {}}, 3).events);
  take(c.finish(2, request_finish_reason::cancelled, 4));
  CHECK_FALSE(c.is_done());
  take(c.finish(0, request_finish_reason::stop, 5));
  take(c.on_token(0, {byte_token('z'), -1.0f, {}}, 6).events);  // after its end: dropped
  take(c.on_token(1, {2, -0.5f, {}}, 7).events);                 // end of generation
  auto r = c.on_token(1, {byte_token('q'), -0.5f, {}}, 7);
  CHECK(r.events.empty());
  take(c.finish(1, request_finish_reason::stop, 8));
  CHECK(c.is_done());

  const auto deltas = of_type<delta_event>(events);
  std::vector<std::string> text(3);
  for (const auto& d : deltas) text.at(static_cast<size_t>(d.index)) += d.text;
  CHECK(text == std::vector<std::string>{"ab", "x", "p"});
  const auto ends = of_type<choice_done_event>(events);
  REQUIRE(ends.size() == 3);
  CHECK(ends[0].index == 2);
  CHECK(ends[0].reason == request_finish_reason::cancelled);
  CHECK(ends[1].index == 0);
  CHECK(ends[1].completion_tokens == 2);
  CHECK(ends[1].cumulative_logprob == doctest::Approx(-0.5));
  CHECK(ends[2].index == 1);
  CHECK(ends[2].stop_token == 2);
  const auto dones = of_type<done_event>(events);
  REQUIRE(dones.size() == 1);
  CHECK(std::holds_alternative<done_event>(events.back()));
  CHECK(dones[0].usage.prompt_tokens == 4);
  CHECK(dones[0].usage.completion_tokens == 5);  // 2 + 2 (the end token counts) + 1
  REQUIRE(dones[0].choices.size() == 3);
  for (int32_t i = 0; i < 3; ++i) CHECK(dones[0].choices[static_cast<size_t>(i)].index == i);
  CHECK(dones[0].reason == request_finish_reason::stop);
}

TEST_CASE("request_choices: best_of holds everything back and returns the n most likely, renumbered") {
  auto c = running(choices_request(2, 4));
  REQUIRE(c.size() == 4);
  const float logprobs[4] = {-3.0f, -0.5f, -9.0f, -1.0f};
  std::vector<request_event> events;
  for (int32_t i = 0; i < 4; ++i) {
    auto r = c.on_token(i, {byte_token(static_cast<unsigned char>('a' + i)), logprobs[i], {}}, 1);
    CHECK(r.events.empty());
    auto end = c.finish(i, request_finish_reason::length, 2);
    if (i < 3) CHECK(end.empty());
    events.insert(events.end(), end.begin(), end.end());
  }
  const auto deltas = of_type<delta_event>(events);
  REQUIRE(deltas.size() == 2);
  CHECK(deltas[0].index == 0);
  CHECK(deltas[0].text == "b");  // -0.5: the most likely
  CHECK(deltas[1].index == 1);
  CHECK(deltas[1].text == "d");  // -1.0
  const auto ends = of_type<choice_done_event>(events);
  REQUIRE(ends.size() == 2);
  CHECK(ends[0].cumulative_logprob == doctest::Approx(-0.5));
  const auto& done = std::get<done_event>(events.back());
  CHECK(done.usage.completion_tokens == 4);  // every sampled candidate is counted
  REQUIRE(done.choices.size() == 2);
  CHECK(done.choices[1].cumulative_logprob == doctest::Approx(-1.0));
}
