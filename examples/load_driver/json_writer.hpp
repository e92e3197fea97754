// A small writer for the JSON the driver sends and saves: objects, arrays, escaped strings,
// numbers (non-finite ones as null). It adds commas; the caller nests keys and values.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::load {

class json_writer {
 public:
  json_writer& begin_object() { return open('{'); }
  json_writer& end_object() { return close('}'); }
  json_writer& begin_array() { return open('['); }
  json_writer& end_array() { return close(']'); }

  json_writer& key(std::string_view k) {
    comma();
    append_string(k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  json_writer& value(std::string_view s) {
    comma();
    append_string(s);
    return *this;
  }
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  json_writer& value(const std::string& s) { return value(std::string_view(s)); }
  json_writer& value(bool b) {
    comma();
    out_ += b ? "true" : "false";
    return *this;
  }
  json_writer& value(int64_t n) {
    comma();
    out_ += std::to_string(n);
    return *this;
  }
  json_writer& value(uint64_t n) {
    comma();
    out_ += std::to_string(n);
    return *this;
  }
  json_writer& value(int n) { return value(static_cast<int64_t>(n)); }
  json_writer& value(double d) {
    comma();
    if (!std::isfinite(d)) {
      out_ += "null";
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", d);
      out_ += buf;
    }
    return *this;
  }
  json_writer& null() {
    comma();
    out_ += "null";
    return *this;
  }
  // Inserts already-serialized JSON as one value.
  json_writer& raw(std::string_view json) {
    comma();
    out_ += json;
    return *this;
  }

  const std::string& str() const { return out_; }

 private:
  json_writer& open(char c) {
    comma();
    out_ += c;
    has_item_.push_back(false);
    return *this;
  }
  json_writer& close(char c) {
    out_ += c;
    has_item_.pop_back();
    return *this;
  }
  void comma() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!has_item_.empty()) {
      if (has_item_.back()) out_ += ',';
      has_item_.back() = true;
    }
  }
  void append_string(std::string_view s) {
    out_ += '"';
    for (const char c : s) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
            out_ += buf;
          } else {
            out_ += c;
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  std::vector<bool> has_item_;
  bool after_key_ = false;
};

}  // namespace troupe::load
