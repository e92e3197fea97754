// gguf::file::describe(): the text `troupe info` prints — header, metadata with long values
// abbreviated, the tensor table and the bytes per tensor type.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <variant>

#include "troupe/model/gguf.hpp"

namespace troupe::gguf {
namespace {

constexpr size_t max_array_elements_shown = 8;
constexpr size_t max_string_chars_shown = 80;

// The shortest text that reads back as the same value at the stored precision, so an f32
// 1e-5 prints as 1e-05, not 9.99999975e-06.
std::string format_number(double x, value_type type) {
  char buf[64];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, x);
    const double back = std::strtod(buf, nullptr);
    if (type == value_type::f32 ? static_cast<float>(back) == static_cast<float>(x) : back == x) break;
  }
  return buf;
}

// A string as a quoted literal: control bytes escaped, long strings cut with their length noted.
std::string format_string(const std::string& s) {
  std::string out = "\"";
  const size_t shown = std::min(s.size(), max_string_chars_shown);
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (shown < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string format_array(const array_value& a) {
  std::string out = "[";
  out += to_string(a.element_type);
  out += " x " + std::to_string(a.size()) + "] [";
  const size_t shown = std::min(a.size(), max_array_elements_shown);
  for (size_t i = 0; i < shown; ++i) {
    if (i != 0) out += ", ";
    if (a.element_type == value_type::string) {
      out += format_string(a.strings[i]);
    } else if (a.element_type == value_type::f32 || a.element_type == value_type::f64) {
      out += format_number(a.floats[i], a.element_type);
    } else if (a.element_type == value_type::boolean) {
      out += a.ints[i] != 0 ? "true" : "false";
    } else {
      out += std::to_string(a.ints[i]);
    }
  }
  if (shown < a.size()) out += ", ...";
  return out + "]";
}

std::string format_value(const value& v) {
  struct visitor {
    value_type type;
    std::string operator()(int64_t x) const { return std::to_string(x); }
    std::string operator()(uint64_t x) const { return std::to_string(x); }
    std::string operator()(double x) const { return format_number(x, type); }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
    std::string operator()(const std::string& s) const { return format_string(s); }
    std::string operator()(const array_value& a) const { return format_array(a); }
  };
  return std::visit(visitor{v.type}, v.data);
}

std::string format_dims(const tensor_info& t) {
  std::string out = "[";
  for (int d = 0; d < t.num_dims; ++d) {
    if (d != 0) out += ", ";
    out += std::to_string(t.dims[d]);
  }
  return out + "]";
}

std::string pad_right(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string pad_left(std::string s, size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

}  // namespace

std::string file::describe() const {
  std::string out;
  out += "GGUF version " + std::to_string(version_) + ", " + std::to_string(size_) + " bytes\n";
  out += "alignment: " + std::to_string(alignment_) + ", data offset: " + std::to_string(data_offset_) + "\n";
  out += "metadata: " + std::to_string(metadata_.size()) + " keys, tensors: " + std::to_string(tensors_.size()) + "\n";

  out += "\nmetadata:\n";
  for (const auto& [key, v] : metadata_) {
    out += "  " + key + " (" + std::string(to_string(v.type)) + ") = " + format_value(v) + "\n";
  }

  size_t name_width = 4;
  for (const auto& t : tensors_) name_width = std::max(name_width, t.name.size());
  out += "\ntensors:\n";
  out += "  " + pad_right("name", name_width) + "  " + pad_right("type", 5) + "  " + pad_right("dims", 24) +
         pad_left("bytes", 12) + pad_left("offset", 14) + "\n";
  std::map<std::string, std::pair<size_t, uint64_t>> by_type;  // name -> (tensors, bytes)
  uint64_t total_bytes = 0;
  for (const auto& t : tensors_) {
    const std::string type_name(traits_of(t.type).name);
    out += "  " + pad_right(t.name, name_width) + "  " + pad_right(type_name, 5) + "  " +
           pad_right(format_dims(t), 24) + pad_left(std::to_string(t.num_bytes), 12) +
           pad_left(std::to_string(t.offset), 14) + "\n";
    auto& [count, bytes] = by_type[type_name];
    ++count;
    bytes += t.num_bytes;
    total_bytes += t.num_bytes;
  }

  out += "\nbytes by type:\n";
  for (const auto& [type_name, entry] : by_type) {
    out += "  " + pad_right(type_name, 5) + pad_left(std::to_string(entry.first), 6) + " tensors" +
           pad_left(std::to_string(entry.second), 14) + " bytes\n";
  }
  out += "  total" + pad_left(std::to_string(tensors_.size()), 6) + " tensors" +
         pad_left(std::to_string(total_bytes), 14) + " bytes\n";
  return out;
}

}  // namespace troupe::gguf
