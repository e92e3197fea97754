// Mask computation: trie walks from bare states and from callers, and the two caches.
#include "troupe/grammar/grammar_masks.hpp"

#include <algorithm>

namespace troupe {

using grammar_internal::configuration;
using grammar_internal::position;
using grammar_internal::stack_arena;
using grammar_internal::stepper;

namespace {

// Walks the trie nodes [begin, end) whose depth is base_depth + 1 and more, starting from
// `start` at base_depth, and calls on_live(node, configuration) for every node whose
// prefix the grammar still allows; a dead node's subtree is skipped in one jump.
template <class F>
void walk(const token_trie& trie, stepper& step, const configuration& start, uint32_t begin,
          uint32_t end, uint32_t base_depth, std::vector<configuration>& levels, F&& on_live) {
  if (levels.size() < trie.max_depth() + 1) levels.resize(trie.max_depth() + 1);
  levels[0] = start;
  for (uint32_t node = begin; node < end;) {
    const uint32_t d = trie.depth(node) - base_depth;
    if (!step.advance(levels[d - 1], trie.byte(node), levels[d])) {
      node = trie.subtree_end(node);
      continue;
    }
    on_live(node, levels[d]);
    ++node;
  }
}

}  // namespace

grammar_masks::grammar_masks(std::shared_ptr<const grammar> g, std::shared_ptr<const token_trie> vocab,
                             size_t max_cached_masks)
    : grammar_(std::move(g)), vocab_(std::move(vocab)), max_cached_masks_(max_cached_masks),
      states_(grammar_->num_states()) {}

std::shared_ptr<const grammar_masks::state_entry> grammar_masks::entry_for(uint32_t state) const {
  {
    std::lock_guard lock(states_mutex_);
    if (states_[state]) return states_[state];
  }
  // Two threads may walk the same state at once; the first to finish is kept.
  std::shared_ptr<const state_entry> entry = walk_state(state);
  std::lock_guard lock(states_mutex_);
  if (!states_[state]) states_[state] = std::move(entry);
  return states_[state];
}

std::shared_ptr<const grammar_masks::state_entry> grammar_masks::walk_state(uint32_t state) const {
  ++num_state_walks_;
  auto entry = std::make_shared<state_entry>();
  entry->accepted = token_bitset(vocab_->vocab_size());
  stack_arena arena;
  stepper step(*grammar_, arena);
  configuration start;
  start.positions.push_back({state, stack_arena::empty});
  std::vector<configuration> levels;
  walk(*vocab_, step, start, 0, vocab_->num_nodes(), 0, levels,
       [&](uint32_t node, const configuration& c) {
         for (const int32_t* t = vocab_->tokens_begin(node); t != vocab_->tokens_end(node); ++t) {
           entry->accepted.set(*t);
         }
         if (c.can_end && vocab_->has_children(node)) entry->escape_nodes.push_back(node);
       });
  return entry;
}

token_bitset grammar_masks::compute(const configuration& config, stack_arena& arena) const {
  token_bitset out(vocab_->vocab_size());
  const size_t mark = arena.size();
  stepper step(*grammar_, arena);
  std::vector<configuration> levels;
  configuration caller;
  for (const position p : config.positions) {
    const std::shared_ptr<const state_entry> entry = entry_for(p.state);
    out.merge(entry->accepted);
    if (entry->escape_nodes.empty() || p.stack == stack_arena::empty) continue;
    step.after_return(p, caller);
    for (const uint32_t node : entry->escape_nodes) {
      walk(*vocab_, step, caller, node + 1, vocab_->subtree_end(node), vocab_->depth(node), levels,
           [&](uint32_t live, const configuration&) {
             for (const int32_t* t = vocab_->tokens_begin(live); t != vocab_->tokens_end(live); ++t) {
               out.set(*t);
             }
           });
    }
  }
  arena.truncate(mark);
  if (config.can_end) {
    for (const int32_t id : vocab_->eog_ids()) out.set(id);
  }
  return out;
}

std::string grammar_masks::key_of(const configuration& config, const stack_arena& arena) {
  // Each position as its state and its return stack, top first; positions sorted so that
  // one set of parses gives one key whatever order the closure found them in.
  std::vector<std::vector<uint32_t>> parts;
  parts.reserve(config.positions.size());
  for (const position p : config.positions) {
    std::vector<uint32_t> part{p.state};
    for (uint32_t s = p.stack; s != stack_arena::empty; s = arena.at(s).parent) {
      part.push_back(arena.at(s).return_state);
    }
    part.push_back(grammar::no_state);
    parts.push_back(std::move(part));
  }
  std::sort(parts.begin(), parts.end());
  std::string key(1, config.can_end ? '1' : '0');
  for (const auto& part : parts) {
    key.append(reinterpret_cast<const char*>(part.data()), part.size() * sizeof(uint32_t));
  }
  return key;
}

std::shared_ptr<const token_bitset> grammar_masks::mask(const configuration& config,
                                                        stack_arena& arena) const {
  ++num_masks_;
  std::string key = key_of(config, arena);
  {
    std::lock_guard lock(cache_mutex_);
    if (const auto it = cache_.find(key); it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++num_cache_hits_;
      return it->second->second;
    }
  }
  auto computed = std::make_shared<const token_bitset>(compute(config, arena));
  if (max_cached_masks_ == 0) return computed;
  std::lock_guard lock(cache_mutex_);
  if (const auto it = cache_.find(key); it != cache_.end()) return it->second->second;
  lru_.emplace_front(key, computed);
  cache_.emplace(std::move(key), lru_.begin());
  if (lru_.size() > max_cached_masks_) {
    cache_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return computed;
}

token_bitset grammar_masks::mask_by_brute_force(const configuration& config, stack_arena& arena) const {
  token_bitset out(vocab_->vocab_size());
  const size_t mark = arena.size();
  stepper step(*grammar_, arena);
  configuration a, b;
  for (int32_t id = 0; id < vocab_->vocab_size(); ++id) {
    if (!vocab_->is_text(id)) continue;
    a = config;
    bool is_alive = true;
    for (const char c : vocab_->piece(id)) {
      is_alive = step.advance(a, static_cast<uint8_t>(c), b);
      if (!is_alive) break;
      std::swap(a, b);
    }
    if (is_alive) out.set(id);
  }
  arena.truncate(mark);
  if (config.can_end) {
    for (const int32_t id : vocab_->eog_ids()) out.set(id);
  }
  return out;
}

grammar_mask_stats grammar_masks::stats() const {
  grammar_mask_stats s;
  s.num_masks = num_masks_;
  s.num_cache_hits = num_cache_hits_;
  s.num_state_walks = num_state_walks_;
  std::lock_guard lock(cache_mutex_);
  s.num_cached_masks = lru_.size();
  return s;
}

}  // namespace troupe
