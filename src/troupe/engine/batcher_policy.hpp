// Dynamic batching at admission: holds new requests until max_batch_size are held or the
// oldest has waited max_wait_ms, then releases them all at once; refuses past max_queue_len.
// Time comes in as now_ms, so the policy has no clock; the batcher actor sets one timer
// at next_deadline_ms() and never polls.
#pragma once
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "troupe/engine/scheduler_config.hpp"

namespace troupe {

enum class refusal_reason { none, queue_full };
const char* to_string(refusal_reason reason);

struct offer_result {
  refusal_reason refusal = refusal_reason::none;
  std::string message;  // for people: why it was refused and the limit
  bool is_accepted() const { return refusal == refusal_reason::none; }
};

class batcher_policy {
 public:
  // Uses max_batch_size, max_wait_ms and max_queue_len; throws as config.validate() does.
  explicit batcher_policy(const scheduler_config& config);

  // Holds request `id` (ids are unique among held requests; a duplicate throws
  // troupe::error(invalid_argument)). Refuses with queue_full when the held requests plus
  // num_queued_elsewhere (the scheduler's waiting queue) already reach max_queue_len.
  offer_result offer(uint64_t id, int64_t now_ms, int32_t num_queued_elsewhere = 0);

  // The held requests in arrival order when a release is due (max_batch_size held, or the
  // oldest has waited max_wait_ms); empty otherwise. Call after every offer and at the deadline.
  std::vector<uint64_t> take_ready(int64_t now_ms);

  // When the oldest held request times out (take_ready releases then); none when empty.
  std::optional<int64_t> next_deadline_ms() const;

  // Drops a held request (cancelled before release). False when it is not held.
  bool remove(uint64_t id);

  int32_t num_held() const { return static_cast<int32_t>(held_.size()); }
  int64_t num_refused() const { return num_refused_; }

 private:
  struct held_request {
    uint64_t id;
    int64_t arrival_ms;
  };
  bool is_due(int64_t now_ms) const;

  int32_t max_batch_size_;
  int64_t max_wait_ms_;
  int32_t max_queue_len_;
  std::deque<held_request> held_;  // arrival order
  int64_t num_refused_ = 0;
};

}  // namespace troupe
