// Workload files: the three shapes parse into the values they state; every mistake is
// refused with a message that names the field path; --sweep points land in the right field.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "plan.hpp"
#include "workload.hpp"

using namespace troupe::load;

namespace {

// The message parse_workload throws; fails the test when it accepts the text.
std::string rejection(const std::string& json) {
  try {
    parse_workload(json);
  } catch (const workload_error& e) {
    return e.what();
  }
  FAIL("parse_workload accepted " << json);
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* open_loop_text = R"({
  "name": "poisson", "seed": 7, "arrival": {"process": "poisson", "rate": 2.5},
  "duration_s": 30, "requests": 100, "prompt": {"tokens": {"min": 16, "max": 64}},
  "output": {"tokens": 32}, "slo": {"ttft_ms": 500, "tpot_ms": 50},
  "sampling": {"temperature": 0, "ignore_eos": true}, "timeout_s": 20})";

}  // namespace

TEST_CASE("an open-loop workload parses into the values it states") {
  const workload w = parse_workload(open_loop_text);
  CHECK(w.name == "poisson");
  CHECK(w.seed == 7);
  REQUIRE(w.is_open_loop());
  CHECK(w.arrival->process == arrival_process::poisson);
  CHECK(w.arrival->rate_per_s == doctest::Approx(2.5));
  CHECK(*w.duration_s == doctest::Approx(30));
  CHECK(*w.num_requests == 100);
  CHECK(w.prompt_tokens->min_tokens == 16);
  CHECK(w.prompt_tokens->max_tokens == 64);
  CHECK(w.output_tokens.min_tokens == 32);
  CHECK(w.output_tokens.max_tokens == 32);
  CHECK(*w.slo.ttft_ms == doctest::Approx(500));
  CHECK(*w.slo.tpot_ms == doctest::Approx(50));
  CHECK_FALSE(w.slo.e2e_ms);
  CHECK(w.sampling_json == R"({"temperature":0,"ignore_eos":true})");
  CHECK(w.timeout_s == doctest::Approx(20));
  CHECK(w.priorities.empty());
  CHECK(w.api == api_kind::completions);
}

TEST_CASE("a closed-loop chat workload with priorities and cancels parses") {
  const workload w = parse_workload(R"({
    "api": "chat", "closed_loop": {"users": 8, "think_time_ms": 250, "think_time": "exponential"},
    "requests": 40, "prompt": {"tokens": 100},
    "priorities": [{"priority": 0, "weight": 3}, {"priority": 5}],
    "cancel": {"share": 0.25, "after_tokens": 4}, "connections": 2})");
  CHECK(w.api == api_kind::chat);
  REQUIRE(w.closed);
  CHECK(w.closed->num_users == 8);
  CHECK(w.closed->think_time_ms == doctest::Approx(250));
  CHECK(w.closed->think_time == think_time_kind::exponential);
  REQUIRE(w.priorities.size() == 2);
  CHECK(w.priorities[0].weight == doctest::Approx(3));
  CHECK(w.priorities[1].priority == 5);
  CHECK(w.priorities[1].weight == doctest::Approx(1));
  CHECK(w.cancel.share == doctest::Approx(0.25));
  CHECK(w.cancel.after_tokens == 4);
  CHECK(w.num_connections == 2);
  CHECK_FALSE(w.duration_s);
}

TEST_CASE("a prompt file path is resolved against the workload's folder") {
  const workload w = parse_workload(
      R"({"arrival": {"rate": 1}, "requests": 1, "prompt": {"file": "p.jsonl"}, "output": {"from_file": true}})",
      "/data/set");
  CHECK(*w.prompt_file == (std::filesystem::path("/data/set") / "p.jsonl").string());
  CHECK(w.output_from_file);
}

TEST_CASE("workload errors name the field path") {
  const std::string base_tail = R"("requests": 1, "prompt": {"tokens": 8})";
  CHECK(rejection(R"({"arrival": {"rate": 0}, )" + base_tail + "}") == "arrival.rate must be > 0, got 0");
  CHECK(contains(rejection(R"({"arrival": {"rate": -2}, )" + base_tail + "}"), "arrival.rate must be > 0"));
  CHECK(contains(rejection(R"({"arrival": {"process": "bursty", "rate": 1}, )" + base_tail + "}"),
                 "arrival.process must be \"poisson\" or \"constant\""));
  CHECK(contains(rejection(R"({"arrival": {}, )" + base_tail + "}"), "arrival.rate is required"));
  CHECK(contains(rejection(R"({"arrival": {"rate": "fast"}, )" + base_tail + "}"), "arrival.rate must be a number"));
  CHECK(contains(rejection(R"({"closed_loop": {"users": 0}, )" + base_tail + "}"), "closed_loop.users must be >= 1"));
  CHECK(contains(rejection(R"({"closed_loop": {"users": 2.5}, )" + base_tail + "}"),
                 "closed_loop.users must be an integer"));
  CHECK(contains(rejection(R"({"closed_loop": {"users": 1, "think_time_ms": -1}, )" + base_tail + "}"),
                 "closed_loop.think_time_ms must be >= 0"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "requests": 1, "prompt": {"tokens": {"min": 9, "max": 3}}})"),
                 "prompt.tokens.max must be >= min"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, )" + base_tail +
                           R"(, "priorities": [{"priority": 1}, {"weight": 2}]})"),
                 "priorities[1].priority is required"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, )" + base_tail + R"(, "cancel": {"share": 1.5}})"),
                 "cancel.share must be in [0, 1]"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, )" + base_tail + R"(, "slo": {"ttft_ms": 0}})"),
                 "slo.ttft_ms must be > 0"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, )" + base_tail + R"(, "sampling": {"max_tokens": 5}})"),
                 "sampling.max_tokens is set by the driver"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "requests": 1, "prompt": {"tokens": 8, "file": "x"}})"),
                 "prompt needs exactly one of tokens / file"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "requests": 1, "prompt": {"tokens": 8},
                               "output": {"from_file": true}})"),
                 "output.from_file needs prompt.file"));
}

TEST_CASE("unknown fields are refused by their path, with the allowed names") {
  const std::string msg = rejection(R"({"arrival": {"rate": 1, "burst": 3}, "requests": 1, "prompt": {"tokens": 8}})");
  CHECK(contains(msg, "unknown field arrival.burst"));
  CHECK(contains(msg, "process, rate"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "duraton_s": 5, "prompt": {"tokens": 8}})"),
                 "unknown field duraton_s"));
}

TEST_CASE("a workload needs one loop, a stop rule and a prompt") {
  CHECK(contains(rejection(R"({"requests": 1, "prompt": {"tokens": 8}})"), "exactly one of arrival"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "closed_loop": {"users": 1}, "requests": 1,
                               "prompt": {"tokens": 8}})"),
                 "exactly one of arrival"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "prompt": {"tokens": 8}})"), "needs duration_s or requests"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "requests": 3})"), "prompt is required"));
  CHECK(contains(rejection(R"({"arrival": {"rate": 1}, "requests": 3, "prompt": )"), "not valid JSON"));
  CHECK(contains(rejection(R"([1, 2])"), "workload must be an object"));
}

TEST_CASE("a sweep point sets users on a closed loop and rate on an open loop") {
  workload closed = parse_workload(R"({"closed_loop": {"users": 1}, "requests": 4, "prompt": {"tokens": 8}})");
  apply_sweep_point(closed, "users", 16);
  CHECK(closed.closed->num_users == 16);
  CHECK_THROWS_AS(apply_sweep_point(closed, "rate", 2), workload_error);
  workload open = parse_workload(open_loop_text);
  apply_sweep_point(open, "rate", 8);
  CHECK(open.arrival->rate_per_s == doctest::Approx(8));
  CHECK_THROWS_AS(apply_sweep_point(open, "users", 2), workload_error);
}

TEST_CASE("--sweep text gives the parameter and its values in order") {
  const sweep_spec s = parse_sweep("users=1,4,16,32");
  CHECK(s.param == "users");
  REQUIRE(s.values.size() == 4);
  CHECK(s.values[2] == doctest::Approx(16));
  CHECK(parse_sweep("rate=0.5,2").values[0] == doctest::Approx(0.5));
  CHECK_THROWS_AS(parse_sweep("users"), workload_error);
  CHECK_THROWS_AS(parse_sweep("qps=1,2"), workload_error);
  CHECK_THROWS_AS(parse_sweep("users=1,x"), workload_error);
  CHECK_THROWS_AS(parse_sweep("rate=0"), workload_error);
}

TEST_CASE("every shipped workload file parses and plans its first request") {
  int num_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(TROUPE_LOAD_WORKLOADS_DIR)) {
    if (entry.path().extension() != ".json") continue;
    CAPTURE(entry.path().string());
    const workload w = load_workload_file(entry.path().string());
    CHECK(w.name == entry.path().stem().string());
    CHECK(w.slo.is_empty() == false);
    const request_spec first = make_plan(w).make_request(0);
    CHECK(first.max_tokens >= w.output_tokens.min_tokens);
    CHECK_FALSE(first.prompt.empty());
    ++num_files;
  }
  CHECK(num_files >= 3);
}
