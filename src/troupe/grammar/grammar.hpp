// A compiled grammar: a byte-level pushdown automaton. Each rule is a DFA over bytes whose
// states may also call other rules (push a return state, continue at the callee's start)
// and may be final (return to the caller). Immutable once built, so one grammar serves any
// number of matchers on any threads. grammar_builder makes one from NFA fragments.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "troupe/grammar/nfa.hpp"

namespace troupe {

class grammar {
 public:
  static constexpr uint32_t no_state = UINT32_MAX;

  struct call {
    uint32_t callee_start;  // the called rule's start state
    uint32_t return_state;  // where the caller continues once it returns
  };

  uint32_t start_state() const { return start_; }
  size_t num_states() const { return is_final_.size(); }
  size_t num_rules() const { return rule_names_.size(); }
  int num_byte_classes() const { return num_classes_; }

  // The state after `byte`, or no_state.
  uint32_t next(uint32_t state, uint8_t byte) const {
    return next_[static_cast<size_t>(state) * num_classes_ + class_of_[byte]];
  }
  bool is_final(uint32_t state) const { return is_final_[state]; }
  bool has_bytes(uint32_t state) const { return has_bytes_[state]; }
  bool has_calls(uint32_t state) const { return call_begin_[state] != call_begin_[state + 1]; }
  const call* calls_begin(uint32_t state) const { return calls_.data() + call_begin_[state]; }
  const call* calls_end(uint32_t state) const { return calls_.data() + call_begin_[state + 1]; }
  const std::string& rule_name_of(uint32_t state) const { return rule_names_[rule_of_[state]]; }

 private:
  friend class grammar_builder;
  grammar() = default;

  uint32_t start_ = 0;
  int num_classes_ = 0;
  std::array<uint8_t, 256> class_of_{};
  std::vector<uint32_t> next_;        // num_states * num_classes
  std::vector<uint8_t> is_final_;
  std::vector<uint8_t> has_bytes_;
  std::vector<uint32_t> call_begin_;  // num_states + 1 offsets into calls_
  std::vector<call> calls_;
  std::vector<uint32_t> rule_of_;
  std::vector<std::string> rule_names_;
};

// Collects rules as NFA fragments, then determinizes each into the grammar's DFA states,
// drops states that can never complete, and refuses grammars that cannot terminate a
// closure (left recursion: a rule that calls itself before consuming a byte).
class grammar_builder {
 public:
  // Refuses (invalid_argument) a grammar whose DFAs together pass this many states.
  static constexpr size_t max_dfa_states = 200'000;

  grammar_internal::nfa& automaton() { return nfa_; }

  // A rule is declared first (so that it can be called, also recursively) and defined
  // once; `name` appears in error messages (a JSON path, "regex", ...).
  uint32_t declare_rule(std::string name);
  void define_rule(uint32_t rule, grammar_internal::fragment body);
  bool is_defined(uint32_t rule) const { return rules_[rule].is_defined; }

  // Builds the grammar whose output is one `root`. Throws invalid_argument when the
  // grammar accepts nothing or is left-recursive.
  std::shared_ptr<const grammar> build(uint32_t root);

 private:
  struct rule_def {
    std::string name;
    grammar_internal::fragment body{};
    bool is_defined = false;
  };
  grammar_internal::nfa nfa_;
  std::vector<rule_def> rules_;
};

}  // namespace troupe
