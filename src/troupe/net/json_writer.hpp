// json_writer: a small streaming JSON writer for the wire codecs. Whatever the model emits, the
// output is valid JSON: strings are escaped and invalid UTF-8 becomes U+FFFD, non-finite numbers
// become null, and a misplaced key or unbalanced end throws instead of writing broken text.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::net {

class json_writer {
 public:
  json_writer& begin_object();
  json_writer& end_object();
  json_writer& begin_array();
  json_writer& end_array();
  json_writer& key(std::string_view k);

  json_writer& value(std::string_view s);
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  json_writer& value(int64_t v);
  json_writer& value(int32_t v) { return value(static_cast<int64_t>(v)); }
  json_writer& value(uint32_t v) { return value(static_cast<uint64_t>(v)); }
  json_writer& value(uint64_t v);
  json_writer& value(double v);  // shortest text that reads back to the same double
  json_writer& value(float v);   // shortest text that reads back to the same float: -0.12, not -0.11999999
  json_writer& value(bool v);
  json_writer& null();
  // Splices text the caller vouches for (a value parsed and re-serialized earlier).
  json_writer& raw(std::string_view already_valid_json);

  // The document so far; throws troupe::error(internal) while an object or array is open.
  const std::string& str() const;
  std::string take();

  bool is_complete() const { return has_root_ && scopes_.empty(); }

 private:
  enum class scope : uint8_t { object, array };

  void before_value();
  void end_scope(scope expected);

  std::string out_;
  std::vector<scope> scopes_;
  bool needs_comma_ = false;  // a value or member was written at this level
  bool is_after_key_ = false;
  bool has_root_ = false;
};

// Appends s as a JSON string literal (quotes included) to out; see json_writer.
void append_json_string(std::string& out, std::string_view s);

}  // namespace troupe::net
