// JSON Schema to grammar: one rule per schema node (shared rules for unconstrained
// primitives, one rule per distinct constrained leaf), $ref resolved as a call of the
// target's rule so that recursive schemas work, and every keyword not handled here
// refused with its JSON path.
#include <simdjson.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "troupe/grammar/compile.hpp"
#include "troupe/grammar/json_rules.hpp"
#include "troupe/grammar/regex.hpp"
#include "troupe/model/error.hpp"

namespace troupe {
namespace {

using grammar_internal::fragment;
using grammar_internal::json_quote;
using grammar_internal::json_rules;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

constexpr int max_count = 1000;

// Keywords that change nothing about the output.
const std::set<std::string_view> annotation_keywords{
    "description", "title", "default", "examples", "$comment", "$schema", "$id", "deprecated",
    "readOnly",    "writeOnly", "$defs", "definitions"};
// Keywords handled below, for some type.
const std::set<std::string_view> handled_keywords{
    "type",      "enum",      "const",     "anyOf",     "oneOf",            "allOf",            "$ref",
    "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "uniqueItems",
    "pattern",   "minLength", "maxLength", "minimum",   "maximum",          "exclusiveMinimum", "exclusiveMaximum"};

[[noreturn]] void refuse(const std::string& what) { throw error(error_code::invalid_argument, what); }

std::string child_path(const std::string& path, std::string_view key) { return path + "." + std::string(key); }

class schema_compiler {
 public:
  schema_compiler(std::string_view text, int max_whitespace_bytes)
      : json_(builder_, max_whitespace_bytes) {
    if (parser_.parse(text.data(), text.size()).get(root_) != simdjson::SUCCESS) {
      refuse("the JSON schema is not valid JSON");
    }
  }

  std::shared_ptr<const grammar> compile() { return builder_.build(rule_for(root_, "$")); }

 private:
  // The rule for the schema at `path`; made once per path (a $ref finds the rule of its
  // target, also while that rule is still being built: recursion).
  uint32_t rule_for(element node, const std::string& path) {
    if (const auto it = by_path_.find(path); it != by_path_.end()) return it->second;
    if (node.type() == element_type::BOOL) {
      if (!node.get_bool().value()) refuse("the schema at " + path + " is false: no value matches it");
      return by_path_[path] = json_.value_rule();
    }
    if (node.type() != element_type::OBJECT) refuse("the schema at " + path + " is not an object or a boolean");
    const object o = node.get_object().value();
    check_keywords(o, path);
    element ref;
    if (o["$ref"].get(ref) == simdjson::SUCCESS) return by_path_[path] = ref_rule(o, ref, path);
    if (const std::optional<uint32_t> shared = shared_rule(o)) return by_path_[path] = *shared;
    const std::string leaf = leaf_key(o, node);
    if (!leaf.empty()) {
      if (const auto it = by_leaf_.find(leaf); it != by_leaf_.end()) return by_path_[path] = it->second;
    }
    const uint32_t rule = builder_.declare_rule(path);
    by_path_[path] = rule;
    builder_.define_rule(rule, body_of(o, path));
    if (!leaf.empty()) by_leaf_[leaf] = rule;
    return rule;
  }

  void check_keywords(const object& o, const std::string& path) {
    for (const auto field : o) {
      if (!annotation_keywords.contains(field.key) && !handled_keywords.contains(field.key)) {
        refuse("unsupported JSON Schema keyword \"" + std::string(field.key) + "\" at " + path);
      }
    }
  }

  // Keywords other than annotations, for the checks of what may stand beside $ref, anyOf.
  static std::vector<std::string_view> constraints_of(const object& o) {
    std::vector<std::string_view> out;
    for (const auto field : o) {
      if (!annotation_keywords.contains(field.key)) out.push_back(field.key);
    }
    return out;
  }

  uint32_t ref_rule(const object& o, element ref, const std::string& path) {
    if (constraints_of(o).size() > 1) refuse("$ref at " + path + " has sibling keywords, which are not supported");
    std::string_view target;
    if (ref.get(target) != simdjson::SUCCESS) refuse("$ref at " + path + " is not a string");
    if (target.empty() || target[0] != '#') {
      refuse("$ref \"" + std::string(target) + "\" at " + path + " is not a local reference (#/...)");
    }
    element node = root_;
    std::string target_path = "$";
    std::string_view rest = target.substr(1);
    while (!rest.empty()) {
      if (rest[0] != '/') refuse("$ref \"" + std::string(target) + "\" at " + path + " is not a JSON pointer");
      rest.remove_prefix(1);
      const size_t slash = rest.find('/');
      const std::string_view raw = rest.substr(0, slash);
      rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
      std::string token;  // RFC 6901: ~1 is '/', ~0 is '~'
      for (size_t k = 0; k < raw.size(); ++k) {
        if (raw[k] == '~' && k + 1 < raw.size() && (raw[k + 1] == '0' || raw[k + 1] == '1')) {
          token += raw[++k] == '1' ? '/' : '~';
        } else {
          token += raw[k];
        }
      }
      element next;
      if (node.type() != element_type::OBJECT || node.get_object()[token].get(next) != simdjson::SUCCESS) {
        refuse("$ref \"" + std::string(target) + "\" at " + path + " points to nothing");
      }
      node = next;
      target_path = child_path(target_path, token);
    }
    if (resolving_.contains(path)) refuse("$ref at " + path + " is part of a cycle of references that consumes nothing");
    resolving_.insert(path);
    const uint32_t rule = rule_for(node, target_path);
    resolving_.erase(path);
    return rule;
  }

  static std::optional<std::string_view> single_type(const object& o) {
    std::string_view t;
    if (o["type"].get(t) == simdjson::SUCCESS) return t;
    return std::nullopt;
  }

  static bool has_any(const object& o, std::initializer_list<std::string_view> keys) {
    element e;
    for (const auto k : keys) {
      if (o[k].get(e) == simdjson::SUCCESS) return true;
    }
    return false;
  }

  // Unconstrained primitives use the shared JSON rules.
  std::optional<uint32_t> shared_rule(const object& o) {
    const std::vector<std::string_view> keys = constraints_of(o);
    if (keys.empty()) return json_.value_rule();
    if (keys.size() != 1 || keys[0] != "type") return std::nullopt;
    const std::optional<std::string_view> t = single_type(o);
    if (!t) return std::nullopt;
    if (*t == "string") return json_.string_rule();
    if (*t == "number") return json_.number_rule();
    if (*t == "integer") return json_.integer_rule();
    if (*t == "boolean") return json_.boolean_rule();
    if (*t == "null") return json_.null_rule();
    if (*t == "object") return json_.object_rule();
    if (*t == "array") return json_.array_rule();
    return std::nullopt;
  }

  // Nodes whose output depends on nothing but their own text share one rule per text.
  static std::string leaf_key(const object& o, element node) {
    if (has_any(o, {"$ref", "anyOf", "oneOf", "allOf", "properties", "items", "additionalProperties"})) return "";
    return simdjson::minify(node);
  }

  fragment literal_of(element value) { return json_.literal(simdjson::minify(value)); }

  fragment body_of(const object& o, const std::string& path) {
    auto& a = json_.automaton();
    element e;
    if (o["const"].get(e) == simdjson::SUCCESS) return literal_of(e);
    if (o["enum"].get(e) == simdjson::SUCCESS) {
      simdjson::dom::array values;
      if (e.get(values) != simdjson::SUCCESS) refuse("enum at " + path + " is not an array");
      std::vector<fragment> options;
      for (const element v : values) options.push_back(literal_of(v));
      if (options.empty()) refuse("enum at " + path + " is empty: no value matches it");
      return a.alternatives(options);
    }
    for (const char* combinator : {"anyOf", "oneOf", "allOf"}) {
      if (o[combinator].get(e) != simdjson::SUCCESS) continue;
      if (constraints_of(o).size() > 1) {
        refuse(std::string(combinator) + " at " + path + " has sibling keywords, which are not supported");
      }
      simdjson::dom::array options;
      if (e.get(options) != simdjson::SUCCESS || options.size() == 0) {
        refuse(std::string(combinator) + " at " + path + " is not a non-empty array");
      }
      if (std::string_view(combinator) == "allOf" && options.size() != 1) {
        refuse("allOf with more than one schema at " + path + " is not supported");
      }
      std::vector<fragment> calls;
      size_t i = 0;
      for (const element option : options) {
        calls.push_back(a.call(rule_for(option, path + "." + combinator + "[" + std::to_string(i++) + "]")));
      }
      return a.alternatives(calls);
    }
    std::vector<std::string_view> types;
    if (o["type"].get(e) == simdjson::SUCCESS) {
      if (e.type() == element_type::STRING) {
        types.push_back(std::string_view(e.get_string().value()));
      } else if (e.type() == element_type::ARRAY) {
        const simdjson::dom::array listed = e.get_array().value();
        for (const element t : listed) {
          std::string_view name;
          if (t.get(name) != simdjson::SUCCESS) refuse("type at " + path + " lists a non-string");
          types.push_back(name);
        }
      } else {
        refuse("type at " + path + " is not a string or an array of strings");
      }
    } else if (has_any(o, {"properties", "required", "additionalProperties"})) {
      types.push_back("object");
    } else if (has_any(o, {"items", "minItems", "maxItems"})) {
      types.push_back("array");
    } else if (has_any(o, {"pattern", "minLength", "maxLength"})) {
      types.push_back("string");
    } else if (has_any(o, {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) {
      types.push_back("number");
    } else {
      return a.call(json_.value_rule());
    }
    std::vector<fragment> options;
    for (const std::string_view t : types) options.push_back(typed_body(o, t, path));
    if (options.empty()) refuse("type at " + path + " is an empty list");
    return options.size() == 1 ? options[0] : a.alternatives(options);
  }

  fragment typed_body(const object& o, std::string_view type, const std::string& path) {
    auto& a = json_.automaton();
    if (type == "string") return string_body(o, path);
    if (type == "integer") return integer_body(o, path);
    if (type == "number") {
      if (has_any(o, {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) {
        refuse("minimum/maximum on type number at " + path + " are not supported (only on integer)");
      }
      return a.call(json_.number_rule());
    }
    if (type == "boolean") return a.call(json_.boolean_rule());
    if (type == "null") return a.call(json_.null_rule());
    if (type == "object") return object_body(o, path);
    if (type == "array") return array_body(o, path);
    refuse("unknown type \"" + std::string(type) + "\" at " + path);
  }

  int count_of(const object& o, std::string_view key, const std::string& path, int fallback) {
    element e;
    if (o[key].get(e) != simdjson::SUCCESS) return fallback;
    int64_t v = 0;
    if (e.get(v) != simdjson::SUCCESS || v < 0) refuse(std::string(key) + " at " + path + " is not a non-negative integer");
    if (v > max_count) {
      refuse(std::string(key) + " at " + path + " is " + std::to_string(v) + ", over the supported " +
             std::to_string(max_count));
    }
    return static_cast<int>(v);
  }

  fragment string_body(const object& o, const std::string& path) {
    auto& a = json_.automaton();
    const int min = count_of(o, "minLength", path, 0);
    const int max = count_of(o, "maxLength", path, -1);
    if (max >= 0 && max < min) refuse("maxLength is below minLength at " + path);
    std::string_view pattern;
    if (o["pattern"].get(pattern) == simdjson::SUCCESS) {
      if (min != 0 || max >= 0) refuse("pattern together with minLength/maxLength at " + path + " is not supported");
      const auto re = grammar_internal::regex::parse(pattern, path + ".pattern");
      // JSON Schema patterns search: unanchored ends may have any characters around them.
      auto any = [&] {
        return a.star(grammar_internal::build_char_set(a, grammar_internal::complement({}), true));
      };
      std::vector<fragment> parts{json_.literal("\"")};
      if (!re.is_anchored_start()) parts.push_back(any());
      parts.push_back(re.build(a, true));
      if (!re.is_anchored_end()) parts.push_back(any());
      parts.push_back(json_.literal("\""));
      return a.sequence(parts);
    }
    return json_.string_of_length(min, max);
  }

  fragment integer_body(const object& o, const std::string& path) {
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    auto bound = [&](std::string_view key, bool is_lower, bool is_exclusive) {
      element e;
      if (o[key].get(e) != simdjson::SUCCESS) return;
      double v = 0;
      if (e.get(v) != simdjson::SUCCESS) refuse(std::string(key) + " at " + path + " is not a number");
      if (std::abs(v) >= 9.2e18) refuse(std::string(key) + " at " + path + " is outside the int64 range");
      int64_t b = 0;
      if (is_lower) {
        b = static_cast<int64_t>(std::ceil(v));
        if (is_exclusive && static_cast<double>(b) == v) ++b;
        lo = std::max(lo, b);
      } else {
        b = static_cast<int64_t>(std::floor(v));
        if (is_exclusive && static_cast<double>(b) == v) --b;
        hi = std::min(hi, b);
      }
    };
    bound("minimum", true, false);
    bound("exclusiveMinimum", true, true);
    bound("maximum", false, false);
    bound("exclusiveMaximum", false, true);
    if (lo > hi) refuse("no integer lies between the minimum and the maximum at " + path);
    return json_.integer_range(lo, hi);
  }

  fragment object_body(const object& o, const std::string& path) {
    auto& a = json_.automaton();
    element props_element;
    const bool has_properties = o["properties"].get(props_element) == simdjson::SUCCESS;
    element additional;
    const bool has_additional = o["additionalProperties"].get(additional) == simdjson::SUCCESS;
    std::set<std::string_view> required;
    element req;
    if (o["required"].get(req) == simdjson::SUCCESS) {
      simdjson::dom::array names;
      if (req.get(names) != simdjson::SUCCESS) refuse("required at " + path + " is not an array");
      for (const element n : names) {
        std::string_view name;
        if (n.get(name) != simdjson::SUCCESS) refuse("required at " + path + " lists a non-string");
        required.insert(name);
      }
    }
    if (!has_properties) {
      if (!required.empty()) refuse("required at " + path + " names properties that \"properties\" does not define");
      if (has_additional && additional.type() == element_type::BOOL && !additional.get_bool().value()) {
        return a.sequence({json_.literal("{"), json_.whitespace(), json_.literal("}")});
      }
      const uint32_t value = has_additional ? rule_for(additional, path + ".additionalProperties") : json_.value_rule();
      return json_.map_of(value);
    }
    object props;
    if (props_element.get(props) != simdjson::SUCCESS) refuse("properties at " + path + " is not an object");
    for (const std::string_view name : required) {
      element unused;
      if (props[name].get(unused) != simdjson::SUCCESS) {
        refuse("required at " + path + " names \"" + std::string(name) + "\", which properties does not define");
      }
    }
    // Properties in schema order, each optional one skippable; first[i] / rest[i]: before
    // property i with none / some written yet (rest needs a comma first).
    const size_t n = props.size();
    std::vector<uint32_t> first(n + 1), rest(n + 1);
    for (size_t i = 0; i <= n; ++i) {
      first[i] = a.add_state();
      rest[i] = a.add_state();
    }
    const fragment open = a.concat(json_.literal("{"), json_.whitespace());
    a.add_epsilon(open.end, first[0]);
    size_t i = 0;
    for (const auto field : props) {
      const uint32_t value = rule_for(field.value, child_path(path + ".properties", field.key));
      auto member = [&] {
        return a.sequence({json_.literal(json_quote(field.key)), json_.whitespace(), json_.literal(":"),
                           json_.whitespace(), a.call(value), json_.whitespace()});
      };
      const fragment from_first = member();
      a.add_epsilon(first[i], from_first.start);
      a.add_epsilon(from_first.end, rest[i + 1]);
      const fragment from_rest = a.sequence({json_.literal(","), json_.whitespace(), member()});
      a.add_epsilon(rest[i], from_rest.start);
      a.add_epsilon(from_rest.end, rest[i + 1]);
      if (!required.contains(field.key)) {
        a.add_epsilon(first[i], first[i + 1]);
        a.add_epsilon(rest[i], rest[i + 1]);
      }
      ++i;
    }
    const fragment close = json_.literal("}");
    a.add_epsilon(first[n], close.start);
    a.add_epsilon(rest[n], close.start);
    return {open.start, close.end};
  }

  fragment array_body(const object& o, const std::string& path) {
    element e;
    if (o["uniqueItems"].get(e) == simdjson::SUCCESS && e.type() == element_type::BOOL && e.get_bool().value()) {
      refuse("uniqueItems: true at " + path + " is not supported");
    }
    const int min = count_of(o, "minItems", path, 0);
    const int max = count_of(o, "maxItems", path, -1);
    if (max >= 0 && max < min) refuse("maxItems is below minItems at " + path);
    uint32_t item = json_.value_rule();
    if (o["items"].get(e) == simdjson::SUCCESS) {
      if (e.type() == element_type::ARRAY) refuse("items as an array (tuple form) at " + path + " is not supported");
      item = rule_for(e, path + ".items");
    }
    return json_.array_of(item, min, max);
  }

  simdjson::dom::parser parser_;
  element root_;
  grammar_builder builder_;
  json_rules json_;
  std::map<std::string, uint32_t> by_path_;
  std::map<std::string, uint32_t> by_leaf_;
  std::set<std::string> resolving_;
};

}  // namespace

std::shared_ptr<const grammar> compile_json_schema(std::string_view schema, int max_whitespace_bytes) {
  return schema_compiler(schema, max_whitespace_bytes).compile();
}

}  // namespace troupe
