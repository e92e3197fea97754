// The metrics registry: counters, gauges and histograms (buckets, sum, count), label
// escaping, registration errors, updates from many threads, and the Prometheus text format
// parsed back line by line.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <thread>

#include "troupe/engine/metrics.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

// One line of the text format, parsed.
struct parsed_line {
  enum class kind { help, type, sample } what = kind::sample;
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped
  std::string text;                           // help text (unescaped), type name, or value
};

// Parses a line of the exposition format as a scraper would; fails the test on a malformed one.
parsed_line parse_line(const std::string& line) {
  parsed_line p;
  auto unescape = [&line](const std::string& s, bool quotes) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\') {
        out += s[i];
        continue;
      }
      REQUIRE(i + 1 < s.size());
      const char c = s[++i];
      if (c == 'n') out += '\n';
      else if (c == '\\') out += '\\';
      else if (c == '"' && quotes) out += '"';
      else FAIL("bad escape in: " << line);
    }
    return out;
  };
  if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
    p.what = line[2] == 'H' ? parsed_line::kind::help : parsed_line::kind::type;
    const auto rest = line.substr(7);
    const auto space = rest.find(' ');
    REQUIRE(space != std::string::npos);
    p.name = rest.substr(0, space);
    p.text = p.what == parsed_line::kind::help ? unescape(rest.substr(space + 1), false) : rest.substr(space + 1);
    return p;
  }
  size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ') p.name += line[i++];
  REQUIRE(i < line.size());
  if (line[i] == '{') {
    ++i;
    while (line.at(i) != '}') {
      const auto eq = line.find('=', i);
      REQUIRE(eq != std::string::npos);
      const auto label = line.substr(i, eq - i);
      REQUIRE(line.at(eq + 1) == '"');
      size_t j = eq + 2;
      std::string raw;
      while (line.at(j) != '"') {
        if (line[j] == '\\') raw += line[j++];
        raw += line.at(j++);
      }
      p.labels[label] = unescape(raw, true);
      i = j + 1;
      if (line.at(i) == ',') ++i;
    }
    ++i;
  }
  REQUIRE(line.at(i) == ' ');
  p.text = line.substr(i + 1);
  REQUIRE(p.text.find(' ') == std::string::npos);
  return p;
}

std::vector<parsed_line> parse_all(const std::string& text) {
  std::vector<parsed_line> out;
  REQUIRE((text.empty() || text.back() == '\n'));
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(parse_line(line));
  return out;
}

double value_of(const parsed_line& p) {
  if (p.text == "+Inf") return INFINITY;
  if (p.text == "NaN") return NAN;
  return std::stod(p.text);
}

}  // namespace

TEST_CASE("metrics: a histogram counts each observation in the first bucket whose bound is at least it") {
  histogram_metric h({0.1, 1.0, 10.0});
  for (double v : {0.05, 0.1, 0.5, 1.0, 7.0, 100.0, 1e9}) h.observe(v);
  const auto s = h.read();
  CHECK(s.cumulative_counts == std::vector<uint64_t>{2, 4, 5, 7});
  CHECK(s.count == 7);
  CHECK(s.sum == doctest::Approx(0.05 + 0.1 + 0.5 + 1.0 + 7.0 + 100.0 + 1e9));
}

TEST_CASE("metrics: a histogram ignores NaN and rejects bounds that are not strictly increasing") {
  histogram_metric h({1.0});
  h.observe(NAN);
  h.observe(-3.0);
  const auto s = h.read();
  CHECK(s.count == 1);
  CHECK(s.cumulative_counts.front() == 1);
  CHECK(s.sum == -3.0);
  CHECK_THROWS_AS(histogram_metric({1.0, 1.0}), error);
  CHECK_THROWS_AS(histogram_metric({2.0, 1.0}), error);
  CHECK_THROWS_AS(histogram_metric({1.0, INFINITY}), error);
}

TEST_CASE("metrics: exponential_buckets multiplies from start") {
  CHECK(exponential_buckets(1, 2, 4) == std::vector<double>{1, 2, 4, 8});
  CHECK_THROWS_AS(exponential_buckets(0, 2, 4), error);
  CHECK_THROWS_AS(exponential_buckets(1, 1, 4), error);
}

TEST_CASE("metrics: the same name and labels give the same metric, other labels another one") {
  metrics_registry r;
  auto* a = r.counter("troupe_things_total", "Things.", {{"kind", "a"}});
  auto* again = r.counter("troupe_things_total", "Things.", {{"kind", "a"}});
  auto* b = r.counter("troupe_things_total", "Things.", {{"kind", "b"}});
  CHECK(a == again);
  CHECK(a != b);
  a->inc();
  a->inc(2.5);
  CHECK(again->value() == 3.5);
  CHECK(b->value() == 0.0);
  auto* g = r.gauge("troupe_level", "Level.");
  g->set(5);
  g->dec(2);
  g->inc();
  CHECK(r.gauge("troupe_level", "Level.")->value() == 4.0);
}

TEST_CASE("metrics: registration refuses bad names, clashing types, other label names and other bounds") {
  metrics_registry r;
  CHECK_THROWS_AS(r.counter("9lives", "x"), error);
  CHECK_THROWS_AS(r.counter("has-dash", "x"), error);
  CHECK_THROWS_AS(r.counter("ok_total", "x", {{"bad-label", "v"}}), error);
  CHECK_THROWS_AS(r.counter("ok_total", "x", {{"__reserved", "v"}}), error);
  CHECK_THROWS_AS(r.histogram("h_seconds", "x", {1.0}, {{"le", "v"}}), error);
  CHECK_THROWS_AS(r.counter("ok_total", "x", {{"a", "1"}, {"a", "2"}}), error);
  r.counter("ok_total", "x", {{"a", "1"}, {"b", "2"}});
  CHECK_THROWS_AS(r.gauge("ok_total", "x", {{"a", "1"}, {"b", "2"}}), error);
  CHECK_THROWS_AS(r.counter("ok_total", "x", {{"b", "2"}, {"a", "1"}}), error);
  CHECK_THROWS_AS(r.counter("ok_total", "x"), error);
  r.histogram("h_seconds", "x", {1.0, 2.0});
  CHECK_THROWS_AS(r.histogram("h_seconds", "x", {1.0, 3.0}), error);
  CHECK_NOTHROW(r.counter("name:with_colon_total", "Recording-rule style names are legal."));
}

TEST_CASE("metrics: label values escape backslash, double quote and newline; help escapes backslash and newline") {
  CHECK(escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  CHECK(escape_label_value("plain /v1/chat") == "plain /v1/chat");
  CHECK(escape_help("one\\two\nthree \"quoted\"") == "one\\\\two\\nthree \"quoted\"");
  metrics_registry r;
  r.counter("troupe_http_requests_total", "Requests.", {{"route", "/a\"b\\c\nd"}})->inc();
  const auto text = r.render_prometheus();
  CHECK(text.find("troupe_http_requests_total{route=\"/a\\\"b\\\\c\\nd\"} 1\n") != std::string::npos);
}

TEST_CASE("metrics: values print as shortest decimals, with +Inf, -Inf and NaN spelled as Prometheus does") {
  CHECK(format_metric_value(3) == "3");
  CHECK(format_metric_value(0.1) == "0.1");
  CHECK(format_metric_value(-2.5) == "-2.5");
  CHECK(format_metric_value(INFINITY) == "+Inf");
  CHECK(format_metric_value(-INFINITY) == "-Inf");
  CHECK(format_metric_value(NAN) == "NaN");
  CHECK(std::stod(format_metric_value(1.0 / 3.0)) == 1.0 / 3.0);
}

TEST_CASE("metrics: the rendered text parses back line by line into the families, labels and values put in") {
  metrics_registry r;
  r.counter("troupe_req_total", "Requests\nby reason.", {{"reason", "stop"}})->inc(3);
  r.counter("troupe_req_total", "Requests\nby reason.", {{"reason", "len\"gth"}})->inc(1);
  r.gauge("troupe_running", "Running now.")->set(7);
  auto* h = r.histogram("troupe_latency_seconds", "Latency.", {0.5, 1.0}, {{"route", "/x"}});
  for (double v : {0.25, 0.75, 0.75, 4.0}) h->observe(v);

  const auto lines = parse_all(r.render_prometheus());
  std::map<std::string, std::string> types;
  std::map<std::string, std::string> helps;
  std::string current;  // the family the samples belong to, from the last # TYPE
  std::map<std::string, double> samples;  // "name{k=v,...}" -> value
  for (const auto& p : lines) {
    if (p.what == parsed_line::kind::help) {
      helps[p.name] = p.text;
    } else if (p.what == parsed_line::kind::type) {
      CHECK(helps.count(p.name));  // HELP comes first
      types[p.name] = p.text;
      current = p.name;
    } else {
      // A sample is named after its family (or, in a histogram, family_bucket/_sum/_count).
      const bool is_own = p.name == current || (types[current] == "histogram" &&
                                                (p.name == current + "_bucket" || p.name == current + "_sum" ||
                                                 p.name == current + "_count"));
      CHECK_MESSAGE(is_own, p.name << " under # TYPE " << current);
      std::string key = p.name + "{";
      for (const auto& [k, v] : p.labels) key += k + "=" + v + ",";
      samples[key + "}"] = value_of(p);
    }
  }
  CHECK(types == std::map<std::string, std::string>{
                     {"troupe_latency_seconds", "histogram"}, {"troupe_req_total", "counter"}, {"troupe_running", "gauge"}});
  CHECK(helps["troupe_req_total"] == "Requests\nby reason.");
  CHECK(samples.at("troupe_req_total{reason=stop,}") == 3);
  CHECK(samples.at("troupe_req_total{reason=len\"gth,}") == 1);
  CHECK(samples.at("troupe_running{}") == 7);
  CHECK(samples.at("troupe_latency_seconds_bucket{le=0.5,route=/x,}") == 1);
  CHECK(samples.at("troupe_latency_seconds_bucket{le=1,route=/x,}") == 3);
  CHECK(samples.at("troupe_latency_seconds_bucket{le=+Inf,route=/x,}") == 4);
  CHECK(samples.at("troupe_latency_seconds_count{route=/x,}") == 4);
  CHECK(samples.at("troupe_latency_seconds_sum{route=/x,}") == doctest::Approx(5.75));
  CHECK(samples.size() == 8);
}

TEST_CASE("metrics: a histogram's bucket lines come in bound order with le last among the labels") {
  metrics_registry r;
  r.histogram("troupe_h", "H.", {1, 2}, {{"a", "x"}})->observe(1.5);
  const auto text = r.render_prometheus();
  const auto b1 = text.find("troupe_h_bucket{a=\"x\",le=\"1\"} 0\n");
  const auto b2 = text.find("troupe_h_bucket{a=\"x\",le=\"2\"} 1\n");
  const auto inf = text.find("troupe_h_bucket{a=\"x\",le=\"+Inf\"} 1\n");
  REQUIRE(b1 != std::string::npos);
  REQUIRE(b2 != std::string::npos);
  REQUIRE(inf != std::string::npos);
  CHECK(b1 < b2);
  CHECK(b2 < inf);
  CHECK(text.find("troupe_h_sum{a=\"x\"} 1.5\n") != std::string::npos);
  CHECK(text.find("troupe_h_count{a=\"x\"} 1\n") != std::string::npos);
}

TEST_CASE("metrics: updates from many threads while another renders lose nothing") {
  metrics_registry r;
  auto* c = r.counter("troupe_c_total", "C.");
  auto* h = r.histogram("troupe_h", "H.", {10, 100});
  constexpr int num_threads = 4;
  constexpr int num_updates = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < num_updates; ++i) {
        c->inc();
        h->observe(i % 200);
        if (i % 5000 == 0) r.counter("troupe_per_thread_total", "P.", {{"thread", std::to_string(t)}})->inc();
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    const auto s = h->read();
    CHECK(s.cumulative_counts.back() == s.count);  // buckets and count agree even mid-update
    parse_all(r.render_prometheus());
  }
  for (auto& t : threads) t.join();
  CHECK(c->value() == num_threads * num_updates);
  const auto s = h->read();
  CHECK(s.count == num_threads * num_updates);
  CHECK(s.cumulative_counts[0] == num_threads * (num_updates / 200) * 11);   // 0..10 of each 200
  CHECK(s.cumulative_counts[1] == num_threads * (num_updates / 200) * 101);  // 0..100
  for (int t = 0; t < num_threads; ++t) {
    CHECK(r.counter("troupe_per_thread_total", "P.", {{"thread", std::to_string(t)}})->value() == 4);
  }
}
