// The regex compiler: a practical ECMAScript subset over Unicode code points, built as a
// byte-level NFA fragment that matches the whole text (as guided_regex asks). Supported:
// literals, escapes (\d \D \w \W \s \S \n \r \t \f \v \0 \xHH \uHHHH \u{H...} and escaped
// punctuation), classes [a-z] [^...] with escapes inside, `.` (any character but \n \r
// U+2028 U+2029), groups (...) (?:...) (?<name>...), alternation |, quantifiers * + ?
// {m} {m,} {m,n} (lazy forms accepted, they match the same texts), ^ and $ as the very
// first and last character. Refused with a message naming the construct: backreferences,
// lookaround, \b \B, \p{...}, flags (?i), anchors elsewhere, counts over 1000.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/grammar/nfa.hpp"

namespace troupe::grammar_internal {

struct regex_node;

class regex {
 public:
  // Throws invalid_argument naming `where` (e.g. "guided_regex", or a JSON path) and the
  // offending construct.
  static regex parse(std::string_view pattern, std::string where);

  regex(regex&&) noexcept;
  regex& operator=(regex&&) noexcept;
  ~regex();

  bool is_anchored_start() const { return anchored_start_; }
  bool is_anchored_end() const { return anchored_end_; }

  // The pattern as a fragment over bytes (UTF-8). json_escaped: the text as it appears
  // inside a JSON string, with '"', '\\' and control characters in their JSON escapes.
  fragment build(nfa& automaton, bool json_escaped) const;

 private:
  regex() = default;
  std::unique_ptr<regex_node> root_;
  bool anchored_start_ = false;
  bool anchored_end_ = false;
};

// One character of `ranges` (normalized), as UTF-8 or, json_escaped, as JSON string content.
fragment build_char_set(nfa& automaton, const std::vector<code_point_range>& ranges, bool json_escaped);

}  // namespace troupe::grammar_internal
