// The request plan: a seed names the same requests every time; lengths stay in their
// ranges; priorities and cancels follow their weights and share; arrival gaps have the
// stated rate; synthetic prompts have the asked number of words; prompt files parse.
#include <doctest/doctest.h>

#include <set>
#include <sstream>
#include <string>

#include "plan.hpp"
#include "prompts.hpp"

using namespace troupe::load;

namespace {

workload base_workload() {
  return parse_workload(R"({"seed": 11, "arrival": {"rate": 4}, "requests": 1000,
    "prompt": {"tokens": {"min": 10, "max": 20}}, "output": {"tokens": {"min": 5, "max": 9}}})");
}

size_t count_words(const std::string& s) {
  std::istringstream in(s);
  size_t n = 0;
  for (std::string w; in >> w;) ++n;
  return n;
}

}  // namespace

TEST_CASE("the same seed and index give the same request, another seed another") {
  const request_plan a(base_workload(), {});
  const request_plan b(base_workload(), {});
  workload other = base_workload();
  other.seed = 12;
  const request_plan c(other, {});
  CHECK(a.make_request(3).prompt == b.make_request(3).prompt);
  CHECK(a.make_request(3).max_tokens == b.make_request(3).max_tokens);
  CHECK(a.make_request(3).prompt != a.make_request(4).prompt);
  CHECK(a.make_request(3).prompt != c.make_request(3).prompt);
  CHECK(a.make_request(3).id == "r3");
}

TEST_CASE("prompt and output lengths stay within their uniform ranges and cover them") {
  const request_plan plan(base_workload(), {});
  std::set<size_t> prompt_lengths;
  std::set<int64_t> output_lengths;
  for (uint64_t i = 0; i < 500; ++i) {
    const request_spec r = plan.make_request(i);
    prompt_lengths.insert(count_words(r.prompt));
    output_lengths.insert(r.max_tokens);
  }
  CHECK(*prompt_lengths.begin() == 10);
  CHECK(*prompt_lengths.rbegin() == 20);
  CHECK(prompt_lengths.size() == 11);
  CHECK(output_lengths == std::set<int64_t>{5, 6, 7, 8, 9});
}

TEST_CASE("no priority is set unless the workload has priorities") {
  const request_plan plan(base_workload(), {});
  CHECK_FALSE(plan.make_request(0).priority);
  CHECK_FALSE(plan.make_request(0).cancel_after_tokens);
}

TEST_CASE("priorities follow their weights and cancels their share") {
  workload w = base_workload();
  w.priorities = {{0, 3.0}, {7, 1.0}};
  w.cancel = {0.2, 5};
  const request_plan plan(w, {});
  int num_high = 0, num_cancelled = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const request_spec r = plan.make_request(static_cast<uint64_t>(i));
    REQUIRE(r.priority);
    CHECK((*r.priority == 0 || *r.priority == 7));
    if (*r.priority == 7) ++num_high;
    if (r.cancel_after_tokens) {
      CHECK(*r.cancel_after_tokens == 5);
      ++num_cancelled;
    }
  }
  // 1000 and 800 expected; the bounds are over 5 standard deviations wide.
  CHECK(num_high > 850);
  CHECK(num_high < 1150);
  CHECK(num_cancelled > 670);
  CHECK(num_cancelled < 930);
}

TEST_CASE("Poisson gaps average 1/rate and vary, constant gaps are exactly 1/rate") {
  const request_plan poisson(base_workload(), {});
  double sum = 0;
  std::set<double> distinct;
  for (uint64_t i = 1; i <= 20000; ++i) {
    const double gap = poisson.arrival_gap_ms(i);
    CHECK(gap >= 0);
    sum += gap;
    distinct.insert(gap);
  }
  CHECK(sum / 20000 == doctest::Approx(250).epsilon(0.03));  // 4 per second; 5 sigma is 3.5%
  CHECK(distinct.size() > 19000);
  workload w = base_workload();
  w.arrival->process = arrival_process::constant;
  CHECK(request_plan(w, {}).arrival_gap_ms(5) == doctest::Approx(250));
}

TEST_CASE("think time: constant as stated, exponential with the stated mean") {
  workload w = parse_workload(R"({"closed_loop": {"users": 2, "think_time_ms": 100}, "requests": 4,
                                  "prompt": {"tokens": 8}})");
  CHECK(request_plan(w, {}).think_time_ms(3) == doctest::Approx(100));
  w.closed->think_time = think_time_kind::exponential;
  const request_plan plan(w, {});
  double sum = 0;
  for (uint64_t i = 0; i < 20000; ++i) sum += plan.think_time_ms(i);
  CHECK(sum / 20000 == doctest::Approx(100).epsilon(0.04));
}

TEST_CASE("a synthetic prompt has one word per asked token, all from the word list") {
  const std::string p = synthetic_prompt(37, 99);
  CHECK(count_words(p) == 37);
  const std::set<std::string> words(prompt_words().begin(), prompt_words().end());
  std::istringstream in(p);
  for (std::string w; in >> w;) CHECK(words.count(w) == 1);
  CHECK(synthetic_prompt(37, 99) == p);
}

TEST_CASE("prompt files: JSON objects, JSON strings and plain lines") {
  const auto entries = parse_prompt_lines(
      "{\"prompt\": \"Tell me a story\", \"output_tokens\": 40}\n"
      "\n"
      "\"two\\nlines\"\r\n"
      "just some text\n",
      "p.jsonl");
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].text == "Tell me a story");
  CHECK(*entries[0].output_tokens == 40);
  CHECK(entries[1].text == "two\nlines");
  CHECK_FALSE(entries[1].output_tokens);
  CHECK(entries[2].text == "just some text");
}

TEST_CASE("prompt file errors name the file and line") {
  const auto message = [](const std::string& text) {
    try {
      parse_prompt_lines(text, "p.jsonl");
    } catch (const workload_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(message("ok\n{\"prompt\": 3}\n").find("p.jsonl line 2: prompt must be a string") == 0);
  CHECK(message("{\"text\": \"x\"}\n").find("p.jsonl line 1: unknown field text") == 0);
  CHECK(message("{\"prompt\": \"x\", \"output_tokens\": 0}").find("output_tokens must be an integer >= 1") !=
        std::string::npos);
  CHECK(message("{broken\n").find("p.jsonl line 1: not valid JSON") == 0);
  CHECK(message("\n\n").find("holds no prompts") != std::string::npos);
}

TEST_CASE("output lengths from the prompt file are used, and required of every entry") {
  workload w = parse_workload(R"({"arrival": {"rate": 1}, "requests": 1, "prompt": {"file": "p"},
                                  "output": {"from_file": true}})");
  const request_plan plan(w, {{"a", 11}, {"b", 22}});
  for (uint64_t i = 0; i < 20; ++i) {
    const request_spec r = plan.make_request(i);
    CHECK(r.max_tokens == (r.prompt == "a" ? 11 : 22));
  }
  CHECK_THROWS_AS(request_plan(w, {{"a", 11}, {"b", std::nullopt}}), workload_error);
}
