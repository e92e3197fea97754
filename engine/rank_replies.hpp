// Tensor parallelism seen from the scheduler: one plan goes to every rank, every rank
// answers, and the step completes with rank 0's result once all have answered, or with an
// error naming the first rank that failed. Plain C++ so the worker_group actor stays thin
// and this logic is tested without CAF or a device.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/backend.hpp"

namespace troupe {

class rank_replies {
 public:
  struct outcome {
    std::shared_ptr<const step_result> result;  // null on error
    std::string error;                          // empty on success
  };

  explicit rank_replies(int32_t num_ranks);

  // Starts a step; returns its id, which the replies for it must carry. Throws
  // troupe::error(internal) while a step is still waiting for replies.
  uint64_t begin();
  bool is_busy() const { return busy_; }

  // One rank's answer. Returns the step's outcome when this was the last answer awaited;
  // replies for another step id, or a second reply from a rank, throw error(internal).
  std::optional<outcome> on_result(uint64_t step_id, int32_t rank, std::shared_ptr<const step_result> result);
  std::optional<outcome> on_error(uint64_t step_id, int32_t rank, const std::string& message);

  int32_t num_ranks() const { return (int32_t)answered_.size(); }

 private:
  void accept(uint64_t step_id, int32_t rank);
  std::optional<outcome> finish_if_done();

  std::vector<bool> answered_;
  int32_t num_answered_ = 0;
  bool busy_ = false;
  uint64_t step_id_ = 0;
  std::shared_ptr<const step_result> rank0_;
  std::string first_error_;
};

}  // namespace troupe
