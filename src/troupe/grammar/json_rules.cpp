// The shared JSON rules and fragments.
#include "troupe/grammar/json_rules.hpp"

#include <cstdio>

#include "troupe/grammar/regex.hpp"

namespace troupe::grammar_internal {

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<uint8_t>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

uint32_t json_rules::rule(std::optional<uint32_t>& slot, const char* name, fragment (json_rules::*body)()) {
  if (!slot) {
    slot = builder_->declare_rule(name);
    builder_->define_rule(*slot, (this->*body)());
  }
  return *slot;
}

uint32_t json_rules::string_rule() { return rule(string_, "string", &json_rules::string_body); }
uint32_t json_rules::number_rule() { return rule(number_, "number", &json_rules::number_body); }
uint32_t json_rules::integer_rule() { return rule(integer_, "integer", &json_rules::integer_body); }
uint32_t json_rules::boolean_rule() { return rule(boolean_, "boolean", &json_rules::boolean_body); }
uint32_t json_rules::null_rule() { return rule(null_, "null", &json_rules::null_body); }
uint32_t json_rules::value_rule() { return rule(value_, "value", &json_rules::value_body); }
uint32_t json_rules::object_rule() { return rule(object_, "object", &json_rules::object_body); }
uint32_t json_rules::array_rule() { return rule(array_, "array", &json_rules::array_body); }

fragment json_rules::whitespace() {
  return automaton().repeat(
      [&] {
        const uint32_t a = automaton().add_state();
        const uint32_t b = automaton().add_state();
        for (const uint8_t c : {' ', '\t', '\n', '\r'}) automaton().add_bytes(a, c, c, b);
        return fragment{a, b};
      },
      0, max_whitespace_bytes_);
}

fragment json_rules::string_char() {
  auto& a = automaton();
  const fragment plain = build_char_set(a, complement({{0x00, 0x1F}, {'"', '"'}, {'\\', '\\'}}), false);
  auto hex = [&] {
    return a.alternatives({a.byte_range('0', '9'), a.byte_range('a', 'f'), a.byte_range('A', 'F')});
  };
  auto d = [&] { return a.alternatives({a.byte_range('d', 'd'), a.byte_range('D', 'D')}); };
  // \uXXXX: not a surrogate ([0-9A-CEFa-cef]xxx or D[0-7]xx), or a high then a low one.
  const fragment bmp = a.alternatives(
      {a.sequence({a.alternatives({a.byte_range('0', '9'), a.byte_range('a', 'c'), a.byte_range('A', 'C'),
                                   a.byte_range('e', 'f'), a.byte_range('E', 'F')}),
                   hex(), hex(), hex()}),
       a.sequence({d(), a.byte_range('0', '7'), hex(), hex()})});
  const fragment pair = a.sequence(
      {d(), a.alternatives({a.byte_range('8', '9'), a.byte_range('a', 'b'), a.byte_range('A', 'B')}), hex(),
       hex(), a.literal("\\u"), d(), a.alternatives({a.byte_range('c', 'f'), a.byte_range('C', 'F')}), hex(),
       hex()});
  const uint32_t after_backslash = a.add_state();
  const uint32_t end = a.add_state();
  for (const uint8_t c : {'"', '\\', '/', 'b', 'f', 'n', 'r', 't'}) a.add_bytes(after_backslash, c, c, end);
  const fragment unicode = a.concat(a.literal("u"), a.alternatives({bmp, pair}));
  a.add_epsilon(after_backslash, unicode.start);
  a.add_epsilon(unicode.end, end);
  const fragment escape = a.concat(a.literal("\\"), fragment{after_backslash, end});
  return a.alternatives({plain, escape});
}

fragment json_rules::string_of_length(int min, int max) {
  return automaton().sequence(
      {literal("\""), automaton().repeat([&] { return string_char(); }, min, max), literal("\"")});
}

fragment json_rules::string_body() { return string_of_length(0, -1); }

fragment json_rules::digits(int min, int max) {
  return automaton().repeat([&] { return automaton().byte_range('0', '9'); }, min, max);
}

fragment json_rules::number_body() {
  auto& a = automaton();
  const fragment integer_part =
      a.alternatives({literal("0"), a.concat(a.byte_range('1', '9'), digits(0, 15))});
  const fragment fraction = a.optional(a.concat(literal("."), digits(1, 16)));
  const fragment exponent = a.optional(a.sequence(
      {a.alternatives({literal("e"), literal("E")}),
       a.optional(a.alternatives({literal("+"), literal("-")})), digits(1, 2)}));
  return a.sequence({a.optional(literal("-")), integer_part, fraction, exponent});
}

fragment json_rules::integer_body() { return integer_range(INT64_MIN, INT64_MAX); }

fragment json_rules::boolean_body() { return automaton().alternatives({literal("true"), literal("false")}); }
fragment json_rules::null_body() { return literal("null"); }

fragment json_rules::value_body() {
  auto& a = automaton();
  return a.alternatives({a.call(object_rule()), a.call(array_rule()), a.call(string_rule()),
                         a.call(number_rule()), a.call(boolean_rule()), a.call(null_rule())});
}

fragment json_rules::object_body() { return map_of(value_rule()); }
fragment json_rules::array_body() { return array_of(value_rule(), 0, -1); }

fragment json_rules::map_of(uint32_t value) {
  auto& a = automaton();
  auto member = [&] {
    return a.sequence({a.call(string_rule()), whitespace(), literal(":"), whitespace(), a.call(value), whitespace()});
  };
  const fragment members = a.concat(member(), a.star(a.sequence({literal(","), whitespace(), member()})));
  return a.sequence({literal("{"), whitespace(), a.optional(members), literal("}")});
}

fragment json_rules::array_of(uint32_t item, int min, int max) {
  auto& a = automaton();
  if (max == 0) return a.sequence({literal("["), whitespace(), literal("]")});
  auto one = [&] { return a.concat(a.call(item), whitespace()); };
  const fragment items = a.concat(
      one(), a.repeat([&] { return a.sequence({literal(","), whitespace(), one()}); }, std::max(min - 1, 0),
                      max < 0 ? -1 : max - 1));
  return a.sequence({literal("["), whitespace(), min == 0 ? a.optional(items) : items, literal("]")});
}

fragment json_rules::same_length_range(const std::string& lo, const std::string& hi) {
  auto& a = automaton();
  if (lo.empty()) return a.empty();
  // Any digits at all: without this shortcut the recursion below doubles per digit.
  if (lo.find_first_not_of('0') == std::string::npos && hi.find_first_not_of('9') == std::string::npos) {
    return digits(static_cast<int>(lo.size()), static_cast<int>(lo.size()));
  }
  const std::string lo_rest = lo.substr(1), hi_rest = hi.substr(1);
  if (lo[0] == hi[0]) return a.concat(literal(lo.substr(0, 1)), same_length_range(lo_rest, hi_rest));
  const auto n = static_cast<int>(lo_rest.size());
  std::vector<fragment> options;
  options.push_back(a.concat(literal(lo.substr(0, 1)), same_length_range(lo_rest, std::string(n, '9'))));
  if (lo[0] + 1 <= hi[0] - 1) {
    options.push_back(a.concat(a.byte_range(static_cast<uint8_t>(lo[0] + 1), static_cast<uint8_t>(hi[0] - 1)),
                               digits(n, n)));
  }
  options.push_back(a.concat(literal(hi.substr(0, 1)), same_length_range(std::string(n, '0'), hi_rest)));
  return a.alternatives(options);
}

fragment json_rules::nonnegative_range(uint64_t lo, uint64_t hi) {
  std::vector<fragment> options;
  const std::string lo_text = std::to_string(lo), hi_text = std::to_string(hi);
  for (size_t len = lo_text.size(); len <= hi_text.size(); ++len) {
    const std::string first = len == lo_text.size() ? lo_text : std::string(1, '1').append(len - 1, '0');
    const std::string last = len == hi_text.size() ? hi_text : std::string(len, '9');
    options.push_back(same_length_range(first, last));
  }
  return automaton().alternatives(options);
}

fragment json_rules::integer_range(int64_t lo, int64_t hi) {
  std::vector<fragment> options;
  auto magnitude = [](int64_t v) { return v < 0 ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v); };
  if (hi >= 0) options.push_back(nonnegative_range(static_cast<uint64_t>(std::max<int64_t>(lo, 0)), magnitude(hi)));
  if (lo < 0) {
    const uint64_t smallest = hi < 0 ? magnitude(hi) : 1;
    options.push_back(automaton().concat(literal("-"), nonnegative_range(smallest, magnitude(lo))));
  }
  return automaton().alternatives(options);
}

}  // namespace troupe::grammar_internal
