// The JSON pieces every JSON grammar is made of, added to a grammar_builder on first use:
// shared rules for a string, a number, an integer, any value, any object and any array
// (shared, so that the mask caches see one "inside a string" state however many places
// a string may appear), and inline fragments for bounded whitespace, string characters
// and integer ranges.
//
// Choices (docs/structured-output.md): whitespace between tokens is at most
// max_whitespace_bytes bytes of [ \t\n\r] per gap; a number has at most 16 integer digits,
// 16 fraction digits and a 2-digit exponent, an integer is an int64 (so every output
// parses to a finite double or an int64); a string is well-formed UTF-8 without raw
// control characters, and a \u escape is a non-surrogate or a whole surrogate pair.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "troupe/grammar/grammar.hpp"

namespace troupe::grammar_internal {

class json_rules {
 public:
  json_rules(grammar_builder& builder, int max_whitespace_bytes)
      : builder_(&builder), max_whitespace_bytes_(max_whitespace_bytes) {}

  uint32_t string_rule();
  uint32_t number_rule();
  uint32_t integer_rule();
  uint32_t boolean_rule();
  uint32_t null_rule();
  uint32_t value_rule();
  uint32_t object_rule();
  uint32_t array_rule();

  fragment whitespace();
  fragment literal(std::string_view bytes) { return automaton().literal(bytes); }
  // One character of string content: a plain character or an escape sequence.
  fragment string_char();
  // "..." with min..max characters (max < 0: unbounded).
  fragment string_of_length(int min, int max);
  // The canonical decimal integers in [lo, hi] (no leading zeros, no "-0").
  fragment integer_range(int64_t lo, int64_t hi);
  // { ws } with any keys, each value a call of value_rule (or of `value`).
  fragment map_of(uint32_t value);
  // [ ws ] of min..max items (max < 0: unbounded), each a call of `item`.
  fragment array_of(uint32_t item, int min, int max);

  grammar_builder& builder() { return *builder_; }
  nfa& automaton() { return builder_->automaton(); }

 private:
  uint32_t rule(std::optional<uint32_t>& slot, const char* name, fragment (json_rules::*body)());
  fragment string_body();
  fragment number_body();
  fragment integer_body();
  fragment boolean_body();
  fragment null_body();
  fragment value_body();
  fragment object_body();
  fragment array_body();
  fragment digits(int min, int max);
  fragment nonnegative_range(uint64_t lo, uint64_t hi);
  fragment same_length_range(const std::string& lo, const std::string& hi);

  grammar_builder* builder_;
  int max_whitespace_bytes_;
  std::optional<uint32_t> string_, number_, integer_, boolean_, null_, value_, object_, array_;
};

// s as a JSON string literal, quotes included (the escapes string_char accepts).
std::string json_quote(std::string_view s);

}  // namespace troupe::grammar_internal
