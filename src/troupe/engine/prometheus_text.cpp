// parse_prometheus_text: one pass over the lines, a small cursor per sample line.
#include "troupe/engine/prometheus_text.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_blank(char c) { return c == ' ' || c == '\t'; }

class line_reader {
 public:
  line_reader(std::string_view line, size_t line_number) : line_(line), line_number_(line_number) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw error(error_code::invalid_argument, "metrics text, line " + std::to_string(line_number_) + ": " + what +
                                                  " (at column " + std::to_string(pos_ + 1) + ")");
  }
  void skip_blanks() {
    while (pos_ < line_.size() && is_blank(line_[pos_])) ++pos_;
  }
  bool at_end() const { return pos_ >= line_.size(); }
  bool take(char c) {
    if (pos_ < line_.size() && line_[pos_] == c) return ++pos_, true;
    return false;
  }
  std::string name(const char* what) {
    const size_t start = pos_;
    if (pos_ < line_.size() && is_name_start(line_[pos_])) {
      ++pos_;
      while (pos_ < line_.size() && is_name_char(line_[pos_])) ++pos_;
    }
    if (pos_ == start) fail(std::string("expected ") + what);
    return std::string(line_.substr(start, pos_ - start));
  }
  std::string quoted() {
    if (!take('"')) fail("expected a quoted label value");
    std::string out;
    while (pos_ < line_.size() && line_[pos_] != '"') {
      char c = line_[pos_++];
      if (c == '\\') {
        if (pos_ >= line_.size()) break;
        const char e = line_[pos_++];
        if (e == 'n') c = '\n';
        else if (e == '\\' || e == '"') c = e;
        else fail(std::string("unknown escape \\") + e + " in a label value (allowed: \\\\, \\\", \\n)");
      }
      out += c;
    }
    if (!take('"')) fail("label value without its closing quote");
    return out;
  }
  std::string_view word() {
    const size_t start = pos_;
    while (pos_ < line_.size() && !is_blank(line_[pos_])) ++pos_;
    return line_.substr(start, pos_ - start);
  }

 private:
  std::string_view line_;
  size_t line_number_;
  size_t pos_ = 0;
};

bool read_value(std::string_view text, double& value) {
  if (text == "+Inf" || text == "Inf") return value = std::numeric_limits<double>::infinity(), true;
  if (text == "-Inf") return value = -std::numeric_limits<double>::infinity(), true;
  if (text == "NaN") return value = std::numeric_limits<double>::quiet_NaN(), true;
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && std::isfinite(value);
}

metric_sample read_sample(line_reader& in) {
  metric_sample sample;
  sample.name = in.name("a metric name");
  in.skip_blanks();
  if (in.take('{')) {
    in.skip_blanks();
    while (!in.take('}')) {
      std::string label = in.name("a label name or }");
      in.skip_blanks();
      if (!in.take('=')) in.fail("expected = after label '" + label + "'");
      in.skip_blanks();
      sample.labels.emplace_back(std::move(label), in.quoted());
      in.skip_blanks();
      if (in.take(',')) {
        in.skip_blanks();
      } else if (!in.take('}')) {
        in.fail("expected , or } after a label value");
      } else {
        break;
      }
    }
  }
  in.skip_blanks();
  const auto value = in.word();
  if (value.empty()) in.fail("expected a value after '" + sample.name + "'");
  if (!read_value(value, sample.value)) {
    in.fail("'" + std::string(value) + "' is not a number (a decimal, +Inf, -Inf or NaN)");
  }
  in.skip_blanks();
  if (!in.at_end()) {
    const auto stamp = in.word();
    int64_t ignored = 0;
    const auto [end, ec] = std::from_chars(stamp.data(), stamp.data() + stamp.size(), ignored);
    if (ec != std::errc() || end != stamp.data() + stamp.size()) in.fail("expected an integer timestamp or the end");
    in.skip_blanks();
    if (!in.at_end()) in.fail("unexpected text after the timestamp");
  }
  return sample;
}

}  // namespace

std::vector<metric_sample> parse_prometheus_text(std::string_view text) {
  std::vector<metric_sample> samples;
  size_t line_number = 0;
  while (!text.empty()) {
    const auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t first = 0;
    while (first < line.size() && is_blank(line[first])) ++first;
    if (first == line.size() || line[first] == '#') continue;
    line_reader in(line.substr(first), line_number);
    samples.push_back(read_sample(in));
  }
  return samples;
}

}  // namespace troupe
