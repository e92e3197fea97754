// snapshot_history: a bounded deque under a mutex (one record a second; readers are rare).
#include "troupe/engine/snapshot_history.hpp"

#include "troupe/model/error.hpp"

namespace troupe {

snapshot_history::snapshot_history(size_t capacity) : capacity_(capacity) {
  if (capacity < 2) {
    throw error(error_code::invalid_argument,
                "snapshot history capacity must be at least 2, got " + std::to_string(capacity));
  }
}

void snapshot_history::record(fleet_snapshot snapshot) {
  std::lock_guard lock(mutex_);
  if (snapshots_.size() == capacity_) snapshots_.pop_front();
  snapshots_.push_back(std::move(snapshot));
}

std::vector<fleet_snapshot> snapshot_history::snapshots() const {
  std::lock_guard lock(mutex_);
  return {snapshots_.begin(), snapshots_.end()};
}

}  // namespace troupe
