// batcher_policy: the release rule (size or age of the oldest) and the waiting-room cap.
#include "troupe/engine/batcher_policy.hpp"

#include <algorithm>

#include "troupe/model/error.hpp"

namespace troupe {

const char* to_string(refusal_reason reason) {
  switch (reason) {
    case refusal_reason::none: return "none";
    case refusal_reason::queue_full: return "queue_full";
  }
  return "unknown";
}

batcher_policy::batcher_policy(const scheduler_config& config)
    : max_batch_size_(config.max_batch_size), max_wait_ms_(config.max_wait_ms), max_queue_len_(config.max_queue_len) {
  config.validate();
}

offer_result batcher_policy::offer(uint64_t id, int64_t now_ms, int32_t num_queued_elsewhere) {
  const auto same_id = [id](const held_request& r) { return r.id == id; };
  if (std::any_of(held_.begin(), held_.end(), same_id)) {
    throw error(error_code::invalid_argument, "request " + std::to_string(id) + " is already held by the batcher");
  }
  const int64_t num_waiting = static_cast<int64_t>(held_.size()) + std::max(0, num_queued_elsewhere);
  if (num_waiting >= max_queue_len_) {
    ++num_refused_;
    return {refusal_reason::queue_full, "queue_full: " + std::to_string(num_waiting) +
                                            " requests are waiting (max_queue_len " +
                                            std::to_string(max_queue_len_) + ")"};
  }
  held_.push_back({id, now_ms});
  return {};
}

bool batcher_policy::is_due(int64_t now_ms) const {
  if (held_.empty()) return false;
  return num_held() >= max_batch_size_ || now_ms - held_.front().arrival_ms >= max_wait_ms_;
}

std::vector<uint64_t> batcher_policy::take_ready(int64_t now_ms) {
  std::vector<uint64_t> batch;
  if (!is_due(now_ms)) return batch;
  batch.reserve(held_.size());
  for (const auto& r : held_) batch.push_back(r.id);
  held_.clear();
  return batch;
}

std::optional<int64_t> batcher_policy::next_deadline_ms() const {
  if (held_.empty()) return std::nullopt;
  return held_.front().arrival_ms + max_wait_ms_;
}

bool batcher_policy::remove(uint64_t id) {
  const auto it = std::find_if(held_.begin(), held_.end(), [id](const held_request& r) { return r.id == id; });
  if (it == held_.end()) return false;
  held_.erase(it);
  return true;
}

}  // namespace troupe
