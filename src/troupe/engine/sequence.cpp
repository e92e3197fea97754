// sequence: the legal state transitions and the token views the scheduler builds steps from.
#include "troupe/engine/sequence.hpp"

#include <algorithm>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

const char* to_string(sequence_state state) {
  switch (state) {
    case sequence_state::waiting: return "waiting";
    case sequence_state::running: return "running";
    case sequence_state::swapped: return "swapped";
    case sequence_state::finished: return "finished";
    case sequence_state::cancelled: return "cancelled";
    case sequence_state::failed: return "failed";
  }
  return "unknown";
}

bool is_terminal(sequence_state state) {
  return state == sequence_state::finished || state == sequence_state::cancelled ||
         state == sequence_state::failed;
}

namespace {

bool is_legal(sequence_state from, sequence_state to) {
  using s = sequence_state;
  if (is_terminal(from)) return false;
  if (to == s::cancelled || to == s::failed) return true;
  switch (from) {
    case s::waiting: return to == s::running;
    case s::running: return to == s::waiting || to == s::swapped || to == s::finished;
    case s::swapped: return to == s::running || to == s::waiting;  // waiting: its KV was lost
    default: return false;
  }
}

}  // namespace

sequence::sequence(uint64_t id_, std::vector<int32_t> prompt, sampling_params params_, int32_t priority_,
                   uint64_t arrival_order_, int64_t arrival_ms_)
    : id(id_),
      priority(priority_),
      arrival_order(arrival_order_),
      arrival_ms(arrival_ms_),
      waiting_since_ms(arrival_ms_),
      admitted_priority(priority_),
      params(std::move(params_)),
      group_id(id_),
      tokens_(std::move(prompt)),
      num_prompt_tokens_(static_cast<int32_t>(tokens_.size())) {}

void sequence::transition_to(sequence_state next) {
  if (!is_legal(state_, next)) {
    throw error(error_code::internal, "sequence " + std::to_string(id) + ": illegal transition " +
                                          to_string(state_) + " -> " + to_string(next));
  }
  if ((state_ == sequence_state::running || state_ == sequence_state::swapped) && next == sequence_state::waiting) {
    num_computed_tokens = 0;
    num_cached_prefix_tokens = 0;
  }
  state_ = next;
}

std::vector<int32_t> sequence::tokens_from(int32_t pos, int32_t count) const {
  const auto first = tokens_.begin() + pos;
  return {first, first + count};
}

std::pair<std::vector<int32_t>, int32_t> sequence::penalty_window() const {
  const int32_t n = params.penalty_last_n;
  const int32_t keep = n < 0 ? num_tokens() : std::min(num_tokens(), n);
  const int32_t first = num_tokens() - keep;
  return {tokens_from(first, keep), std::max(0, num_prompt_tokens() - first)};
}

}  // namespace troupe
