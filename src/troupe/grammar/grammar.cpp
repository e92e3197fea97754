// grammar_builder: subset construction per rule, pruning of states that cannot complete,
// the left-recursion check, and the byte-class transition table.
#include "troupe/grammar/grammar.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>

#include "troupe/model/error.hpp"

namespace troupe {
namespace {

using grammar_internal::fragment;
using grammar_internal::nfa;

struct dfa_range {
  uint8_t lo, hi;
  uint32_t target;
};

struct dfa_call {
  uint32_t rule;
  uint32_t return_state;
};

struct dfa_state {
  uint32_t rule;
  bool is_final = false;
  std::vector<dfa_range> ranges;
  std::vector<dfa_call> calls;
};

std::vector<uint32_t> epsilon_closure(const nfa& automaton, std::vector<uint32_t> seeds,
                                      std::vector<uint8_t>& seen) {
  std::vector<uint32_t> out;
  while (!seeds.empty()) {
    const uint32_t s = seeds.back();
    seeds.pop_back();
    if (seen[s]) continue;
    seen[s] = 1;
    out.push_back(s);
    for (const uint32_t t : automaton.state(s).epsilons) seeds.push_back(t);
  }
  for (const uint32_t s : out) seen[s] = 0;
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

uint32_t grammar_builder::declare_rule(std::string name) {
  rules_.push_back({std::move(name)});
  return static_cast<uint32_t>(rules_.size() - 1);
}

void grammar_builder::define_rule(uint32_t rule, fragment body) {
  rules_[rule].body = body;
  rules_[rule].is_defined = true;
}

std::shared_ptr<const grammar> grammar_builder::build(uint32_t root) {
  std::vector<dfa_state> dfa;
  std::vector<uint32_t> rule_start(rules_.size(), grammar::no_state);
  std::vector<uint8_t> seen(nfa_.num_states(), 0);

  // Subset construction, one rule at a time, discovering called rules as it goes.
  std::deque<uint32_t> pending_rules{root};
  rule_start[root] = 0;  // reserved; assigned below
  std::vector<uint8_t> queued(rules_.size(), 0);
  queued[root] = 1;
  while (!pending_rules.empty()) {
    const uint32_t rule = pending_rules.front();
    pending_rules.pop_front();
    if (!rules_[rule].is_defined) {
      throw error(error_code::internal, "grammar rule " + rules_[rule].name + " was never defined");
    }
    const uint32_t final_nfa_state = rules_[rule].body.end;
    std::map<std::vector<uint32_t>, uint32_t> ids;
    std::vector<std::vector<uint32_t>> members;
    auto id_of = [&](std::vector<uint32_t> set) {
      auto [it, inserted] = ids.emplace(std::move(set), 0);
      if (inserted) {
        if (dfa.size() >= max_dfa_states) {
          throw error(error_code::invalid_argument,
                      "grammar too large: more than " + std::to_string(max_dfa_states) +
                          " automaton states (in " + rules_[rule].name + ")");
        }
        it->second = static_cast<uint32_t>(dfa.size());
        dfa.push_back({rule});
        members.push_back(it->first);
      }
      return it->second;
    };
    const size_t first_state = dfa.size();
    rule_start[rule] = id_of(epsilon_closure(nfa_, {rules_[rule].body.start}, seen));
    for (size_t at = first_state; at < dfa.size(); ++at) {
      const std::vector<uint32_t> set = members[at - first_state];
      std::vector<int> cuts{0, 256};
      for (const uint32_t s : set) {
        for (const auto& e : nfa_.state(s).bytes) {
          cuts.push_back(e.lo);
          cuts.push_back(e.hi + 1);
        }
      }
      std::sort(cuts.begin(), cuts.end());
      cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
      std::vector<dfa_range> ranges;
      for (size_t c = 0; c + 1 < cuts.size(); ++c) {
        const int lo = cuts[c];
        std::vector<uint32_t> targets;
        for (const uint32_t s : set) {
          for (const auto& e : nfa_.state(s).bytes) {
            if (e.lo <= lo && lo <= e.hi) targets.push_back(e.target);
          }
        }
        if (targets.empty()) continue;
        const uint32_t target = id_of(epsilon_closure(nfa_, std::move(targets), seen));
        const auto hi = static_cast<uint8_t>(cuts[c + 1] - 1);
        if (!ranges.empty() && ranges.back().target == target && ranges.back().hi + 1 == lo) {
          ranges.back().hi = hi;
        } else {
          ranges.push_back({static_cast<uint8_t>(lo), hi, target});
        }
      }
      std::vector<dfa_call> calls;
      for (const uint32_t s : set) {
        for (const auto& c : nfa_.state(s).calls) {
          const dfa_call call{c.rule, id_of(epsilon_closure(nfa_, {c.target}, seen))};
          const bool known = std::any_of(calls.begin(), calls.end(), [&](const dfa_call& x) {
            return x.rule == call.rule && x.return_state == call.return_state;
          });
          if (!known) calls.push_back(call);
          if (!queued[c.rule]) {
            queued[c.rule] = 1;
            pending_rules.push_back(c.rule);
          }
        }
      }
      dfa[at].ranges = std::move(ranges);
      dfa[at].calls = std::move(calls);
      dfa[at].is_final = std::binary_search(set.begin(), set.end(), final_nfa_state);
    }
  }

  // Which states can still complete their rule: the least fixpoint of "final, or a byte
  // into a live state, or a call of a rule that can complete, returning into a live state".
  const size_t n = dfa.size();
  std::vector<uint8_t> live(n, 0);
  std::vector<std::vector<uint32_t>> byte_preds(n), return_preds(n), call_sites(rules_.size());
  for (uint32_t s = 0; s < n; ++s) {
    for (const auto& r : dfa[s].ranges) byte_preds[r.target].push_back(s);
    for (const auto& c : dfa[s].calls) {
      return_preds[c.return_state].push_back(s);
      call_sites[c.rule].push_back(s);
    }
  }
  std::vector<uint32_t> work;
  auto mark = [&](uint32_t s) {
    if (!live[s]) {
      live[s] = 1;
      work.push_back(s);
    }
  };
  auto call_completes = [&](uint32_t s) {
    for (const auto& c : dfa[s].calls) {
      if (live[c.return_state] && rule_start[c.rule] != grammar::no_state && live[rule_start[c.rule]]) {
        return true;
      }
    }
    return false;
  };
  for (uint32_t s = 0; s < n; ++s) {
    if (dfa[s].is_final) mark(s);
  }
  while (!work.empty()) {
    const uint32_t s = work.back();
    work.pop_back();
    for (const uint32_t p : byte_preds[s]) mark(p);
    for (const uint32_t p : return_preds[s]) {
      if (call_completes(p)) mark(p);
    }
    if (s == rule_start[dfa[s].rule]) {
      for (const uint32_t p : call_sites[dfa[s].rule]) {
        if (call_completes(p)) mark(p);
      }
    }
  }
  if (!live[rule_start[root]]) {
    throw error(error_code::invalid_argument,
                "the grammar accepts no output at all (" + rules_[root].name + ")");
  }
  for (auto& st : dfa) {
    std::erase_if(st.ranges, [&](const dfa_range& r) { return !live[r.target]; });
    std::erase_if(st.calls, [&](const dfa_call& c) {
      return !live[c.return_state] || !live[rule_start[c.rule]];
    });
  }

  // Left recursion would make a closure push forever: refuse any rule that can reach a
  // call of itself without consuming a byte.
  std::vector<uint8_t> nullable_state(n, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (uint32_t s = 0; s < n; ++s) {
      if (nullable_state[s]) continue;
      bool is_nullable = dfa[s].is_final;
      for (const auto& c : dfa[s].calls) {
        is_nullable = is_nullable || (nullable_state[rule_start[c.rule]] && nullable_state[c.return_state]);
      }
      if (is_nullable) {
        nullable_state[s] = 1;
        changed = true;
      }
    }
  }
  std::vector<std::vector<uint32_t>> left_calls(rules_.size());
  for (uint32_t rule = 0; rule < rules_.size(); ++rule) {
    if (rule_start[rule] == grammar::no_state) continue;
    std::vector<uint32_t> stack{rule_start[rule]};
    std::vector<uint32_t> visited;
    while (!stack.empty()) {
      const uint32_t s = stack.back();
      stack.pop_back();
      if (std::find(visited.begin(), visited.end(), s) != visited.end()) continue;
      visited.push_back(s);
      for (const auto& c : dfa[s].calls) {
        left_calls[rule].push_back(c.rule);
        if (nullable_state[rule_start[c.rule]]) stack.push_back(c.return_state);
      }
    }
  }
  std::vector<uint8_t> colour(rules_.size(), 0);  // 0 new, 1 on the path, 2 done
  std::function<void(uint32_t)> visit = [&](uint32_t rule) {
    colour[rule] = 1;
    for (const uint32_t callee : left_calls[rule]) {
      if (colour[callee] == 1) {
        throw error(error_code::invalid_argument,
                    "the grammar is left-recursive: " + rules_[callee].name +
                        " refers to itself before any output (a $ref cycle that consumes nothing)");
      }
      if (colour[callee] == 0) visit(callee);
    }
    colour[rule] = 2;
  };
  for (uint32_t rule = 0; rule < rules_.size(); ++rule) {
    if (rule_start[rule] != grammar::no_state && colour[rule] == 0) visit(rule);
  }

  // Bytes that no range tells apart share a class, so that the table has one column each.
  std::array<uint8_t, 257> is_cut{};
  for (const auto& st : dfa) {
    for (const auto& r : st.ranges) {
      is_cut[r.lo] = 1;
      is_cut[r.hi + 1] = 1;
    }
  }
  auto g = std::shared_ptr<grammar>(new grammar());
  int cls = -1;
  for (int b = 0; b < 256; ++b) {
    if (b == 0 || is_cut[b]) ++cls;
    g->class_of_[b] = static_cast<uint8_t>(cls);
  }
  g->num_classes_ = cls + 1;
  g->start_ = rule_start[root];
  g->next_.assign(n * g->num_classes_, grammar::no_state);
  g->is_final_.resize(n);
  g->has_bytes_.resize(n);
  g->rule_of_.resize(n);
  g->call_begin_.resize(n + 1);
  for (uint32_t s = 0; s < n; ++s) {
    for (const auto& r : dfa[s].ranges) {
      for (int b = r.lo; b <= r.hi; ++b) g->next_[s * g->num_classes_ + g->class_of_[b]] = r.target;
    }
    g->is_final_[s] = dfa[s].is_final;
    g->has_bytes_[s] = !dfa[s].ranges.empty();
    g->rule_of_[s] = dfa[s].rule;
    g->call_begin_[s] = static_cast<uint32_t>(g->calls_.size());
    for (const auto& c : dfa[s].calls) g->calls_.push_back({rule_start[c.rule], c.return_state});
  }
  g->call_begin_[n] = static_cast<uint32_t>(g->calls_.size());
  for (const auto& r : rules_) g->rule_names_.push_back(r.name);
  return g;
}

}  // namespace troupe
