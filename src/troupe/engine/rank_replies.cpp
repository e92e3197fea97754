#include "troupe/engine/rank_replies.hpp"

#include "troupe/model/error.hpp"

namespace troupe {

rank_replies::rank_replies(int32_t num_ranks) {
  if (num_ranks < 1) throw error(error_code::invalid_argument, "a worker group needs at least one rank");
  answered_.assign((size_t)num_ranks, false);
}

uint64_t rank_replies::begin() {
  if (busy_) throw error(error_code::internal, "a tensor-parallel step started while another was in flight");
  busy_ = true;
  ++step_id_;
  num_answered_ = 0;
  answered_.assign(answered_.size(), false);
  rank0_.reset();
  first_error_.clear();
  return step_id_;
}

void rank_replies::accept(uint64_t step_id, int32_t rank) {
  if (!busy_ || step_id != step_id_) throw error(error_code::internal, "a rank replied to a step not in flight");
  if (rank < 0 || rank >= num_ranks()) throw error(error_code::internal, "a reply from an unknown rank");
  if (answered_[(size_t)rank]) throw error(error_code::internal, "rank " + std::to_string(rank) + " replied twice");
  answered_[(size_t)rank] = true;
  ++num_answered_;
}

std::optional<rank_replies::outcome> rank_replies::finish_if_done() {
  if (num_answered_ < num_ranks()) return std::nullopt;
  busy_ = false;
  if (!first_error_.empty()) return outcome{std::nullopt, first_code_, first_error_};
  return outcome{std::move(rank0_), error_code::internal, {}};
}

std::optional<rank_replies::outcome> rank_replies::on_result(uint64_t step_id, int32_t rank,
                                                                   step_result result) {
  accept(step_id, rank);
  if (rank == 0) rank0_ = std::move(result);
  return finish_if_done();
}

std::optional<rank_replies::outcome> rank_replies::on_error(uint64_t step_id, int32_t rank,
                                                                  error_code code, const std::string& message) {
  accept(step_id, rank);
  if (first_error_.empty()) {
    first_code_ = code;
    first_error_ = "rank " + std::to_string(rank) + ": " + message;
  }
  return finish_if_done();
}

}  // namespace troupe
