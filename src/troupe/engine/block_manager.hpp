// The paged KV block accounting behind kv_space: a fixed pool of device blocks with a free
// list and reference counts, copy-on-write forks, automatic prefix caching and host swap space.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "troupe/engine/kv_space.hpp"

namespace troupe {

struct block_manager_config {
  int32_t num_blocks = 0;          // device blocks in the pool
  int32_t block_size = 16;         // tokens per block
  int32_t num_swap_blocks = 0;     // host blocks for swapped-out sequences (0: no swapping)
  bool enable_prefix_caching = true;
};

struct block_manager_stats {
  int32_t num_total_blocks = 0;
  int32_t num_used_blocks = 0;     // referenced by at least one sequence
  int32_t num_cached_blocks = 0;   // unreferenced but holding reusable prefix KV (evictable)
  int32_t num_free_blocks = 0;     // unreferenced and holding nothing
  int32_t num_total_swap_blocks = 0;
  int32_t num_used_swap_blocks = 0;
  int64_t num_prefix_query_tokens = 0;  // prompt tokens of new sequences looked up in the cache
  int64_t num_prefix_hit_tokens = 0;    // of those, how many reused cached KV
  int64_t num_evicted_blocks = 0;       // cached blocks reclaimed for new data
  int64_t num_reserved_slots = 0;       // token slots in used blocks
  int64_t num_unused_slots = 0;         // reserved but not holding a token (tails of last blocks)
  bool operator==(const block_manager_stats&) const = default;
  double prefix_hit_ratio() const {
    return num_prefix_query_tokens ? double(num_prefix_hit_tokens) / double(num_prefix_query_tokens) : 0.0;
  }
  double waste_ratio() const {
    return num_reserved_slots ? double(num_unused_slots) / double(num_reserved_slots) : 0.0;
  }
};

// Token slots in blocks held by sequences, and how many of them hold no token yet.
struct slot_usage {
  int64_t num_reserved = 0;
  int64_t num_unused = 0;
};

// Single-threaded: the scheduler actor owns one (an object, not an actor) and is its only
// caller.
//
// Contracts the caller relies on:
// - Blocks are registered in the prefix cache by grow() as soon as they are full of known
//   tokens, i.e. when the step that writes them is planned. So:
//   * a hit can point at blocks written by the same step; the backend writes every
//     sequence's KV of a layer before any attention of that layer reads it;
//   * a sequence grown for a step must not be released before that step has run (its
//     blocks would be cached holding nothing); use discard() when it must go, or when
//     its step failed.
// - The kv_operations returned by calls made while building one plan must run before the
//   step, in call order: a swap_out's device->host copies read blocks that a later grow or
//   swap_in of the same iteration may reuse. Running all swap_outs, then all copies, then
//   all swap_ins is the same thing unless the iteration swaps out a sequence after it got
//   a copy-on-write copy or was swapped in earlier in that same iteration.
// - Swapping a sequence copies every block it holds, shared ones included, into its own
//   host blocks and drops its references on the device, so the sharers are untouched and
//   swap_in always allocates fresh, unshared device blocks.
class block_manager final : public kv_space {
 public:
  // Throws troupe::error(invalid_argument) for a non-positive pool or block size.
  explicit block_manager(const block_manager_config& config);

  int32_t block_size() const override { return block_size_; }
  int32_t num_free_blocks() const override;
  int32_t num_total_blocks() const override { return num_blocks_; }

  int32_t num_cached_prefix_tokens(std::span<const int32_t> prompt) const override;
  // For a new sequence this assumes no prefix hit (the tokens are unknown), so a true
  // answer is always honoured; the three-argument form counts the hits.
  bool can_grow(uint64_t seq_id, int32_t num_tokens) const override;
  bool can_grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) const;
  // Growing to fewer positions than a sequence holds changes nothing (it never shrinks).
  // Throws invalid_argument for a negative count or a swapped-out sequence.
  kv_operations grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) override;
  std::optional<kv_growth> try_grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) override;
  // Throws invalid_argument for an unknown or swapped-out sequence.
  const std::vector<int32_t>& block_table(uint64_t seq_id) const override;
  void truncate(uint64_t seq_id, int32_t num_tokens) override;
  // Unknown or already released sequences are ignored (aborts may race with finishes).
  void release(uint64_t seq_id) override;
  // Like release, for a sequence whose last step failed: its blocks may hold unwritten KV,
  // so none of them stays in (or remains findable through) the prefix cache.
  void discard(uint64_t seq_id) override;
  // Throws invalid_argument when the parent is unknown or swapped out, or the child exists.
  void fork(uint64_t parent_id, uint64_t child_id) override;
  // Every block and host block free, nothing cached; the running totals of stats() are kept.
  void reset() override;

  bool can_swap_out(uint64_t seq_id) const override;
  // Throws invalid_argument for an unknown or already swapped sequence, context_overflow
  // when the swap space is too small.
  kv_operations swap_out(uint64_t seq_id) override;
  bool can_swap_in(uint64_t seq_id) const override;
  // Throws invalid_argument for an unknown or resident sequence, context_overflow when the
  // device pool is too small.
  kv_operations swap_in(uint64_t seq_id) override;

  // Whether num_tokens positions could ever fit, with every other sequence gone: a prompt
  // that cannot is refused at once rather than queued forever.
  bool can_ever_fit(int32_t num_tokens) const;
  // Device blocks a grow to num_tokens would take from the pool now (copy-on-write included).
  int32_t num_blocks_needed(uint64_t seq_id, int32_t num_tokens) const;
  // Leading tokens the sequence reused from the prefix cache when it was first grown. The
  // scheduler starts computing there: it can be less than num_cached_prefix_tokens
  // answered earlier if blocks were evicted in between.
  int32_t num_reused_prefix_tokens(uint64_t seq_id) const;
  // The prefix-cache key the first full block of `tokens` has (or would have) here; none
  // when tokens fill no block or prefix caching is off. With is_cached_block_key, what a
  // prefix digest (prefix_digest.hpp) asks: is that prompt's start still cached?
  std::optional<uint64_t> first_block_key(std::span<const int32_t> tokens) const;
  // Whether a block with this key is in the prefix cache now (held by a sequence or
  // evictable), not yet evicted.
  bool is_cached_block_key(uint64_t key) const { return cached_blocks_.contains(key); }
  bool has_sequence(uint64_t seq_id) const { return seqs_.contains(seq_id); }
  bool is_swapped(uint64_t seq_id) const;
  int32_t ref_count(int32_t block) const;
  block_manager_stats stats() const;
  // Just the slot counts of stats(): one walk over the sequences, cheap enough per step.
  slot_usage count_slots() const;

  // Walks every structure and throws troupe::error(internal) naming the first broken
  // invariant. O(pool + sequences); for tests and debug builds.
  void check_invariants() const;

 private:
  static constexpr int32_t no_block = -1;
  static constexpr uint64_t root_key = 0x6a09e667f3bcc908ULL;

  struct block_state {
    int32_t ref_count = 0;
    int32_t lru_prev = no_block;    // links in the evictable list, valid while cached and unreferenced
    int32_t lru_next = no_block;
    uint64_t key = 0;               // prefix-cache key; meaningful only when serial != 0
    uint64_t serial = 0;            // unique per registration, 0 when not in the prefix cache
    uint64_t parent_serial = 0;     // serial of the block before it in its chain, 0 for the first
  };

  struct sequence_blocks {
    std::vector<int32_t> blocks;        // device block table, empty while swapped
    std::vector<int32_t> host_blocks;   // host copies while swapped out
    int32_t num_tokens = 0;
    int32_t num_reused_tokens = 0;
    bool is_swapped = false;
    // Prefix-cache chain: how many leading full blocks have been keyed, and the last one's
    // key and serial, so that registering the next block costs O(block_size).
    int32_t num_keyed_blocks = 0;
    uint64_t chain_key = root_key;
    uint64_t chain_serial = 0;
  };

  struct prefix_match {
    std::vector<int32_t> blocks;
    uint64_t key = root_key;
    uint64_t serial = 0;
  };

  int32_t blocks_for(int32_t num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }
  prefix_match match_prefix(std::span<const int32_t> tokens, int32_t max_blocks) const;
  int32_t num_evictable_blocks(const std::vector<int32_t>& blocks) const;
  int32_t allocate_block();
  void add_ref(int32_t block);
  void drop_ref(int32_t block);
  void drop_refs(const std::vector<int32_t>& blocks);
  void register_full_blocks(sequence_blocks& seq, std::span<const int32_t> tokens);
  // For a resident sequence: device blocks growing to num_tokens takes, and the growing.
  int32_t num_blocks_needed(const sequence_blocks& seq, int32_t num_tokens) const;
  kv_operations grow_resident(sequence_blocks& seq, int32_t num_tokens, std::span<const int32_t> tokens);
  void unregister(int32_t block);
  void lru_push_back(int32_t block);
  void lru_remove(int32_t block);
  std::span<const int32_t> stored_tokens(int32_t block) const;

  int32_t num_blocks_;
  int32_t block_size_;
  int32_t num_swap_blocks_;
  bool is_prefix_caching_;
  std::vector<block_state> block_states_;
  std::vector<int32_t> free_blocks_;        // a stack: unreferenced, uncached
  int32_t lru_head_ = no_block;             // least recently used evictable cached block
  int32_t lru_tail_ = no_block;
  int32_t num_lru_blocks_ = 0;
  std::vector<int32_t> block_tokens_;       // num_blocks x block_size ids of cached blocks
  std::unordered_map<uint64_t, int32_t> cached_blocks_;  // key -> block
  std::vector<int32_t> free_host_blocks_;
  std::unordered_map<uint64_t, sequence_blocks> seqs_;
  uint64_t next_serial_ = 1;
  int64_t num_prefix_query_tokens_ = 0;
  int64_t num_prefix_hit_tokens_ = 0;
  int64_t num_evicted_blocks_ = 0;
};

}  // namespace troupe
