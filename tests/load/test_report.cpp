// The report against hand-computed records: per-request TTFT, TPOT, ITL and E2E, counts
// by outcome and reason that add up, throughput, goodput under the SLO, priority classes.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <string>
#include <vector>

#include "report.hpp"

using namespace troupe::load;

namespace {

// A request sent at sent_ms whose deltas arrive at the given times, one token each.
request_record finished(double sent_ms, std::vector<double> delta_ms, double end_ms,
                        std::optional<int64_t> priority = std::nullopt) {
  request_record r;
  r.sent_ms = sent_ms;
  for (const double t : delta_ms) r.deltas.push_back({t, 1});
  r.ended_ms = end_ms;
  r.result = outcome::ok;
  r.priority = priority;
  return r;
}

request_record failed(const std::string& reason, std::optional<int64_t> priority = std::nullopt) {
  request_record r;
  r.result = outcome::failed;
  r.failure_reason = reason;
  r.priority = priority;
  return r;
}

}  // namespace

TEST_CASE("measure: TTFT, TPOT, ITL and E2E of one request") {
  // Sent at 100; tokens at 150, 160, 180, 190; done at 200.
  const request_metrics m = measure(finished(100, {150, 160, 180, 190}, 200));
  CHECK(*m.ttft_ms == doctest::Approx(50));
  CHECK(*m.tpot_ms == doctest::Approx(40.0 / 3));  // (190 - 150) / (4 - 1)
  REQUIRE(m.itl_ms.size() == 3);
  CHECK(m.itl_ms[0] == doctest::Approx(10));
  CHECK(m.itl_ms[1] == doctest::Approx(20));
  CHECK(m.itl_ms[2] == doctest::Approx(10));
  CHECK(m.e2e_ms == doctest::Approx(100));
  CHECK(m.output_tokens == 4);
}

TEST_CASE("measure: a delta carrying k tokens adds k inter-token samples of gap over k") {
  request_record r = finished(0, {10}, 50);
  r.deltas.push_back({40, 3});  // 30 ms later, three tokens at once
  const request_metrics m = measure(r);
  REQUIRE(m.itl_ms.size() == 3);
  for (const double itl : m.itl_ms) CHECK(itl == doctest::Approx(10));
  CHECK(m.output_tokens == 4);
  CHECK(*m.tpot_ms == doctest::Approx(10));
}

TEST_CASE("measure: usage.completion_tokens overrides the count of deltas") {
  request_record r = finished(0, {10, 20, 30}, 40);
  r.completion_tokens = 7;  // e.g. deltas held back by a stop string
  const request_metrics m = measure(r);
  CHECK(m.output_tokens == 7);
  CHECK(*m.tpot_ms == doctest::Approx(20.0 / 6));
}

TEST_CASE("measure: one token gives no TPOT and no tokens give no TTFT") {
  const request_metrics one = measure(finished(0, {25}, 30));
  CHECK(*one.ttft_ms == doctest::Approx(25));
  CHECK_FALSE(one.tpot_ms);
  CHECK(one.itl_ms.empty());
  const request_metrics none = measure(finished(0, {}, 30));
  CHECK_FALSE(none.ttft_ms);
  CHECK(none.e2e_ms == doctest::Approx(30));
}

TEST_CASE("report: counts by outcome and reason add up to the requests sent") {
  std::vector<request_record> records = {finished(0, {10, 20}, 30), finished(0, {50, 60}, 70), failed("http_429"),
                                         failed("http_429"), failed("timeout")};
  request_record cancelled = finished(0, {5, 6}, 6);
  cancelled.result = outcome::cancelled;
  records.push_back(cancelled);
  const run_report rep = make_report(records, {}, 2.0);
  CHECK(rep.all.num_sent == 6);
  CHECK(rep.all.num_ok == 2);
  CHECK(rep.all.num_cancelled == 1);
  CHECK(rep.all.num_failed == 3);
  CHECK(rep.all.failed_by_reason.at("http_429") == 2);
  CHECK(rep.all.failed_by_reason.at("timeout") == 1);
  CHECK(rep.all.num_ok + rep.all.num_cancelled + rep.all.num_failed == rep.all.num_sent);
  // Latencies and throughput cover ok requests only.
  CHECK(rep.all.ttft_ms.count == 2);
  CHECK(rep.all.ttft_ms.p50 == doctest::Approx(10));
  CHECK(rep.all.ttft_ms.max == doctest::Approx(50));
  CHECK(rep.all.total_output_tokens == 4);
  CHECK(rep.all.requests_per_s == doctest::Approx(1.0));
  CHECK(rep.all.output_tokens_per_s == doctest::Approx(2.0));
  CHECK_FALSE(rep.all.goodput_per_s);
}

TEST_CASE("report: the first detail the server gave for each failure reason is kept") {
  std::vector<request_record> records = {failed("http_400"), failed("http_400"), failed("timeout")};
  records[0].failure_detail = "top_p must be in (0, 1], got 7";
  records[1].failure_detail = "another";
  const run_report rep = make_report(records, {}, 1.0);
  CHECK(rep.all.first_failure_detail.at("http_400") == "top_p must be in (0, 1], got 7");
  CHECK(rep.all.first_failure_detail.count("timeout") == 0);
  CHECK(format_table(rep, {}).find("http_400: top_p must be in (0, 1], got 7") != std::string::npos);
}

TEST_CASE("report: goodput counts ok requests meeting every SLO limit") {
  // TTFT 10 / TPOT 10; TTFT 50 / TPOT 10; TTFT 10 / TPOT 40; one-token TTFT 10 (no TPOT).
  const std::vector<request_record> records = {finished(0, {10, 20}, 20), finished(0, {50, 60}, 60),
                                               finished(0, {10, 50}, 50), finished(0, {10}, 10)};
  slo_spec slo;
  slo.ttft_ms = 20;
  slo.tpot_ms = 20;
  const run_report rep = make_report(records, slo, 4.0);
  REQUIRE(rep.all.num_meeting_slo);
  CHECK(*rep.all.num_meeting_slo == 2);
  CHECK(*rep.all.goodput_per_s == doctest::Approx(0.5));
  slo.e2e_ms = 15;
  CHECK(*make_report(records, slo, 4.0).all.num_meeting_slo == 1);
}

TEST_CASE("report: the mean prompt length is the server's usage, when it reported one") {
  std::vector<request_record> records = {finished(0, {1}, 2), finished(0, {1}, 2), finished(0, {1}, 2)};
  records[0].prompt_tokens = 100;
  records[1].prompt_tokens = 110;
  const run_report rep = make_report(records, {}, 1.0);
  CHECK(*rep.all.mean_prompt_tokens == doctest::Approx(105));
  CHECK_FALSE(make_report({finished(0, {1}, 2)}, {}, 1.0).all.mean_prompt_tokens);
}

TEST_CASE("report: each priority class is reported on its own") {
  const std::vector<request_record> records = {finished(0, {10}, 20, 0), finished(0, {30}, 40, 0),
                                               finished(0, {200}, 300, 5), failed("error_queue_full", 5)};
  const run_report rep = make_report(records, {}, 1.0);
  REQUIRE(rep.by_priority.size() == 2);
  CHECK(rep.by_priority.at(0).num_ok == 2);
  CHECK(rep.by_priority.at(0).ttft_ms.max == doctest::Approx(30));
  CHECK(rep.by_priority.at(5).num_ok == 1);
  CHECK(rep.by_priority.at(5).num_failed == 1);
  CHECK(rep.by_priority.at(5).failed_by_reason.at("error_queue_full") == 1);
  CHECK(rep.by_priority.at(5).ttft_ms.p50 == doctest::Approx(200));
  CHECK(rep.all.num_sent == 4);
}

TEST_CASE("report: front-door latency summarizes every delta that carried server_ms") {
  std::vector<request_record> records = {finished(0, {1}, 2), failed("timeout")};
  records[0].front_door_ms = {0.5, 0.25};
  records[1].front_door_ms = {1.0};
  const run_report rep = make_report(records, {}, 1.0);
  CHECK(rep.front_door_ms.count == 3);
  CHECK(rep.front_door_ms.max == doctest::Approx(1.0));
}

TEST_CASE("report JSON is valid and carries the counts, reasons and percentiles") {
  std::vector<request_record> records = {finished(0, {10, 20}, 30, 1), failed("http_503", 1)};
  slo_spec slo;
  slo.ttft_ms = 100;
  const std::string text = report_json(make_report(records, slo, 2.0), slo);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  REQUIRE_FALSE(parser.parse(text).get(doc));
  CHECK(int64_t(doc["requests"]["sent"]) == 2);
  CHECK(int64_t(doc["requests"]["failed_by_reason"]["http_503"]) == 1);
  CHECK(double(doc["ttft_ms"]["p99"]) == doctest::Approx(10));
  CHECK(double(doc["goodput"]["requests_per_s"]) == doctest::Approx(0.5));
  CHECK(double(doc["slo"]["ttft_ms"]) == doctest::Approx(100));
  CHECK(int64_t(doc["by_priority"]["1"]["requests"]["ok"]) == 1);
}

TEST_CASE("the table shows counts, failure reasons and the latency rows") {
  const std::vector<request_record> records = {finished(0, {10, 20}, 30), failed("connection")};
  const std::string table = format_table(make_report(records, {}, 1.0), {});
  CHECK(table.find("sent 2  ok 1  cancelled 0  failed 1 (connection: 1)") != std::string::npos);
  CHECK(table.find("ttft") != std::string::npos);
  CHECK(table.find("e2e") != std::string::npos);
}
