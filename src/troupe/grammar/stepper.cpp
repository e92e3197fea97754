// The stepper: one byte at a time, with calls and returns expanded eagerly.
#include "troupe/grammar/stepper.hpp"

#include <algorithm>

namespace troupe::grammar_internal {

uint32_t stack_arena::push(uint32_t return_state, uint32_t parent) {
  const uint64_t key = (static_cast<uint64_t>(return_state) << 32) | parent;
  const auto [it, inserted] = index_.emplace(key, static_cast<uint32_t>(nodes_.size()));
  if (inserted) nodes_.push_back({return_state, parent});
  return it->second;
}

void stack_arena::truncate(size_t mark) {
  while (nodes_.size() > mark) {
    const node& n = nodes_.back();
    index_.erase((static_cast<uint64_t>(n.return_state) << 32) | n.parent);
    nodes_.pop_back();
  }
}

void stepper::start(configuration& out) {
  out.clear();
  visited_.clear();
  close(grammar_->start_state(), stack_arena::empty, out);
}

void stepper::after_return(position p, configuration& out) {
  out.clear();
  visited_.clear();
  const stack_arena::node n = arena_->at(p.stack);
  close(n.return_state, n.parent, out);
}

bool stepper::advance(const configuration& in, uint8_t byte, configuration& out) {
  out.clear();
  visited_.clear();
  for (const position p : in.positions) {
    const uint32_t next = grammar_->next(p.state, byte);
    if (next != grammar::no_state) close(next, p.stack, out);
  }
  return !out.is_dead();
}

void stepper::close(uint32_t state, uint32_t stack, configuration& out) {
  const grammar& g = *grammar_;
  // The common case: a state inside a rule with neither calls nor a return.
  if (!g.has_calls(state) && !g.is_final(state)) {
    const position p{state, stack};
    if (std::find(out.positions.begin(), out.positions.end(), p) == out.positions.end()) {
      out.positions.push_back(p);
    }
    return;
  }
  work_.clear();
  work_.push_back({state, stack});
  while (!work_.empty()) {
    const position p = work_.back();
    work_.pop_back();
    if (std::find(visited_.begin(), visited_.end(), p) != visited_.end()) continue;
    visited_.push_back(p);
    if (g.has_bytes(p.state) &&
        std::find(out.positions.begin(), out.positions.end(), p) == out.positions.end()) {
      out.positions.push_back(p);
    }
    if (g.is_final(p.state)) {
      if (p.stack == stack_arena::empty) {
        out.can_end = true;
      } else {
        const stack_arena::node n = arena_->at(p.stack);
        work_.push_back({n.return_state, n.parent});
      }
    }
    for (const grammar::call* c = g.calls_begin(p.state); c != g.calls_end(p.state); ++c) {
      work_.push_back({c->callee_start, arena_->push(c->return_state, p.stack)});
    }
  }
}

}  // namespace troupe::grammar_internal
