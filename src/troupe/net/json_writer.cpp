// json_writer: structure checks, string escaping with U+FFFD for invalid UTF-8, and number
// formatting with std::to_chars (shortest round-trip form, locale-free).
#include "troupe/net/json_writer.hpp"

#include <charconv>
#include <cmath>

#include "troupe/model/error.hpp"
#include "troupe/model/unicode.hpp"

namespace troupe::net {
namespace {

[[noreturn]] void misuse(const char* what) {
  throw error(error_code::internal, std::string("json_writer: ").append(what));
}

constexpr std::string_view replacement_utf8 = "\xEF\xBF\xBD";

// Bytes that can be copied as they are: printable ASCII other than the quote and backslash.
bool is_plain_ascii(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

void append_escape(std::string& out, unsigned char c) {
  switch (c) {
    case '"': out.append("\\\""); return;
    case '\\': out.append("\\\\"); return;
    case '\b': out.append("\\b"); return;
    case '\f': out.append("\\f"); return;
    case '\n': out.append("\\n"); return;
    case '\r': out.append("\\r"); return;
    case '\t': out.append("\\t"); return;
    default: break;
  }
  static constexpr char hex[] = "0123456789abcdef";
  const char escaped[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
  out.append(escaped, sizeof escaped);
}

template <typename T>
void append_number(std::string& out, T v) {
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  if (ec != std::errc()) misuse("number does not fit its buffer");
  out.append(buffer, end);
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t clean_from = 0;  // start of the run of bytes not yet copied
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_plain_ascii(c)) {
      ++i;
      continue;
    }
    if (c < 0x80) {
      out.append(s.substr(clean_from, i - clean_from));
      append_escape(out, c);
      clean_from = ++i;
      continue;
    }
    // U+2028 and U+2029 stay raw: JSON allows them, and every reader here is a JSON parser.
    const int length = unicode::check_sequence(s.substr(i));
    if (length > 0) {
      i += static_cast<size_t>(length);
      continue;
    }
    out.append(s.substr(clean_from, i - clean_from));
    out.append(replacement_utf8);
    i = length == 0 ? s.size() : i + static_cast<size_t>(-length);  // 0: a truncated last character
    clean_from = i;
  }
  out.append(s.substr(clean_from));
  out.push_back('"');
}

void json_writer::before_value() {
  if (is_after_key_) {
    is_after_key_ = false;
    return;
  }
  if (scopes_.empty()) {
    if (has_root_) misuse("a second value at the top level");
    has_root_ = true;
    return;
  }
  if (scopes_.back() == scope::object) misuse("a value inside an object needs a key first");
  if (needs_comma_) out_.push_back(',');
}

json_writer& json_writer::begin_object() {
  before_value();
  out_.push_back('{');
  scopes_.push_back(scope::object);
  needs_comma_ = false;
  return *this;
}

json_writer& json_writer::begin_array() {
  before_value();
  out_.push_back('[');
  scopes_.push_back(scope::array);
  needs_comma_ = false;
  return *this;
}

void json_writer::end_scope(scope expected) {
  if (scopes_.empty() || scopes_.back() != expected) misuse("end does not match the open object or array");
  if (is_after_key_) misuse("a key without a value");
  scopes_.pop_back();
  out_.push_back(expected == scope::object ? '}' : ']');
  needs_comma_ = true;
}

json_writer& json_writer::end_object() {
  end_scope(scope::object);
  return *this;
}

json_writer& json_writer::end_array() {
  end_scope(scope::array);
  return *this;
}

json_writer& json_writer::key(std::string_view k) {
  if (scopes_.empty() || scopes_.back() != scope::object) misuse("a key outside an object");
  if (is_after_key_) misuse("two keys in a row");
  if (needs_comma_) out_.push_back(',');
  append_json_string(out_, k);
  out_.push_back(':');
  is_after_key_ = true;
  needs_comma_ = true;
  return *this;
}

json_writer& json_writer::value(std::string_view s) {
  before_value();
  append_json_string(out_, s);
  needs_comma_ = true;
  return *this;
}

json_writer& json_writer::value(int64_t v) {
  before_value();
  append_number(out_, v);
  needs_comma_ = true;
  return *this;
}

json_writer& json_writer::value(uint64_t v) {
  before_value();
  append_number(out_, v);
  needs_comma_ = true;
  return *this;
}

json_writer& json_writer::value(double v) {
  if (!std::isfinite(v)) return null();
  before_value();
  append_number(out_, v);
  needs_comma_ = true;
  return *this;
}

json_writer& json_writer::value(float v) {
  if (!std::isfinite(v)) return null();
  before_value();
  append_number(out_, v);
  needs_comma_ = true;
  return *this;
}

json_writer& json_writer::value(bool v) { return raw(v ? "true" : "false"); }

json_writer& json_writer::null() { return raw("null"); }

json_writer& json_writer::raw(std::string_view already_valid_json) {
  before_value();
  out_.append(already_valid_json);
  needs_comma_ = true;
  return *this;
}

const std::string& json_writer::str() const {
  if (!is_complete()) misuse("the document is not complete");
  return out_;
}

std::string json_writer::take() {
  if (!is_complete()) misuse("the document is not complete");
  std::string out = std::move(out_);
  out_.clear();
  scopes_.clear();
  needs_comma_ = is_after_key_ = has_root_ = false;
  return out;
}

}  // namespace troupe::net
