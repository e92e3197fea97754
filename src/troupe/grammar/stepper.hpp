// Running a grammar over bytes: the return stacks (interned in an arena, so equal stacks
// have equal ids), a configuration (every way the output so far can be parsed, each a
// DFA state with its stack, kept only where the state can take a byte), and the stepper
// that advances a configuration by one byte, expanding calls and returns.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "troupe/grammar/grammar.hpp"

namespace troupe::grammar_internal {

// Return stacks as a tree of (return state, parent) nodes; id 0 is the empty stack. A
// stack is never changed once made, so ids may be kept in any number of configurations.
class stack_arena {
 public:
  static constexpr uint32_t empty = 0;

  struct node {
    uint32_t return_state;
    uint32_t parent;
  };

  stack_arena() : nodes_{{grammar::no_state, empty}} {}
  uint32_t push(uint32_t return_state, uint32_t parent);
  const node& at(uint32_t id) const { return nodes_[id]; }
  size_t size() const { return nodes_.size(); }
  // Forgets every node made after size() was `mark` (for look-ahead walks).
  void truncate(size_t mark);

 private:
  std::vector<node> nodes_;
  std::unordered_map<uint64_t, uint32_t> index_;
};

struct position {
  uint32_t state;
  uint32_t stack;
  bool operator==(const position&) const = default;
};

// can_end: on some parse the bottom stack frame has just returned. In a matcher's own
// configuration that means the output is complete; in a walk from a bare state it means
// that state's rule may have returned into a caller the walk does not know.
struct configuration {
  std::vector<position> positions;
  bool can_end = false;

  bool is_dead() const { return positions.empty() && !can_end; }
  void clear() {
    positions.clear();
    can_end = false;
  }
  bool operator==(const configuration&) const = default;
};

class stepper {
 public:
  stepper(const grammar& g, stack_arena& arena) : grammar_(&g), arena_(&arena) {}

  // The configuration before any output.
  void start(configuration& out);
  // What follows once p's rule returns to its caller (p.stack must not be empty).
  void after_return(position p, configuration& out);
  // in, then `byte`; returns !out.is_dead().
  bool advance(const configuration& in, uint8_t byte, configuration& out);

  stack_arena& arena() { return *arena_; }

 private:
  // Adds (state, stack) with every call expanded and every final state returned from.
  void close(uint32_t state, uint32_t stack, configuration& out);

  const grammar* grammar_;
  stack_arena* arena_;
  std::vector<position> visited_;  // transit positions seen in the current closure
  std::vector<position> work_;
};

}  // namespace troupe::grammar_internal
