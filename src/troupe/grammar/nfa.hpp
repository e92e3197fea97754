// The construction side of the grammar compiler: one byte-level NFA shared by all the
// rules of a grammar under construction (Thompson fragments with byte-range, epsilon and
// rule-call edges), plus code point ranges turned into UTF-8 byte sequences. The regex and
// JSON Schema compilers build fragments here; grammar_builder turns each rule into a DFA.
#pragma once
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace troupe::grammar_internal {

struct nfa_byte_edge {
  uint8_t lo;
  uint8_t hi;
  uint32_t target;
};

struct nfa_call_edge {
  uint32_t rule;
  uint32_t target;  // where the caller continues once the rule returns
};

struct nfa_state {
  std::vector<nfa_byte_edge> bytes;
  std::vector<uint32_t> epsilons;
  std::vector<nfa_call_edge> calls;
};

// A sub-automaton with one entry and one exit; the exit has no outgoing edges until the
// fragment is joined to another.
struct fragment {
  uint32_t start;
  uint32_t end;
};

// An inclusive range of Unicode scalar values.
struct code_point_range {
  uint32_t first;
  uint32_t last;
};

// Sorted, merged, surrogate-free complement of `ranges` within U+0000..U+10FFFF.
std::vector<code_point_range> complement(std::vector<code_point_range> ranges);
// Sorts and merges overlapping or adjacent ranges, and removes the surrogates D800..DFFF.
std::vector<code_point_range> normalize(std::vector<code_point_range> ranges);

class nfa {
 public:
  // Refuses (invalid_argument) to grow past this many states: a pattern or a bound like
  // maxLength: 100000 would otherwise take the process's memory.
  static constexpr size_t max_states = 400'000;

  uint32_t add_state();
  void add_bytes(uint32_t from, uint8_t lo, uint8_t hi, uint32_t to);
  void add_epsilon(uint32_t from, uint32_t to);
  void add_call(uint32_t from, uint32_t rule, uint32_t to);

  fragment empty();
  fragment byte_range(uint8_t lo, uint8_t hi);
  fragment literal(std::string_view bytes);
  fragment call(uint32_t rule);
  // Any code point in `ranges` (already normalized), as well-formed UTF-8.
  fragment code_points(const std::vector<code_point_range>& ranges);

  fragment concat(fragment a, fragment b);
  fragment sequence(const std::vector<fragment>& parts);
  fragment alternatives(const std::vector<fragment>& options);
  fragment optional(fragment f);
  fragment star(fragment f);
  fragment plus(fragment f);
  // make() builds a fresh copy of the repeated fragment each time; max < 0 means unbounded.
  fragment repeat(const std::function<fragment()>& make, int min, int max);

  size_t num_states() const { return states_.size(); }
  const nfa_state& state(uint32_t id) const { return states_[id]; }

 private:
  std::vector<nfa_state> states_;
};

}  // namespace troupe::grammar_internal
