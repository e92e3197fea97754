// The block pool's bookkeeping: allocation and reference counts, copy-on-write, the prefix
// cache (key -> block map, evictable LRU list) and the host swap space.
#include "troupe/engine/block_manager.hpp"

#include <algorithm>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// A full block's key: its parent's key and its token ids, every token passed through a
// full 64-bit avalanche so that nearby prefixes land far apart.
uint64_t block_key(uint64_t parent_key, std::span<const int32_t> tokens) {
  uint64_t h = parent_key;
  for (int32_t t : tokens) h = mix64(h ^ static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ULL;
  return h;
}

std::string seq_name(uint64_t seq_id) { return "sequence " + std::to_string(seq_id); }

// The entry of a sequence whose blocks are on the device, const or not as the map is.
template <class sequence_map>
auto& find_resident(sequence_map& seqs, uint64_t seq_id, const char* what) {
  const auto it = seqs.find(seq_id);
  if (it == seqs.end()) throw error(error_code::invalid_argument, std::string(what) + ": unknown " + seq_name(seq_id));
  if (it->second.is_swapped) {
    throw error(error_code::invalid_argument, std::string(what) + ": " + seq_name(seq_id) + " is swapped out");
  }
  return it->second;
}

}  // namespace

block_manager::block_manager(const block_manager_config& config)
    : num_blocks_(config.num_blocks),
      block_size_(config.block_size),
      num_swap_blocks_(config.num_swap_blocks),
      is_prefix_caching_(config.enable_prefix_caching) {
  if (num_blocks_ <= 0 || block_size_ <= 0 || num_swap_blocks_ < 0) {
    throw error(error_code::invalid_argument,
                "block_manager needs num_blocks > 0, block_size > 0 and num_swap_blocks >= 0, got " +
                    std::to_string(num_blocks_) + ", " + std::to_string(block_size_) + ", " +
                    std::to_string(num_swap_blocks_));
  }
  if (is_prefix_caching_) block_tokens_.resize(static_cast<size_t>(num_blocks_) * static_cast<size_t>(block_size_));
  reset();
}

void block_manager::reset() {
  block_states_.assign(static_cast<size_t>(num_blocks_), block_state{});
  // Stacks popped from the back: block 0 is handed out first.
  free_blocks_.clear();
  for (int32_t b = num_blocks_ - 1; b >= 0; --b) free_blocks_.push_back(b);
  free_host_blocks_.clear();
  for (int32_t h = num_swap_blocks_ - 1; h >= 0; --h) free_host_blocks_.push_back(h);
  lru_head_ = lru_tail_ = no_block;
  num_lru_blocks_ = 0;
  cached_blocks_.clear();
  seqs_.clear();
}

int32_t block_manager::num_free_blocks() const {
  return static_cast<int32_t>(free_blocks_.size()) + num_lru_blocks_;
}

// ---- prefix cache -------------------------------------------------------------------------

std::span<const int32_t> block_manager::stored_tokens(int32_t block) const {
  return std::span<const int32_t>(block_tokens_).subspan(static_cast<size_t>(block) * static_cast<size_t>(block_size_),
                                                          static_cast<size_t>(block_size_));
}

// A candidate counts only when its tokens and its parent's serial match: serials are never
// reused, so a hash collision or a chain whose earlier block was evicted cannot match.
block_manager::prefix_match block_manager::match_prefix(std::span<const int32_t> tokens, int32_t max_blocks) const {
  prefix_match m;
  if (!is_prefix_caching_) return m;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const auto slice = tokens.subspan(static_cast<size_t>(i) * static_cast<size_t>(block_size_),
                                      static_cast<size_t>(block_size_));
    const uint64_t key = block_key(m.key, slice);
    const auto found = cached_blocks_.find(key);
    if (found == cached_blocks_.end()) break;
    const int32_t block = found->second;
    const auto& state = block_states_[static_cast<size_t>(block)];
    if (state.parent_serial != m.serial || !std::ranges::equal(stored_tokens(block), slice)) break;
    m.blocks.push_back(block);
    m.key = key;
    m.serial = state.serial;
  }
  return m;
}

int32_t block_manager::num_cached_prefix_tokens(std::span<const int32_t> prompt) const {
  if (prompt.empty()) return 0;
  const auto max_blocks = static_cast<int32_t>((prompt.size() - 1) / static_cast<size_t>(block_size_));
  return static_cast<int32_t>(match_prefix(prompt, max_blocks).blocks.size()) * block_size_;
}

std::optional<uint64_t> block_manager::first_block_key(std::span<const int32_t> tokens) const {
  if (!is_prefix_caching_ || tokens.size() < static_cast<size_t>(block_size_)) return std::nullopt;
  return block_key(root_key, tokens.first(static_cast<size_t>(block_size_)));
}

// Registers the sequence's full blocks whose tokens are known and not yet keyed.
void block_manager::register_full_blocks(sequence_blocks& seq, std::span<const int32_t> tokens) {
  if (!is_prefix_caching_) return;
  const int32_t num_known = std::min<int32_t>(seq.num_tokens, static_cast<int32_t>(tokens.size()));
  for (int32_t i = seq.num_keyed_blocks; i < num_known / block_size_; ++i) {
    const auto slice = tokens.subspan(static_cast<size_t>(i) * static_cast<size_t>(block_size_),
                                      static_cast<size_t>(block_size_));
    const int32_t block = seq.blocks[static_cast<size_t>(i)];
    auto& state = block_states_[static_cast<size_t>(block)];
    seq.num_keyed_blocks = i + 1;
    if (state.serial != 0) {  // a sharer registered it first
      seq.chain_key = state.key;
      seq.chain_serial = state.serial;
      continue;
    }
    const uint64_t key = block_key(seq.chain_key, slice);
    seq.chain_key = key;
    if (const auto found = cached_blocks_.find(key); found != cached_blocks_.end()) {
      const auto& other = block_states_[static_cast<size_t>(found->second)];
      if (other.parent_serial == seq.chain_serial && std::ranges::equal(stored_tokens(found->second), slice)) {
        seq.chain_serial = other.serial;  // same content already cached: this copy stays private
        continue;
      }
      unregister(found->second);  // orphaned by an evicted parent, or a hash collision
    }
    state.key = key;
    state.serial = next_serial_++;
    state.parent_serial = seq.chain_serial;
    std::ranges::copy(slice, block_tokens_.begin() + static_cast<ptrdiff_t>(block) * block_size_);
    cached_blocks_.emplace(key, block);
    seq.chain_serial = state.serial;
  }
}

void block_manager::unregister(int32_t block) {
  auto& state = block_states_[static_cast<size_t>(block)];
  if (const auto found = cached_blocks_.find(state.key); found != cached_blocks_.end() && found->second == block) {
    cached_blocks_.erase(found);
  }
  state.serial = 0;
  state.parent_serial = 0;
  if (state.ref_count == 0) {
    lru_remove(block);
    free_blocks_.push_back(block);
  }
}

void block_manager::lru_push_back(int32_t block) {
  auto& state = block_states_[static_cast<size_t>(block)];
  state.lru_prev = lru_tail_;
  state.lru_next = no_block;
  if (lru_tail_ != no_block) {
    block_states_[static_cast<size_t>(lru_tail_)].lru_next = block;
  } else {
    lru_head_ = block;
  }
  lru_tail_ = block;
  ++num_lru_blocks_;
}

void block_manager::lru_remove(int32_t block) {
  auto& state = block_states_[static_cast<size_t>(block)];
  if (state.lru_prev != no_block) {
    block_states_[static_cast<size_t>(state.lru_prev)].lru_next = state.lru_next;
  } else {
    lru_head_ = state.lru_next;
  }
  if (state.lru_next != no_block) {
    block_states_[static_cast<size_t>(state.lru_next)].lru_prev = state.lru_prev;
  } else {
    lru_tail_ = state.lru_prev;
  }
  state.lru_prev = state.lru_next = no_block;
  --num_lru_blocks_;
}

// ---- allocation and reference counts ------------------------------------------------------

// Truly free blocks first; then the least recently used cached block loses its contents.
int32_t block_manager::allocate_block() {
  int32_t block = no_block;
  if (!free_blocks_.empty()) {
    block = free_blocks_.back();
    free_blocks_.pop_back();
  } else if (lru_head_ != no_block) {
    block = lru_head_;
    unregister(block);  // moves it onto the free list
    free_blocks_.pop_back();
    ++num_evicted_blocks_;
  } else {
    throw error(error_code::internal, "block_manager: allocation from an exhausted pool");
  }
  block_states_[static_cast<size_t>(block)].ref_count = 1;
  return block;
}

void block_manager::add_ref(int32_t block) {
  auto& state = block_states_[static_cast<size_t>(block)];
  if (state.ref_count == 0) lru_remove(block);  // a prefix hit on an evictable block
  ++state.ref_count;
}

void block_manager::drop_ref(int32_t block) {
  auto& state = block_states_[static_cast<size_t>(block)];
  if (--state.ref_count > 0) return;
  if (state.serial != 0) {
    lru_push_back(block);
  } else {
    free_blocks_.push_back(block);
  }
}

// Last block first, so that a chain's tail is evicted before the prefix it extends.
void block_manager::drop_refs(const std::vector<int32_t>& blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) drop_ref(*it);
}

int32_t block_manager::num_evictable_blocks(const std::vector<int32_t>& blocks) const {
  return static_cast<int32_t>(std::ranges::count_if(
      blocks, [&](int32_t b) { return block_states_[static_cast<size_t>(b)].ref_count == 0; }));
}

// ---- growing ------------------------------------------------------------------------------

int32_t block_manager::num_blocks_needed(uint64_t seq_id, int32_t num_tokens) const {
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return blocks_for(std::max(num_tokens, 0));
  return num_blocks_needed(it->second, num_tokens);
}

int32_t block_manager::num_blocks_needed(const sequence_blocks& seq, int32_t num_tokens) const {
  if (seq.is_swapped) return blocks_for(std::max(num_tokens, seq.num_tokens));
  if (num_tokens <= seq.num_tokens) return 0;
  int32_t needed = blocks_for(num_tokens) - static_cast<int32_t>(seq.blocks.size());
  const bool is_last_partial = seq.num_tokens % block_size_ != 0;
  if (is_last_partial && block_states_[static_cast<size_t>(seq.blocks.back())].ref_count > 1) ++needed;
  return needed;
}

bool block_manager::can_grow(uint64_t seq_id, int32_t num_tokens) const {
  if (num_tokens < 0 || is_swapped(seq_id)) return false;
  return num_blocks_needed(seq_id, num_tokens) <= num_free_blocks();
}

bool block_manager::can_grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) const {
  if (has_sequence(seq_id) || tokens.empty() || num_tokens < 0) return can_grow(seq_id, num_tokens);
  const int32_t max_blocks = std::min<int32_t>(num_tokens, static_cast<int32_t>(tokens.size()) - 1) / block_size_;
  const auto hit = match_prefix(tokens, max_blocks);
  const int32_t needed = blocks_for(num_tokens) - static_cast<int32_t>(hit.blocks.size());
  return needed <= num_free_blocks() - num_evictable_blocks(hit.blocks);
}

bool block_manager::can_ever_fit(int32_t num_tokens) const {
  return num_tokens >= 0 && blocks_for(num_tokens) <= num_blocks_;
}

kv_operations block_manager::grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) {
  if (num_tokens < 0) {
    throw error(error_code::invalid_argument, "cannot grow " + seq_name(seq_id) + " to " +
                                                  std::to_string(num_tokens) + " tokens");
  }
  const auto overflow = [&](int32_t needed) {
    return error(error_code::context_overflow,
                 "growing " + seq_name(seq_id) + " to " + std::to_string(num_tokens) + " tokens needs " +
                     std::to_string(needed) + " more KV blocks but " + std::to_string(num_free_blocks()) +
                     " of " + std::to_string(num_blocks_) + " are free");
  };
  kv_operations ops;
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) {
    prefix_match hit;
    if (!tokens.empty()) {
      const int32_t max_blocks = std::min<int32_t>(num_tokens, static_cast<int32_t>(tokens.size()) - 1) / block_size_;
      hit = match_prefix(tokens, max_blocks);
    }
    const int32_t needed = blocks_for(num_tokens) - static_cast<int32_t>(hit.blocks.size());
    if (needed > num_free_blocks() - num_evictable_blocks(hit.blocks)) throw overflow(needed);
    sequence_blocks seq;
    for (int32_t b : hit.blocks) add_ref(b);  // before allocating, so no hit is evicted
    seq.blocks = std::move(hit.blocks);
    for (int32_t i = 0; i < needed; ++i) seq.blocks.push_back(allocate_block());
    seq.num_tokens = num_tokens;
    seq.num_keyed_blocks = static_cast<int32_t>(seq.blocks.size()) - needed;
    seq.num_reused_tokens = seq.num_keyed_blocks * block_size_;
    seq.chain_key = hit.key;
    seq.chain_serial = hit.serial;
    if (is_prefix_caching_ && !tokens.empty()) {
      num_prefix_query_tokens_ += static_cast<int64_t>(tokens.size());
      num_prefix_hit_tokens_ += seq.num_reused_tokens;
    }
    register_full_blocks(seq, tokens);
    seqs_.emplace(seq_id, std::move(seq));
    return ops;
  }
  auto& seq = it->second;
  if (seq.is_swapped) {
    throw error(error_code::invalid_argument, "cannot grow " + seq_name(seq_id) + ": it is swapped out");
  }
  if (const int32_t needed = num_blocks_needed(seq, num_tokens); needed > num_free_blocks()) throw overflow(needed);
  return grow_resident(seq, num_tokens, tokens);
}

std::optional<kv_growth> block_manager::try_grow(uint64_t seq_id, int32_t num_tokens, std::span<const int32_t> tokens) {
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end() || num_tokens < 0) return kv_space::try_grow(seq_id, num_tokens, tokens);
  auto& seq = it->second;
  if (seq.is_swapped || num_blocks_needed(seq, num_tokens) > num_free_blocks()) return std::nullopt;
  return kv_growth{grow_resident(seq, num_tokens, tokens), &seq.blocks};
}

kv_operations block_manager::grow_resident(sequence_blocks& seq, int32_t num_tokens, std::span<const int32_t> tokens) {
  kv_operations ops;
  if (num_tokens > seq.num_tokens) {
    const bool is_last_partial = seq.num_tokens % block_size_ != 0;
    if (is_last_partial && block_states_[static_cast<size_t>(seq.blocks.back())].ref_count > 1) {
      // The sharers keep the original; this sequence writes its next tokens into a copy.
      const int32_t copy = allocate_block();
      ops.copies.push_back({seq.blocks.back(), copy});
      drop_ref(seq.blocks.back());
      seq.blocks.back() = copy;
    }
    while (static_cast<int32_t>(seq.blocks.size()) < blocks_for(num_tokens)) seq.blocks.push_back(allocate_block());
    seq.num_tokens = num_tokens;
  }
  register_full_blocks(seq, tokens);
  return ops;
}

// ---- sequences ----------------------------------------------------------------------------

const std::vector<int32_t>& block_manager::block_table(uint64_t seq_id) const {
  return find_resident(seqs_, seq_id, "block_table").blocks;
}

void block_manager::truncate(uint64_t seq_id, int32_t num_tokens) {
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end() || it->second.is_swapped) {
    throw error(error_code::invalid_argument, "cannot truncate " + seq_name(seq_id) + ": it is not resident");
  }
  auto& seq = it->second;
  if (num_tokens < 0 || num_tokens > seq.num_tokens) {
    throw error(error_code::invalid_argument, "cannot truncate " + seq_name(seq_id) + " from " +
                                                  std::to_string(seq.num_tokens) + " to " +
                                                  std::to_string(num_tokens) + " tokens");
  }
  const int32_t keep = blocks_for(num_tokens);
  if (keep < seq.num_keyed_blocks) {
    throw error(error_code::invalid_argument, "cannot truncate " + seq_name(seq_id) + " to " +
                                                  std::to_string(num_tokens) +
                                                  " tokens: it would drop blocks keyed in the prefix cache");
  }
  while (static_cast<int32_t>(seq.blocks.size()) > keep) {
    drop_ref(seq.blocks.back());
    seq.blocks.pop_back();
  }
  seq.num_tokens = num_tokens;
}

void block_manager::release(uint64_t seq_id) {
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  auto& seq = it->second;
  if (seq.is_swapped) {
    free_host_blocks_.insert(free_host_blocks_.end(), seq.host_blocks.begin(), seq.host_blocks.end());
  } else {
    drop_refs(seq.blocks);
  }
  seqs_.erase(it);
}

void block_manager::discard(uint64_t seq_id) {
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  for (int32_t b : it->second.blocks) {
    if (block_states_[static_cast<size_t>(b)].serial != 0) unregister(b);
  }
  release(seq_id);
}

void block_manager::fork(uint64_t parent_id, uint64_t child_id) {
  if (seqs_.contains(child_id)) {
    throw error(error_code::invalid_argument, "cannot fork into " + seq_name(child_id) + ": it already exists");
  }
  sequence_blocks child = find_resident(seqs_, parent_id, "fork");
  for (int32_t b : child.blocks) add_ref(b);
  seqs_.emplace(child_id, std::move(child));
}

bool block_manager::is_swapped(uint64_t seq_id) const {
  const auto it = seqs_.find(seq_id);
  return it != seqs_.end() && it->second.is_swapped;
}

int32_t block_manager::num_reused_prefix_tokens(uint64_t seq_id) const {
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) throw error(error_code::invalid_argument, "num_reused_prefix_tokens: unknown " + seq_name(seq_id));
  return it->second.num_reused_tokens;
}

int32_t block_manager::ref_count(int32_t block) const {
  if (block < 0 || block >= num_blocks_) {
    throw error(error_code::invalid_argument, "block " + std::to_string(block) + " is outside the pool of " +
                                                  std::to_string(num_blocks_));
  }
  return block_states_[static_cast<size_t>(block)].ref_count;
}

// ---- swapping -----------------------------------------------------------------------------

bool block_manager::can_swap_out(uint64_t seq_id) const {
  const auto it = seqs_.find(seq_id);
  return it != seqs_.end() && !it->second.is_swapped && it->second.blocks.size() <= free_host_blocks_.size();
}

kv_operations block_manager::swap_out(uint64_t seq_id) {
  auto& seq = find_resident(seqs_, seq_id, "swap_out");
  if (seq.blocks.size() > free_host_blocks_.size()) {
    throw error(error_code::context_overflow, "swapping out " + seq_name(seq_id) + " needs " +
                                                  std::to_string(seq.blocks.size()) + " host blocks but " +
                                                  std::to_string(free_host_blocks_.size()) + " are free");
  }
  kv_operations ops;
  for (int32_t b : seq.blocks) {
    const int32_t host = free_host_blocks_.back();
    free_host_blocks_.pop_back();
    ops.swap_out.push_back({b, host});
    seq.host_blocks.push_back(host);
  }
  drop_refs(seq.blocks);
  seq.blocks.clear();
  seq.is_swapped = true;
  return ops;
}

bool block_manager::can_swap_in(uint64_t seq_id) const {
  const auto it = seqs_.find(seq_id);
  return it != seqs_.end() && it->second.is_swapped &&
         static_cast<int32_t>(it->second.host_blocks.size()) <= num_free_blocks();
}

kv_operations block_manager::swap_in(uint64_t seq_id) {
  const auto it = seqs_.find(seq_id);
  if (it == seqs_.end() || !it->second.is_swapped) {
    throw error(error_code::invalid_argument, "swap_in: " + seq_name(seq_id) + " is not swapped out");
  }
  auto& seq = it->second;
  if (static_cast<int32_t>(seq.host_blocks.size()) > num_free_blocks()) {
    throw error(error_code::context_overflow, "swapping in " + seq_name(seq_id) + " needs " +
                                                  std::to_string(seq.host_blocks.size()) + " KV blocks but " +
                                                  std::to_string(num_free_blocks()) + " are free");
  }
  kv_operations ops;
  for (int32_t host : seq.host_blocks) {
    const int32_t b = allocate_block();
    ops.swap_in.push_back({host, b});
    seq.blocks.push_back(b);
    free_host_blocks_.push_back(host);
  }
  seq.host_blocks.clear();
  seq.is_swapped = false;
  return ops;
}

// ---- stats --------------------------------------------------------------------------------

slot_usage block_manager::count_slots() const {
  slot_usage u;
  const int32_t num_used_blocks = num_blocks_ - num_lru_blocks_ - static_cast<int32_t>(free_blocks_.size());
  u.num_reserved = static_cast<int64_t>(num_used_blocks) * block_size_;
  // Only last blocks can be partly empty; a forked one is shared, so count each block once.
  std::unordered_map<int32_t, int32_t> shared_tails;
  for (const auto& [id, seq] : seqs_) {
    const int32_t num_in_last = seq.num_tokens % block_size_;
    if (seq.is_swapped || num_in_last == 0) continue;
    const int32_t last = seq.blocks.back();
    if (block_states_[static_cast<size_t>(last)].ref_count > 1) {
      shared_tails[last] = block_size_ - num_in_last;
    } else {
      u.num_unused += block_size_ - num_in_last;
    }
  }
  for (const auto& [block, num_unused] : shared_tails) u.num_unused += num_unused;
  return u;
}

block_manager_stats block_manager::stats() const {
  block_manager_stats s;
  s.num_total_blocks = num_blocks_;
  s.num_cached_blocks = num_lru_blocks_;
  s.num_free_blocks = static_cast<int32_t>(free_blocks_.size());
  s.num_used_blocks = num_blocks_ - s.num_cached_blocks - s.num_free_blocks;
  s.num_total_swap_blocks = num_swap_blocks_;
  s.num_used_swap_blocks = num_swap_blocks_ - static_cast<int32_t>(free_host_blocks_.size());
  s.num_prefix_query_tokens = num_prefix_query_tokens_;
  s.num_prefix_hit_tokens = num_prefix_hit_tokens_;
  s.num_evicted_blocks = num_evicted_blocks_;
  const slot_usage slots = count_slots();
  s.num_reserved_slots = slots.num_reserved;
  s.num_unused_slots = slots.num_unused;
  return s;
}

}  // namespace troupe
