// A grammar bound to a vocabulary: computes the allowed-token masks its matchers ask for,
// and caches them at two levels, shared by every matcher of this grammar (thread-safe).
//
//   per DFA state (computed once, kept for the grammar's life): one walk of the token trie
//     from the bare state. Tokens that stay inside the state's rule (calls of other rules
//     included) are allowed whatever the caller is: `accepted`. Where the rule may return
//     with bytes of the token left, the rest depends on the caller: the trie nodes where
//     that happens are kept as `escape_nodes`.
//   per configuration (bounded LRU): the finished mask of a whole configuration, keyed by
//     its states and return stacks. Inside a JSON string or a number every token leads back
//     to the same configuration, so most steps end here.
//
// A configuration's mask is the union, over its positions, of each state's accepted set
// plus the escape nodes' subtrees walked from what the caller does after the return.
#pragma once
#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "troupe/grammar/grammar.hpp"
#include "troupe/grammar/stepper.hpp"
#include "troupe/grammar/token_bitset.hpp"
#include "troupe/grammar/token_trie.hpp"

namespace troupe {

struct grammar_mask_stats {
  uint64_t num_masks = 0;         // masks asked for
  uint64_t num_cache_hits = 0;    // ... answered from the per-configuration cache
  uint64_t num_state_walks = 0;   // per-state trie walks made (each once per state)
  uint64_t num_cached_masks = 0;  // configurations in the cache now
};

class grammar_masks {
 public:
  static constexpr size_t default_max_cached_masks = 4096;

  grammar_masks(std::shared_ptr<const grammar> g, std::shared_ptr<const token_trie> vocab,
                size_t max_cached_masks = default_max_cached_masks);

  const grammar& automaton() const { return *grammar_; }
  const token_trie& vocab() const { return *vocab_; }

  // The allowed tokens after `config`, whose stacks live in `arena` (the caller's; walks
  // push onto it and take back what they pushed). End-of-generation ids are in the mask
  // exactly when config.can_end.
  std::shared_ptr<const token_bitset> mask(const grammar_internal::configuration& config,
                                           grammar_internal::stack_arena& arena) const;
  // The same, by trying every token's bytes: for tests and for checking the fast path.
  token_bitset mask_by_brute_force(const grammar_internal::configuration& config,
                                   grammar_internal::stack_arena& arena) const;

  grammar_mask_stats stats() const;

 private:
  struct state_entry {
    token_bitset accepted;
    std::vector<uint32_t> escape_nodes;
  };

  std::shared_ptr<const state_entry> entry_for(uint32_t state) const;
  std::shared_ptr<const state_entry> walk_state(uint32_t state) const;
  token_bitset compute(const grammar_internal::configuration& config,
                       grammar_internal::stack_arena& arena) const;
  static std::string key_of(const grammar_internal::configuration& config,
                            const grammar_internal::stack_arena& arena);

  std::shared_ptr<const grammar> grammar_;
  std::shared_ptr<const token_trie> vocab_;
  size_t max_cached_masks_;

  mutable std::mutex states_mutex_;
  mutable std::vector<std::shared_ptr<const state_entry>> states_;

  mutable std::mutex cache_mutex_;
  mutable std::list<std::pair<std::string, std::shared_ptr<const token_bitset>>> lru_;
  mutable std::unordered_map<std::string, decltype(lru_)::iterator> cache_;

  mutable std::atomic<uint64_t> num_masks_{0};
  mutable std::atomic<uint64_t> num_cache_hits_{0};
  mutable std::atomic<uint64_t> num_state_walks_{0};
};

}  // namespace troupe
