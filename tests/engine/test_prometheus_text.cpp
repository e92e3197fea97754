// parse_prometheus_text: what it reads from the text format, that it reads back exactly
// what the registry renders, and that a malformed line is refused naming its line.
#include <doctest/doctest.h>

#include <cmath>

#include "troupe/engine/prometheus_text.hpp"
#include "troupe/engine/serving_metrics.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

std::string error_of(std::string_view text) {
  try {
    parse_prometheus_text(text);
  } catch (const error& e) {
    CHECK(e.code() == error_code::invalid_argument);
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("prometheus text: samples with labels, escapes, special values and timestamps; comments skipped") {
  const auto samples = parse_prometheus_text(
      "# HELP troupe_x Some help.\n"
      "# TYPE troupe_x counter\n"
      "troupe_x 12.5\n"
      "\n"
      "troupe_y{reason=\"stop\",path=\"a\\\\b \\\"q\\\" \\n end\"} 3 1700000000000\n"
      "troupe_z_bucket{le=\"+Inf\",} +Inf\r\n"
      "  troupe_w { a = \"1\" } NaN\n"
      "troupe_v -2e-3\n");
  REQUIRE(samples.size() == 5);
  CHECK(samples[0] == metric_sample{"troupe_x", {}, 12.5});
  CHECK(samples[1] == metric_sample{"troupe_y", {{"reason", "stop"}, {"path", "a\\b \"q\" \n end"}}, 3});
  CHECK(samples[2].name == "troupe_z_bucket");
  CHECK(samples[2].labels == metric_labels{{"le", "+Inf"}});
  CHECK(std::isinf(samples[2].value));
  CHECK(samples[3].labels == metric_labels{{"a", "1"}});
  CHECK(std::isnan(samples[3].value));
  CHECK(samples[4].value == doctest::Approx(-0.002));
}

TEST_CASE("prometheus text: what the registry renders parses back to exactly its samples()") {
  auto registry = std::make_shared<metrics_registry>();
  serving_metrics metrics(registry);
  step_sample step;
  step.sent_seconds = 1.0;
  step.back_seconds = 1.0123;
  step.num_sequences = 3;
  step.num_tokens = 70;
  step.num_prefill_tokens = 67;
  step.token_budget = 2048;
  metrics.on_step(step);
  metrics.on_limits(8, 512);
  registry->gauge("troupe_odd_label", "help with \\ and\nnewline", {{"v", "quote \" back \\ nl \n"}})->set(0.1);
  const auto expected = registry->samples();
  CHECK(expected.size() > 100);
  CHECK(parse_prometheus_text(registry->render_prometheus()) == expected);
}

TEST_CASE("prometheus text: a malformed line is refused naming its number and what was expected") {
  CHECK(error_of("ok 1\n{a=\"b\"} 1\n").find("line 2: expected a metric name") != std::string::npos);
  CHECK(error_of("x{a=\"b\" 1\n").find("line 1: expected , or } after a label value") != std::string::npos);
  CHECK(error_of("x{a=b} 1\n").find("expected a quoted label value") != std::string::npos);
  CHECK(error_of("x{a=\"b} 1\n").find("without its closing quote") != std::string::npos);
  CHECK(error_of("x{a=\"\\t\"} 1\n").find("unknown escape \\t") != std::string::npos);
  CHECK(error_of("x\n").find("expected a value after 'x'") != std::string::npos);
  CHECK(error_of("x 1.5.2\n").find("'1.5.2' is not a number") != std::string::npos);
  CHECK(error_of("x 1 soon\n").find("expected an integer timestamp") != std::string::npos);
  CHECK(error_of("x 1 2 3\n").find("unexpected text after the timestamp") != std::string::npos);
  CHECK(error_of("<html>not metrics</html>\n").find("line 1") != std::string::npos);
}

TEST_CASE("prometheus text: an empty page or one of comments only has no samples") {
  CHECK(parse_prometheus_text("").empty());
  CHECK(parse_prometheus_text("# HELP a b\n# TYPE a gauge\n\n   \n").empty());
}
