// A small JSON Schema validator for the keywords the grammar compiler supports, used to
// check what random walks over a real vocabulary produce. oneOf is checked as anyOf (as
// the compiler treats it); where properties are declared, undeclared keys are refused
// (troupe's documented reading of additionalProperties).
#pragma once
#include <simdjson.h>

#include <regex>
#include <string>

namespace troupe::test {

class schema_validator {
 public:
  explicit schema_validator(simdjson::dom::element root) : root_(root) {}

  // Empty when `value` satisfies `schema`; otherwise what failed.
  std::string check(simdjson::dom::element schema, simdjson::dom::element value, const std::string& path = "$") {
    using simdjson::dom::element_type;
    if (schema.type() == element_type::BOOL) return schema.get_bool().value() ? "" : path + ": false schema";
    const simdjson::dom::object s = schema.get_object().value();
    simdjson::dom::element e;
    if (s["$ref"].get(e) == simdjson::SUCCESS) {
      const std::string_view ref = e.get_string().value();
      simdjson::dom::element target;
      if (root_.at_pointer(ref.substr(1)).get(target) != simdjson::SUCCESS) return path + ": bad $ref";
      return check(target, value, path);
    }
    const std::string text = simdjson::minify(value);
    if (s["const"].get(e) == simdjson::SUCCESS && simdjson::minify(e) != text) return path + ": not the const";
    if (s["enum"].get(e) == simdjson::SUCCESS) {
      bool found = false;
      for (const auto v : as_array(e)) found = found || simdjson::minify(v) == text;
      if (!found) return path + ": not in the enum";
    }
    for (const char* any : {"anyOf", "oneOf"}) {
      if (s[any].get(e) != simdjson::SUCCESS) continue;
      bool found = false;
      for (const auto option : as_array(e)) found = found || check(option, value, path).empty();
      if (!found) return path + ": no " + any + " option matches";
    }
    if (s["allOf"].get(e) == simdjson::SUCCESS) {
      for (const auto option : as_array(e)) {
        if (std::string why = check(option, value, path); !why.empty()) return why;
      }
    }
    if (s["type"].get(e) == simdjson::SUCCESS) {
      bool found = false;
      if (e.type() == element_type::STRING) {
        found = has_type(value, e.get_string().value());
      } else {
        for (const auto t : as_array(e)) found = found || has_type(value, t.get_string().value());
      }
      if (!found) return path + ": wrong type";
    }
    switch (value.type()) {
      case element_type::OBJECT: return check_object(s, value.get_object().value(), path);
      case element_type::ARRAY: return check_array(s, value.get_array().value(), path);
      case element_type::STRING: return check_string(s, value.get_string().value(), path);
      case element_type::INT64: return check_integer(s, value.get_int64().value(), path);
      case element_type::UINT64: return check_integer(s, static_cast<int64_t>(value.get_uint64().value()), path);
      default: return "";
    }
  }

 private:
  // By value: a range-for over get_array().value() would keep a reference into a temporary.
  static simdjson::dom::array as_array(simdjson::dom::element e) {
    simdjson::dom::array a = e.get_array().value();
    return a;
  }

  static bool has_type(simdjson::dom::element v, std::string_view t) {
    using simdjson::dom::element_type;
    const element_type k = v.type();
    if (t == "object") return k == element_type::OBJECT;
    if (t == "array") return k == element_type::ARRAY;
    if (t == "string") return k == element_type::STRING;
    if (t == "boolean") return k == element_type::BOOL;
    if (t == "null") return k == element_type::NULL_VALUE;
    if (t == "integer") return k == element_type::INT64 || k == element_type::UINT64;
    if (t == "number") return k == element_type::INT64 || k == element_type::UINT64 || k == element_type::DOUBLE;
    return false;
  }

  std::string check_object(const simdjson::dom::object& s, const simdjson::dom::object& v, const std::string& path) {
    simdjson::dom::element props, additional, required;
    const bool has_props = s["properties"].get(props) == simdjson::SUCCESS;
    const bool has_additional = s["additionalProperties"].get(additional) == simdjson::SUCCESS;
    for (const auto field : v) {
      const std::string sub = path + "." + std::string(field.key);
      simdjson::dom::element p;
      if (has_props && props.get_object()[field.key].get(p) == simdjson::SUCCESS) {
        if (std::string why = check(p, field.value, sub); !why.empty()) return why;
      } else if (has_props) {
        return sub + ": undeclared property";
      } else if (has_additional) {
        if (std::string why = check(additional, field.value, sub); !why.empty()) return why;
      }
    }
    if (s["required"].get(required) == simdjson::SUCCESS) {
      for (const auto name : as_array(required)) {
        simdjson::dom::element unused;
        if (v[name.get_string().value()].get(unused) != simdjson::SUCCESS) return path + ": missing a required property";
      }
    }
    return "";
  }

  std::string check_array(const simdjson::dom::object& s, const simdjson::dom::array& v, const std::string& path) {
    simdjson::dom::element e;
    if (s["minItems"].get(e) == simdjson::SUCCESS && v.size() < e.get_uint64().value()) return path + ": too few items";
    if (s["maxItems"].get(e) == simdjson::SUCCESS && v.size() > e.get_uint64().value()) return path + ": too many items";
    if (s["items"].get(e) == simdjson::SUCCESS) {
      size_t i = 0;
      for (const auto item : v) {
        if (std::string why = check(e, item, path + "[" + std::to_string(i++) + "]"); !why.empty()) return why;
      }
    }
    return "";
  }

  static std::string check_string(const simdjson::dom::object& s, std::string_view v, const std::string& path) {
    size_t num_chars = 0;
    for (const char c : v) num_chars += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
    simdjson::dom::element e;
    if (s["minLength"].get(e) == simdjson::SUCCESS && num_chars < e.get_uint64().value()) return path + ": too short";
    if (s["maxLength"].get(e) == simdjson::SUCCESS && num_chars > e.get_uint64().value()) return path + ": too long";
    if (s["pattern"].get(e) == simdjson::SUCCESS) {
      // std::regex recurses per character and overflows the stack on long texts; a pattern
      // without metacharacters is a plain substring search.
      const std::string pattern(e.get_string().value());
      const bool is_plain = pattern.find_first_of("\\^$.|?*+()[]{}") == std::string::npos;
      const bool found = is_plain ? v.find(pattern) != std::string_view::npos
                                  : std::regex_search(std::string(v), std::regex(pattern, std::regex::ECMAScript));
      if (!found) return path + ": does not match the pattern";
    }
    return "";
  }

  static std::string check_integer(const simdjson::dom::object& s, int64_t v, const std::string& path) {
    simdjson::dom::element e;
    double b = 0;
    if (s["minimum"].get(e) == simdjson::SUCCESS && e.get(b) == simdjson::SUCCESS && v < b) return path + ": below minimum";
    if (s["maximum"].get(e) == simdjson::SUCCESS && e.get(b) == simdjson::SUCCESS && v > b) return path + ": above maximum";
    if (s["exclusiveMinimum"].get(e) == simdjson::SUCCESS && e.get(b) == simdjson::SUCCESS && v <= b) return path + ": not above exclusiveMinimum";
    if (s["exclusiveMaximum"].get(e) == simdjson::SUCCESS && e.get(b) == simdjson::SUCCESS && v >= b) return path + ": not below exclusiveMaximum";
    return "";
  }

  simdjson::dom::element root_;
};

}  // namespace troupe::test
