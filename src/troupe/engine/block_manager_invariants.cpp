// block_manager::check_invariants: the consistency rules of the block pool, walked in full
// for tests and debug builds, each broken rule reported by name.
#include <algorithm>
#include <string>
#include <unordered_set>

#include "troupe/engine/block_manager.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw error(error_code::internal, "block_manager invariant broken: " + what);
}

std::string block_name(int32_t block) { return "block " + std::to_string(block); }

}  // namespace

void block_manager::check_invariants() const {
  enum class place : uint8_t { none, free_list, lru };
  const auto num = static_cast<size_t>(num_blocks_);
  std::vector<int32_t> num_refs(num, 0);
  std::vector<place> places(num, place::none);
  std::vector<bool> is_host_used(static_cast<size_t>(num_swap_blocks_), false);
  const auto in_pool = [&](int32_t b) { return b >= 0 && b < num_blocks_; };

  for (const auto& [id, seq] : seqs_) {
    const std::string name = "sequence " + std::to_string(id);
    const auto num_needed = static_cast<size_t>(blocks_for(seq.num_tokens));
    if (seq.num_keyed_blocks > seq.num_tokens / block_size_) fail(name + " keyed a block that is not full");
    if (seq.num_reused_tokens > seq.num_keyed_blocks * block_size_) fail(name + " reused more than it keyed");
    if (seq.is_swapped) {
      if (!seq.blocks.empty()) fail(name + " is swapped out but holds device blocks");
      if (seq.host_blocks.size() != num_needed) fail(name + " has the wrong number of host blocks");
      for (int32_t h : seq.host_blocks) {
        if (h < 0 || h >= num_swap_blocks_) fail(name + " holds host block " + std::to_string(h) + " outside the swap space");
        if (is_host_used[static_cast<size_t>(h)]) fail("host block " + std::to_string(h) + " is held twice");
        is_host_used[static_cast<size_t>(h)] = true;
      }
      continue;
    }
    if (!seq.host_blocks.empty()) fail(name + " is resident but holds host blocks");
    if (seq.blocks.size() != num_needed) fail(name + " has " + std::to_string(seq.blocks.size()) + " blocks for " +
                                              std::to_string(seq.num_tokens) + " tokens");
    for (size_t i = 0; i < seq.blocks.size(); ++i) {
      const int32_t b = seq.blocks[i];
      if (!in_pool(b)) fail(name + " holds " + block_name(b) + " outside the pool");
      ++num_refs[static_cast<size_t>(b)];
      const bool is_full = static_cast<int32_t>(i + 1) * block_size_ <= seq.num_tokens;
      if (!is_full && block_states_[static_cast<size_t>(b)].serial != 0) {
        fail(name + "'s partly filled " + block_name(b) + " is in the prefix cache");
      }
    }
  }

  for (int32_t b : free_blocks_) {
    if (!in_pool(b)) fail("the free list holds " + block_name(b) + " outside the pool");
    if (places[static_cast<size_t>(b)] != place::none) fail(block_name(b) + " is on the free list twice");
    places[static_cast<size_t>(b)] = place::free_list;
    if (block_states_[static_cast<size_t>(b)].serial != 0) fail("free " + block_name(b) + " is in the prefix cache");
  }

  int32_t num_lru = 0;
  int32_t prev = no_block;
  for (int32_t b = lru_head_; b != no_block; b = block_states_[static_cast<size_t>(b)].lru_next) {
    if (!in_pool(b)) fail("the LRU list holds " + block_name(b) + " outside the pool");
    if (places[static_cast<size_t>(b)] != place::none) fail(block_name(b) + " is both free and evictable, or evictable twice");
    places[static_cast<size_t>(b)] = place::lru;
    const auto& state = block_states_[static_cast<size_t>(b)];
    if (state.lru_prev != prev) fail("the LRU list's back link at " + block_name(b) + " is wrong");
    if (state.serial == 0) fail("evictable " + block_name(b) + " is not in the prefix cache");
    prev = b;
    if (++num_lru > num_blocks_) fail("the LRU list has a cycle");
  }
  if (prev != lru_tail_) fail("the LRU tail is not the list's last block");
  if (num_lru != num_lru_blocks_) fail("the LRU count is " + std::to_string(num_lru_blocks_) + ", the list holds " +
                                       std::to_string(num_lru));

  size_t num_registered = 0;
  for (size_t b = 0; b < num; ++b) {
    const auto& state = block_states_[b];
    const auto name = block_name(static_cast<int32_t>(b));
    if (state.ref_count != num_refs[b]) {
      fail(name + " has reference count " + std::to_string(state.ref_count) + " but " + std::to_string(num_refs[b]) +
           " holders");
    }
    if ((state.ref_count == 0) != (places[b] != place::none)) fail(name + " is lost or both held and free");
    if (state.serial != 0) {
      ++num_registered;
      const auto found = cached_blocks_.find(state.key);
      if (found == cached_blocks_.end() || found->second != static_cast<int32_t>(b)) {
        fail(name + " is marked cached but the prefix map does not point at it");
      }
      if (state.serial >= next_serial_ || state.parent_serial >= state.serial) fail(name + " has an impossible serial");
    }
  }
  if (num_registered != cached_blocks_.size()) fail("the prefix map has entries for blocks that are not cached");
  if (!is_prefix_caching_ && num_registered != 0) fail("blocks were cached with prefix caching disabled");

  std::unordered_set<int32_t> free_hosts;
  for (int32_t h : free_host_blocks_) {
    if (h < 0 || h >= num_swap_blocks_) fail("the host free list holds " + std::to_string(h) + " outside the swap space");
    if (is_host_used[static_cast<size_t>(h)] || !free_hosts.insert(h).second) {
      fail("host block " + std::to_string(h) + " is both free and held, or free twice");
    }
  }
  if (free_hosts.size() + static_cast<size_t>(std::count(is_host_used.begin(), is_host_used.end(), true)) !=
      static_cast<size_t>(num_swap_blocks_)) {
    fail("a host block is lost");
  }
}

}  // namespace troupe
