// step_deadline: the floor, the learned seconds per cost unit, and the arithmetic between them.
#include "troupe/engine/step_deadline.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {
namespace {

// A day: past it a deadline means nothing, and the milliseconds stay far from overflow.
constexpr double max_deadline_ms = 24.0 * 3600 * 1000;
// Each step timed lets the slowest rate seen fade by 1%: a one-off slow step (a page-in of
// cold weights) stops counting after a few hundred steps, a slow machine keeps its rate.
constexpr double decay = 0.99;
// What the prior assumes a machine does: far under one modern core's 50-100 GFLOP/s.
constexpr double prior_flops_per_second = 4e9;

}  // namespace

double prior_seconds_per_cost(const model_config& c) {
  const double dim = c.embedding_dim;
  const double per_layer = dim * c.q_dim() * 2.0 + dim * c.kv_dim() * 2.0 + 3.0 * dim * c.ffn_dim;
  const double multiply_adds = per_layer * c.num_layers + dim * c.vocab_size;
  return std::max(0.0, 2.0 * multiply_adds / prior_flops_per_second);
}

step_deadline::step_deadline(const step_deadline_config& config)
    : config_(config), seconds_per_cost_(std::max(0.0, config.prior_seconds_per_cost)) {
  if (config_.floor_ms < 0) {
    throw error(error_code::invalid_argument,
                "step_timeout_ms must be >= 0 (0 = no deadline), got " + std::to_string(config_.floor_ms));
  }
  if (!(config_.slack >= 1.0)) throw error(error_code::invalid_argument, "the step deadline's slack must be >= 1");
}

int64_t step_deadline::deadline_ms(double cost) const {
  if (!is_enabled()) return 0;
  const double expected_ms = seconds_per_cost_ * std::max(cost, 1.0) * 1000.0;
  const double ms = std::max(static_cast<double>(config_.floor_ms), config_.slack * expected_ms);
  return static_cast<int64_t>(std::ceil(std::min(ms, max_deadline_ms)));
}

void step_deadline::observe(double cost, double seconds) {
  if (!(seconds > 0) || !std::isfinite(seconds) || !(cost > 0)) return;
  const double rate = seconds / std::max(cost, 1.0);
  // The first step timed replaces the prior: the prior is there for the steps before it.
  seconds_per_cost_ = has_observed_ ? std::max(rate, seconds_per_cost_ * decay) : rate;
  has_observed_ = true;
}

}  // namespace troupe
