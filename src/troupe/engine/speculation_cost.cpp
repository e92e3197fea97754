#include "troupe/engine/speculation_cost.hpp"

#include <algorithm>

namespace troupe {
namespace {

// Exponential moving averages: step times move with context length and machine load, so
// recent steps count most; one slow step (a page fault, another process) moves little.
constexpr double k_plain_weight = 0.3;
constexpr double k_proposal_weight = 0.2;

double blend(double old_value, double sample, double weight) { return old_value + weight * (sample - old_value); }

}  // namespace

speculation_cost::speculation_cost(int32_t max_batch, int32_t refresh_steps)
    : plain_(static_cast<size_t>(std::max(0, max_batch))), refresh_steps_(std::max(1, refresh_steps)) {}

void speculation_cost::observe(int32_t b, int32_t num_proposals, double seconds) {
  if (b < 1 || b > static_cast<int32_t>(plain_.size()) || seconds < 0 || num_proposals < 0) return;
  ++num_observed_;
  plain_time& plain = plain_[static_cast<size_t>(b - 1)];
  if (num_proposals == 0) {
    plain.seconds = plain.measured_at < 0 ? seconds : blend(plain.seconds, seconds, k_plain_weight);
    plain.measured_at = num_observed_;
    return;
  }
  if (plain.measured_at < 0) return;  // nothing to tell the proposals' share from
  const double sample = std::max(0.0, seconds - plain.seconds) / num_proposals;
  per_proposal_ = has_per_proposal_ ? blend(per_proposal_, sample, k_proposal_weight) : sample;
  has_per_proposal_ = true;
}

bool speculation_cost::needs_plain_step(int32_t b) const {
  if (num_observed_ == 0 || b < 1 || b > static_cast<int32_t>(plain_.size())) return false;
  const plain_time& plain = plain_[static_cast<size_t>(b - 1)];
  return plain.measured_at < 0 || num_observed_ - plain.measured_at >= refresh_steps_;
}

double speculation_cost::break_even(int32_t b, int32_t n) const {
  const double plain = plain_seconds(b);
  if (plain <= 0 || !has_per_proposal_) return -1;
  return static_cast<double>(b) * n * per_proposal_ / plain;
}

double speculation_cost::plain_seconds(int32_t b) const {
  if (b < 1 || b > static_cast<int32_t>(plain_.size())) return 0;
  const plain_time& plain = plain_[static_cast<size_t>(b - 1)];
  return plain.measured_at < 0 ? 0 : plain.seconds;
}

}  // namespace troupe
