// prefix_digest: an LRU of (prefix key, first block key), filtered by the block manager's
// prefix cache when asked.
#include "troupe/engine/prefix_digest.hpp"

#include <algorithm>

#include "troupe/model/error.hpp"

namespace troupe {

prefix_digest::prefix_digest(size_t capacity) : capacity_(capacity) {
  if (capacity_ == 0) throw error(error_code::invalid_argument, "a prefix digest needs a capacity above 0");
}

void prefix_digest::remember(uint64_t prefix_key, uint64_t first_block_key) {
  if (auto it = index_.find(prefix_key); it != index_.end()) {
    order_.erase(it->second);
    index_.erase(it);
  }
  order_.emplace_front(prefix_key, first_block_key);
  index_[prefix_key] = order_.begin();
  while (index_.size() > capacity_) {
    index_.erase(order_.back().first);
    order_.pop_back();
  }
}

std::vector<uint64_t> prefix_digest::cached_keys(const block_manager& blocks) const {
  std::vector<uint64_t> keys;
  for (const auto& [prefix_key, block_key] : order_) {
    if (blocks.is_cached_block_key(block_key)) keys.push_back(prefix_key);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace troupe
