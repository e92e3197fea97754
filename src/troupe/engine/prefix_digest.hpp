// A replica's prefix digest: for recently admitted requests, their prefix key (the router's
// hash of the request's start, prefix_key.hpp) and the prefix-cache key of their prompt's
// first full KV block; asked, it answers the prefix keys whose first block is still cached.
// The scheduler actor owns one beside its block manager and puts the answer in its stats
// snapshot, which the replica router routes on (docs/scale-out.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <utility>
#include <vector>

#include "troupe/engine/block_manager.hpp"

namespace troupe {

class prefix_digest {
 public:
  // At most this many prefix keys are remembered (the least recently admitted forgotten
  // first), so a digest never holds more. Throws troupe::error(invalid_argument) for 0.
  explicit prefix_digest(size_t capacity = 4096);

  // A request admitted: its prefix key, and the cache key of its prompt's first full block
  // (block_manager::first_block_key). A key seen again moves to the front with the new block.
  void remember(uint64_t prefix_key, uint64_t first_block_key);

  // The remembered prefix keys whose first block `blocks` still caches, sorted ascending.
  std::vector<uint64_t> cached_keys(const block_manager& blocks) const;

  size_t size() const { return index_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  std::list<std::pair<uint64_t, uint64_t>> order_;  // (prefix key, block key), most recent first
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, uint64_t>>::iterator> index_;
};

}  // namespace troupe
