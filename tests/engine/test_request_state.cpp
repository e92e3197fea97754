// request_state on the tiny model's byte-level BPE vocabulary: the state machine, UTF-8 safe
// deltas, stop strings and stop tokens, length, usage and timings on a scripted timeline.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "troupe/engine/request_state.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/unicode.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

const gguf::file& tiny_file() {
  static const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  return file;
}

const tokenizer& tiny_tokenizer() {
  static const tokenizer tok = tokenizer::from_gguf(tiny_file());
  return tok;
}

constexpr int32_t max_model_len = 256;
constexpr int32_t im_end = 2;  // the tiny model's EOS
int32_t byte_token(unsigned char b) { return 3 + b; }

request prompt_request(std::vector<std::string> stop = {}) {
  request r;
  r.id = "r1";
  r.prompt = "hi";
  r.stop = std::move(stop);
  return r;
}

// A state already running, as the actor has it once the scheduler admitted the request.
request_state running_state(const request& r, int32_t num_prompt_tokens = 4) {
  request_state s(r, tiny_tokenizer(), max_model_len, 0);
  s.set_num_prompt_tokens(num_prompt_tokens);
  s.transition_to(request_status::queued, 0);
  s.transition_to(request_status::running, 0);
  return s;
}

// Feeds the tokens of `text`; returns all text emitted, the final release included.
std::string stream(request_state& s, const std::string& text, request_finish_reason end) {
  std::string out;
  for (int32_t id : tiny_tokenizer().encode(text, false, false)) {
    out += s.on_token({id}, 0).delta.text;
  }
  return out + s.finish(end, 0).last_delta.text;
}

}  // namespace

TEST_CASE("request_state: the lifecycle tokenizing, queued, running, preempted, running, finished is legal") {
  request_state s = running_state(prompt_request());
  s.transition_to(request_status::preempted, 1);
  s.transition_to(request_status::running, 2);
  CHECK(s.finish(request_finish_reason::length, 3).done.reason == request_finish_reason::length);
  CHECK(s.status() == request_status::finished);
}

TEST_CASE("request_state: every live state may be cancelled or fail, no terminal state may be left") {
  using s = request_status;
  for (s from : {s::tokenizing, s::queued, s::running, s::preempted}) {
    CHECK(is_legal_transition(from, s::cancelled));
    CHECK(is_legal_transition(from, s::failed));
  }
  for (s from : {s::finished, s::cancelled, s::failed}) {
    for (s to : {s::tokenizing, s::queued, s::running, s::preempted, s::finished, s::cancelled, s::failed}) {
      CHECK_FALSE(is_legal_transition(from, to));
    }
  }
}

TEST_CASE("request_state: an illegal transition throws internal naming both states") {
  request_state s(prompt_request(), tiny_tokenizer(), max_model_len, 0);
  CHECK_FALSE(is_legal_transition(request_status::queued, request_status::preempted));
  CHECK_FALSE(is_legal_transition(request_status::preempted, request_status::finished));
  try {
    s.transition_to(request_status::running, 0);
    FAIL("tokenizing -> running did not throw");
  } catch (const error& e) {
    CHECK(e.code() == error_code::internal);
    CHECK(std::string(e.what()) == "request: illegal transition tokenizing -> running");
  }
  CHECK(s.status() == request_status::tokenizing);
}

TEST_CASE("request_state: a token outside running throws internal, finishing twice throws internal") {
  request_state s(prompt_request(), tiny_tokenizer(), max_model_len, 0);
  s.transition_to(request_status::queued, 0);
  CHECK_THROWS_AS(s.on_token({byte_token('a')}, 0), error);
  s.finish(request_finish_reason::cancelled, 1);
  CHECK(s.status() == request_status::cancelled);
  CHECK_THROWS_AS(s.finish(request_finish_reason::cancelled, 2), error);
}

TEST_CASE("request_state: a multibyte character split over byte tokens is emitted whole") {
  request_state s = running_state(prompt_request());
  CHECK(s.on_token({byte_token(0xe2)}, 0).delta.text.empty());
  CHECK(s.on_token({byte_token(0x82)}, 0).delta.text.empty());
  request_state::token_result r = s.on_token({byte_token(0xac)}, 0);
  CHECK(r.delta.text == "€");
  CHECK(r.delta.token_ids == std::vector<int32_t>{byte_token(0xac)});
}

TEST_CASE("request_state: every delta of mixed-script text is valid UTF-8 and together they are the text") {
  const std::string text = "héllo wörld — 日本語 😀 ok";
  request_state s = running_state(prompt_request());
  std::string out;
  for (int32_t id : tiny_tokenizer().encode(text, false, false)) {
    const std::string piece = s.on_token({id}, 0).delta.text;
    CHECK(unicode::sanitize_utf8(piece) == piece);
    out += piece;
  }
  CHECK(out == text);
}

TEST_CASE("request_state: a stop string across tokens ends the request and is not emitted") {
  request_state s = running_state(prompt_request({"wor"}));
  std::string out;
  std::optional<request_finish_reason> finish;
  for (int32_t id : tiny_tokenizer().encode("hello world", false, false)) {
    request_state::token_result r = s.on_token({id}, 0);
    out += r.delta.text;
    finish = r.finish;
    if (finish) break;
  }
  CHECK(finish == request_finish_reason::stop);
  const request_state::finish_result end = s.finish(request_finish_reason::stop, 0);
  CHECK(out + end.last_delta.text == "hello ");
  CHECK(end.done.stop_string == "wor");
  CHECK_FALSE(end.done.stop_token.has_value());
}

TEST_CASE("request_state: a stop string within the first min_tokens tokens is output, a later one stops") {
  request r = prompt_request({"a"});
  r.params.min_tokens = 3;
  request_state s = running_state(r);
  for (const unsigned char byte : std::string("xax")) {
    CHECK_FALSE(s.on_token({byte_token(byte)}, 0).finish);  // tokens 1-3: "a" is text
  }
  const request_state::token_result fourth = s.on_token({byte_token('a')}, 0);
  CHECK(fourth.finish == request_finish_reason::stop);
  const request_state::finish_result end = s.finish(request_finish_reason::stop, 0);
  CHECK(end.done.stop_string == "a");
  CHECK(end.done.usage.completion_tokens == 4);
}

TEST_CASE("request_state: a stop string completed by the min_tokens-th token stops the output") {
  request r = prompt_request({"ab"});
  r.params.min_tokens = 2;
  request_state s = running_state(r);
  CHECK_FALSE(s.on_token({byte_token('a')}, 0).finish);
  CHECK(s.on_token({byte_token('b')}, 0).finish == request_finish_reason::stop);
}

TEST_CASE("request_state: text held back for a stop string is released when the output ends by length") {
  request r = prompt_request({"xyz"});
  r.params.max_tokens = 3;
  request_state s = running_state(r);
  CHECK(s.on_token({byte_token('a')}, 0).delta.text == "a");
  CHECK(s.on_token({byte_token('b')}, 0).delta.text == "b");
  request_state::token_result last = s.on_token({byte_token('x')}, 0);
  CHECK(last.delta.text.empty());
  CHECK(last.finish == request_finish_reason::length);
  const request_state::finish_result end = s.finish(request_finish_reason::length, 0);
  CHECK(end.last_delta.text == "x");
  CHECK(end.done.reason == request_finish_reason::length);
}

TEST_CASE("request_state: the end-of-generation token stops with its id and adds no text") {
  request_state s = running_state(prompt_request());
  CHECK(s.on_token({byte_token(0xc3)}, 0).delta.text.empty());
  request_state::token_result r = s.on_token({im_end}, 0);
  CHECK(r.finish == request_finish_reason::stop);
  CHECK(r.delta.text.empty());
  const request_state::finish_result end = s.finish(request_finish_reason::stop, 0);
  CHECK(end.last_delta.text == "\xef\xbf\xbd");  // the dangling lead byte, replaced
  CHECK(end.done.stop_token == im_end);
  CHECK(end.done.usage.completion_tokens == 2);
}

TEST_CASE("request_state: with ignore_eos the end token is ordinary, a stop_token_ids entry stops") {
  request r = prompt_request();
  r.params.ignore_eos = true;
  r.params.stop_token_ids = {byte_token('!')};
  request_state s = running_state(r);
  CHECK_FALSE(s.on_token({im_end}, 0).finish.has_value());
  CHECK(s.on_token({byte_token('!')}, 0).finish == request_finish_reason::stop);
  CHECK(s.finish(request_finish_reason::stop, 0).done.stop_token == byte_token('!'));
}

TEST_CASE("request_state: under a grammar the end token ends the output, ignore_eos or not") {
  request r = prompt_request();
  r.params.ignore_eos = true;
  r.guided = grammar_spec{grammar_kind::choice, {}, {"a"}};
  request_state s = running_state(r);
  CHECK_FALSE(s.on_token({byte_token('a')}, 0).finish.has_value());
  CHECK(s.on_token({im_end}, 0).finish == request_finish_reason::stop);
}

TEST_CASE("request_state: tokens after the decided end are dropped and not counted") {
  request_state s = running_state(prompt_request({"b"}));
  s.on_token({byte_token('a')}, 0);
  CHECK(s.on_token({byte_token('b')}, 0).finish == request_finish_reason::stop);
  CHECK(s.on_token({byte_token('c')}, 0).delta.is_empty());
  const done_event done = s.finish(request_finish_reason::length, 0).done;
  CHECK(done.reason == request_finish_reason::stop);  // the decided reason wins over length
  CHECK(done.usage.completion_tokens == 2);
  CHECK(s.on_token({byte_token('d')}, 0).delta.is_empty());
}

TEST_CASE("request_state: the output ends by length when prompt and output fill max_model_len") {
  request_state s = running_state(prompt_request(), max_model_len - 2);
  CHECK_FALSE(s.on_token({byte_token('a')}, 0).finish.has_value());
  CHECK(s.on_token({byte_token('b')}, 0).finish == request_finish_reason::length);
}

TEST_CASE("request_state: usage and timings follow a scripted timeline with a preemption") {
  request_state s(prompt_request(), tiny_tokenizer(), max_model_len, 1000);
  s.set_num_prompt_tokens(12);
  s.transition_to(request_status::queued, 1005);
  s.set_num_cached_prompt_tokens(8);
  s.transition_to(request_status::running, 1020);
  s.on_token({byte_token('a')}, 1050);
  s.on_token({byte_token('b')}, 1060);
  s.transition_to(request_status::preempted, 1062);
  s.set_num_cached_prompt_tokens(14);  // the resume's hit is not the request's
  s.transition_to(request_status::running, 1075);
  s.on_token({byte_token('c')}, 1080);
  s.on_token({byte_token('d')}, 1110);
  const done_event done = s.finish(request_finish_reason::stop, 1112).done;
  CHECK(done.usage.prompt_tokens == 12);
  CHECK(done.usage.completion_tokens == 4);
  CHECK(done.usage.cached_prompt_tokens == 8);
  CHECK(done.usage.total_tokens() == 16);
  CHECK(done.timings.queue_ms == 15.0);
  CHECK(done.timings.time_to_first_token_ms == 50.0);
  CHECK(done.timings.per_output_token_ms == 20.0);  // (1110 - 1050) / 3
  CHECK(done.timings.total_ms == 112.0);
}

TEST_CASE("request_state: a request cancelled in the queue reports its time queued and no output") {
  request_state s(prompt_request(), tiny_tokenizer(), max_model_len, 100);
  s.set_num_prompt_tokens(5);
  s.transition_to(request_status::queued, 110);
  const request_state::finish_result end = s.finish(request_finish_reason::cancelled, 140);
  CHECK(s.status() == request_status::cancelled);
  CHECK(end.last_delta.is_empty());
  CHECK(end.done.reason == request_finish_reason::cancelled);
  CHECK(end.done.timings.queue_ms == 30.0);
  CHECK(end.done.timings.time_to_first_token_ms == 0.0);
  CHECK(end.done.timings.per_output_token_ms == 0.0);
  CHECK(end.done.timings.total_ms == 40.0);
}

TEST_CASE("request_state: the deadline is arrival plus timeout_ms and a timeout ends as cancelled") {
  request r = prompt_request();
  CHECK_FALSE(request_state(r, tiny_tokenizer(), max_model_len, 500).deadline_ms().has_value());
  r.timeout_ms = 250;
  request_state s = running_state(r);
  CHECK(s.deadline_ms() == 250);
  CHECK_FALSE(s.is_past_deadline(249));
  CHECK(s.is_past_deadline(250));
  CHECK(s.finish(request_finish_reason::timeout, 250).done.reason == request_finish_reason::timeout);
  CHECK(s.status() == request_status::cancelled);
}

TEST_CASE("request_state: an error ends as failed with the text so far released") {
  request_state s = running_state(prompt_request({"zz"}));
  s.on_token({byte_token('z')}, 0);
  const request_state::finish_result end = s.finish(request_finish_reason::error, 0);
  CHECK(s.status() == request_status::failed);
  CHECK(end.last_delta.text == "z");
}

TEST_CASE("request_state: echo puts the prompt before the first output text") {
  request r = prompt_request();
  r.echo = true;
  request_state s = running_state(r);
  CHECK(s.on_token({byte_token('!')}, 0).delta.text == "hi!");
  CHECK(s.on_token({byte_token('?')}, 0).delta.text == "?");
}

TEST_CASE("request_state: logprobs come one per token with the alternatives' text only when asked") {
  const sampled_token sampled{byte_token('a'), -0.5f, {{byte_token('a'), -0.5f}, {im_end, -1.5f}}};
  request_state plain = running_state(prompt_request());
  CHECK(plain.on_token(sampled, 0).delta.logprobs.empty());

  request r = prompt_request();
  r.logprobs = true;
  request_state s = running_state(r);
  const delta_event delta = s.on_token(sampled, 0).delta;
  REQUIRE(delta.logprobs.size() == 1);
  CHECK(delta.logprobs[0].sampled.text == "a");
  CHECK(delta.logprobs[0].sampled.logprob == -0.5f);
  REQUIRE(delta.logprobs[0].top.size() == 2);
  CHECK(delta.logprobs[0].top[1].token == im_end);
  CHECK(delta.logprobs[0].top[1].text == "<|im_end|>");
}

TEST_CASE("request_state: stream assembles text identical to the tokens' decoding") {
  request_state s = running_state(prompt_request());
  CHECK(stream(s, "plain text, nothing held", request_finish_reason::length) == "plain text, nothing held");
}
