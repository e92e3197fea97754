// What the scheduler asks of the KV block pool, as an interface: the block manager
// implements it, scheduler tests use a scripted fake. All counts are in tokens or blocks
// of block_size() tokens; one sequence's KV covers positions [0, num_tokens).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace troupe {

struct block_copy {
  int32_t src = 0;
  int32_t dst = 0;
  bool operator==(const block_copy&) const = default;
};

// What the backend must do before the step that follows a reservation.
struct kv_operations {
  std::vector<block_copy> copies;     // device block -> device block (copy-on-write)
  std::vector<block_copy> swap_out;   // device block -> host block
  std::vector<block_copy> swap_in;    // host block -> device block
  bool operator==(const kv_operations&) const = default;
};

// What try_grow did: the copies to make first, and the sequence's block table after it
// (valid until the pool changes again).
struct kv_growth {
  kv_operations ops;
  const std::vector<int32_t>* block_table = nullptr;
};

class kv_space {
 public:
  virtual ~kv_space() = default;
  virtual int32_t block_size() const = 0;
  virtual int32_t num_free_blocks() const = 0;   // including evictable cached blocks
  virtual int32_t num_total_blocks() const = 0;

  // A new sequence's prompt: how many of its leading tokens are already in the prefix
  // cache (a multiple of block_size, and always < prompt size so one token is computed).
  virtual int32_t num_cached_prefix_tokens(std::span<const int32_t> prompt) const = 0;
  // Whether growing `seq_id` (known or new) to num_tokens positions would fit now.
  virtual bool can_grow(uint64_t seq_id, int32_t num_tokens) const = 0;
  // Grows (allocating on first use, reusing cached prefix blocks for a new sequence) so that
  // KV positions [0, num_tokens) have blocks; `tokens` are the sequence's token ids so far
  // (at least num_tokens of them when known) for prefix-cache keys. Returns the copy-on-write
  // copies needed. Throws troupe::error(context_overflow) when it cannot fit.
  virtual kv_operations grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) = 0;
  // can_grow, grow and block_table in one call, the scheduler's per-step path: nothing (and
  // no change) when growing does not fit now. A pool overrides it to look a sequence up once.
  virtual std::optional<kv_growth> try_grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) {
    if (!can_grow(seq_id, num_tokens)) return std::nullopt;
    kv_growth g{grow(seq_id, num_tokens, tokens), nullptr};
    g.block_table = &block_table(seq_id);
    return g;
  }
  virtual const std::vector<int32_t>& block_table(uint64_t seq_id) const = 0;
  // Shrinks a resident sequence to num_tokens positions (no more than it holds), returning
  // the blocks past them: speculative decoding rolls back the positions of rejected
  // proposals. Never drops a block registered in the prefix cache (those hold known tokens
  // only, and rejected proposals never are). Throws troupe::error(invalid_argument) for an
  // unknown or swapped-out sequence or a count out of range.
  virtual void truncate(uint64_t seq_id, int32_t num_tokens) = 0;
  // Returns all of the sequence's blocks (full ones stay in the prefix cache as reusable).
  virtual void release(uint64_t seq_id) = 0;
  // Returns them and drops them from the prefix cache: for a sequence whose planned step
  // never ran (their KV was never written). Unknown ids are ignored.
  virtual void discard(uint64_t seq_id) = 0;
  // child shares parent's blocks (reference counts); a later grow copies on write.
  virtual void fork(uint64_t parent_id, uint64_t child_id) = 0;

  // The pool's memory is gone (its backend was replaced after a stuck step): every
  // sequence's blocks, the prefix cache and the swap space are forgotten, as in a new pool.
  virtual void reset() = 0;

  virtual bool can_swap_out(uint64_t seq_id) const = 0;
  virtual kv_operations swap_out(uint64_t seq_id) = 0;
  virtual bool can_swap_in(uint64_t seq_id) const = 0;
  virtual kv_operations swap_in(uint64_t seq_id) = 0;
};

}  // namespace troupe
