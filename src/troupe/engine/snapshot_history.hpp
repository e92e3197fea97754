// The server's rolling memory of fleet snapshots for GET /v1/diagnosis: the last
// `capacity` of them, oldest first. One sampler records, any number of readers copy.
#pragma once
#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

#include "troupe/engine/fleet_snapshot.hpp"

namespace troupe {

class snapshot_history {
 public:
  // capacity >= 2 (a diagnosis differences two snapshots); throws troupe::error(invalid_argument).
  explicit snapshot_history(size_t capacity);

  // Any thread. Drops the oldest once full.
  void record(fleet_snapshot snapshot);
  // Any thread: a copy, oldest first.
  std::vector<fleet_snapshot> snapshots() const;
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<fleet_snapshot> snapshots_;
};

}  // namespace troupe
