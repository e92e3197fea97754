// json_read: type checks before each read, so that "wrong type" (a client mistake, 400
// invalid_request) is told apart from "not JSON" (400 invalid_json).
#include "troupe/net/json_read.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>

namespace troupe::net::json_read {
using simdjson::ondemand::json_type;

namespace {

const char* describe(json_type type) {
  switch (type) {
    case json_type::array: return "an array";
    case json_type::object: return "an object";
    case json_type::number: return "a number";
    case json_type::string: return "a string";
    case json_type::boolean: return "a boolean";
    case json_type::null: return "null";
  }
  return "something else";
}

// The parser types a value by its first byte; a misspelled literal ("tru", "not json") or a
// broken number ("-") is not JSON, whatever type was wanted. json: a value or a document.
template <typename json>
simdjson::error_code check_scalar(json& v, json_type type) {
  bool b = false;
  double d = 0;
  std::string_view s;
  switch (type) {
    case json_type::boolean: return v.get_bool().get(b);
    case json_type::null: {
      const simdjson::error_code ec = v.is_null().get(b);
      return ec ? ec : (b ? simdjson::SUCCESS : simdjson::INCORRECT_TYPE);
    }
    case json_type::number: return v.get_double().get(d);
    case json_type::string: return v.get_string().get(s);
    case json_type::array:
    case json_type::object: break;  // checked as their members are read, or refused unread
  }
  return simdjson::SUCCESS;
}

// Throws "<field> must be <expected>, got <what was sent>" unless v has the wanted type.
void require_type(value& v, std::string_view field, json_type wanted, const char* expected) {
  const json_type type = type_of(v, field);
  if (type == wanted) return;
  if (const auto ec = check_scalar(v, type)) fail_malformed(field, ec);
  fail_request(std::string(field).append(" must be ").append(expected).append(", got ").append(describe(type)), field);
}

std::string format_double(double d) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, d);
  return std::string(buffer, result.ptr);
}

// After get_int64 / get_uint64 failed on a number: why, given its value as a double.
[[noreturn]] void fail_not_integer(value& v, std::string_view field, const char* range) {
  double d = 0;
  if (const auto ec = v.get_double().get(d)) fail_malformed(field, ec);
  if (d != std::floor(d)) {
    fail_request(std::string(field).append(" must be an integer, got ").append(format_double(d)), field);
  }
  fail_request(std::string(field).append(" must be in ").append(range).append(", got ").append(format_double(d)), field);
}

// An integer written as 1.0 or 1e3: taken when it is exact in a double.
std::optional<double> integral_double(value& v) {
  double d = 0;
  if (v.get_double().get(d) || d != std::floor(d) || std::fabs(d) > 9007199254740992.0) return std::nullopt;
  return d;
}

}  // namespace

void fail(api_error e) { throw parse_failure{std::move(e)}; }

void fail_request(std::string message, std::string_view param) {
  fail(invalid_request(std::move(message), std::string(param)));
}

void fail_malformed(std::string_view field, simdjson::error_code code) {
  std::string message = "malformed JSON";
  if (!field.empty()) message.append(" in ").append(field);
  fail(invalid_json(message.append(": ").append(simdjson::error_message(code))));
}

std::string indexed(std::string_view field, size_t index) {
  return std::string(field).append("[").append(std::to_string(index)).append("]");
}

json_type type_of(value& v, std::string_view field) {
  json_type type{};
  if (const auto ec = v.type().get(type)) fail_malformed(field, ec);
  return type;
}

bool is_null(value& v, std::string_view field) {
  if (type_of(v, field) != json_type::null) return false;
  if (const auto ec = check_scalar(v, json_type::null)) fail_malformed(field, ec);  // "nul", "nulx"
  return true;
}

double read_double(value& v, std::string_view field) {
  require_type(v, field, json_type::number, "a number");
  double d = 0;
  if (const auto ec = v.get_double().get(d)) fail_malformed(field, ec);
  return d;
}

float read_float(value& v, std::string_view field) { return static_cast<float>(read_double(v, field)); }

int64_t read_int64(value& v, std::string_view field) {
  require_type(v, field, json_type::number, "an integer");
  int64_t i = 0;
  if (!v.get_int64().get(i)) return i;
  if (const std::optional<double> d = integral_double(v)) return static_cast<int64_t>(*d);
  fail_not_integer(v, field, "[-9223372036854775808, 9223372036854775807]");
}

int32_t read_int32(value& v, std::string_view field) {
  const int64_t i = read_int64(v, field);
  if (i < std::numeric_limits<int32_t>::min() || i > std::numeric_limits<int32_t>::max()) {
    fail_request(std::string(field).append(" must be in [-2147483648, 2147483647], got ").append(std::to_string(i)), field);
  }
  return static_cast<int32_t>(i);
}

uint64_t read_uint64(value& v, std::string_view field) {
  require_type(v, field, json_type::number, "an integer");
  uint64_t u = 0;
  if (!v.get_uint64().get(u)) return u;
  if (const std::optional<double> d = integral_double(v); d && *d >= 0) return static_cast<uint64_t>(*d);
  fail_not_integer(v, field, "[0, 18446744073709551615]");
}

bool read_bool(value& v, std::string_view field) {
  require_type(v, field, json_type::boolean, "true or false");
  bool b = false;
  if (const auto ec = v.get_bool().get(b)) fail_malformed(field, ec);
  return b;
}

std::string_view read_string_view(value& v, std::string_view field) {
  require_type(v, field, json_type::string, "a string");
  std::string_view s;
  if (const auto ec = v.get_string().get(s)) fail_malformed(field, ec);
  return s;
}

std::string read_string(value& v, std::string_view field) { return std::string(read_string_view(v, field)); }

object read_object(value& v, std::string_view field) {
  require_type(v, field, json_type::object, "an object");
  object obj;
  if (const auto ec = v.get_object().get(obj)) fail_malformed(field, ec);
  return obj;
}

array read_array(value& v, std::string_view field) {
  require_type(v, field, json_type::array, "an array");
  array arr;
  if (const auto ec = v.get_array().get(arr)) fail_malformed(field, ec);
  return arr;
}

void copy_value(value& v, std::string_view field, json_writer& w, int max_depth) {
  const json_type type = type_of(v, field);
  const bool is_container = type == json_type::array || type == json_type::object;
  if (is_container && max_depth <= 0) fail_request(std::string(field).append(" is nested too deeply"), field);
  switch (type) {
    case json_type::array:
      w.begin_array();
      for_each_element(read_array(v, field), field,
                       [&](size_t, value& element) { copy_value(element, field, w, max_depth - 1); });
      w.end_array();
      return;
    case json_type::object:
      w.begin_object();
      for_each_field(read_object(v, field), field, [&](std::string_view key, value& member) {
        w.key(key);
        copy_value(member, field, w, max_depth - 1);
      });
      w.end_object();
      return;
    case json_type::number: {
      // The number's own text, once the parser agrees it is a number: 12345678901234567890
      // and 0.1 come back as sent, not rounded through a double. An integer past 64 bits
      // becomes the double it reads as (as in JavaScript): simdjson's DOM parser, and so
      // clients built on it, refuse such integers. It is written with an exponent, which
      // makes it a double to every parser (the shortest form of 5.6e19 is 20 digits with no
      // exponent: an integer past 64 bits again).
      std::string_view token = v.raw_json_token();
      double d = 0;
      if (const auto ec = v.get_double().get(d)) fail_malformed(field, ec);
      int64_t i = 0;
      uint64_t u = 0;
      const bool is_integer_text = token.find_first_of(".eE") == std::string_view::npos;
      if (is_integer_text && v.get_int64().get(i) && v.get_uint64().get(u)) {
        char text[32];
        const auto end = std::to_chars(text, text + sizeof text, d, std::chars_format::scientific).ptr;
        w.raw(std::string_view(text, static_cast<size_t>(end - text)));
        return;
      }
      while (!token.empty() && (token.back() == ' ' || token.back() == '\n' || token.back() == '\r' ||
                                token.back() == '\t')) {
        token.remove_suffix(1);
      }
      w.raw(token);
      return;
    }
    case json_type::string: w.value(read_string_view(v, field)); return;
    case json_type::boolean: w.value(read_bool(v, field)); return;
    case json_type::null:
      is_null(v, field);
      w.null();
      return;
  }
}

namespace {
thread_local uint64_t key_comparisons = 0;

[[noreturn]] void fail_duplicate(std::string_view key, std::string_view where) {
  std::string message = "duplicate field \"";
  message.append(key).append("\"");
  if (!where.empty()) message.append(" in ").append(where);
  fail_request(std::move(message), key);
}
}  // namespace

uint64_t num_key_comparisons() { return key_comparisons; }

bool key_set::counted_equal::operator()(std::string_view a, std::string_view b) const {
  ++key_comparisons;
  return a == b;
}

void key_set::insert(std::string_view key, std::string_view where) {
  if (large_.empty()) {
    for (std::string_view seen : small_) {
      ++key_comparisons;
      if (seen == key) fail_duplicate(key, where);
    }
    if (small_.size() < small_size) {
      small_.push_back(key);
      return;
    }
    // Distinct so far, so no comparison finds a match: moving them costs one hash each.
    large_.reserve(small_size * 4);
    large_.insert(small_.begin(), small_.end());
    small_.clear();
  }
  if (!large_.insert(key).second) fail_duplicate(key, where);
}

object document_reader::open_object(std::string_view text, std::string_view what) {
  buffer_.resize(text.size() + simdjson::SIMDJSON_PADDING);
  std::copy(text.begin(), text.end(), buffer_.begin());
  const simdjson::padded_string_view padded(buffer_.data(), text.size(), buffer_.size());
  if (const auto ec = parser_.iterate(padded).get(doc_)) fail_malformed({}, ec);
  json_type type{};
  if (const auto ec = doc_.type().get(type)) fail_malformed({}, ec);
  if (type != json_type::object) {
    if (const auto ec = check_scalar(doc_, type)) fail_malformed({}, ec);
    fail_request(std::string(what).append(" must be a JSON object, got ").append(describe(type)), {});
  }
  object obj;
  if (const auto ec = doc_.get_object().get(obj)) fail_malformed({}, ec);
  return obj;
}

void document_reader::expect_end() {
  // current_location succeeds only while unread text remains.
  const char* rest = nullptr;
  if (!doc_.current_location().get(rest)) fail_malformed({}, simdjson::TRAILING_CONTENT);
}

document_reader& thread_document_reader() {
  thread_local document_reader reader;
  return reader;
}

}  // namespace troupe::net::json_read
