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

#include "troupe/model/backend.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

class rank_replies {
 public:
  struct outcome {
    std::optional<step_result> result;   // empty on error
    error_code code = error_code::internal;  // on error: the first failed rank's code
    std::string error;                   // empty on success
  };

  explicit rank_replies(int32_t num_ranks);

  // Starts a step; returns its id, which the replies for it must carry. Throws
  // troupe::error(internal) while a step is still waiting for replies.
  uint64_t begin();
  bool is_busy() const { return busy_; }

  // One rank's answer. Returns the step's outcome when this was the last answer awaited;
  // replies for another step id, or a second reply from a rank, throw error(internal).
  std::optional<outcome> on_result(uint64_t step_id, int32_t rank, step_result result);
  std::optional<outcome> on_error(uint64_t step_id, int32_t rank, error_code code, const std::string& message);

  int32_t num_ranks() const { return (int32_t)answered_.size(); }

 private:
  void accept(uint64_t step_id, int32_t rank);
  std::optional<outcome> finish_if_done();

  std::vector<bool> answered_;
  int32_t num_answered_ = 0;
  bool busy_ = false;
  uint64_t step_id_ = 0;
  std::optional<step_result> rank0_;
  error_code first_code_ = error_code::internal;
  std::string first_error_;
};

}  // namespace troupe
