// Whether an engine can still serve: the scheduler marks it failed when a stuck worker
// cannot be replaced; /health and embedding hosts read it from any thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace troupe {

class engine_health {
 public:
  // Once failed, an engine stays failed; the first reason is kept.
  void fail(const std::string& reason) {
    std::lock_guard lock(mutex_);
    if (is_failed_.load(std::memory_order_relaxed)) return;
    reason_ = reason;
    is_failed_.store(true, std::memory_order_release);
  }
  bool is_failed() const { return is_failed_.load(std::memory_order_acquire); }
  // A worker was abandoned, stuck in a step: its thread may never end, so a process that
  // shuts down must not wait for it.
  void note_abandoned_worker() { num_abandoned_workers_.fetch_add(1, std::memory_order_relaxed); }
  int64_t num_abandoned_workers() const { return num_abandoned_workers_.load(std::memory_order_relaxed); }
  // Why it failed; none while it can serve.
  std::optional<std::string> failure() const {
    if (!is_failed()) return std::nullopt;
    std::lock_guard lock(mutex_);
    return reason_;
  }

 private:
  mutable std::mutex mutex_;
  std::string reason_;
  std::atomic<bool> is_failed_{false};
  std::atomic<int64_t> num_abandoned_workers_{0};
};

}  // namespace troupe
