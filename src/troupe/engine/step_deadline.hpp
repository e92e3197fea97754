// The watchdog's deadline for one step: how long the scheduler waits for the worker before
// it gives the step up as stuck (a hung kernel, a deadlocked driver). A step gets the floor
// (--step-timeout-ms) or `slack` times what its cost predicts, whichever is longer, so
// that a long prefill chunk on a slow machine is never mistaken for a hang. What a cost
// unit takes (step_cost.hpp: one token's matmuls) is learned from the steps timed: the
// slowest per unit seen recently, decaying slowly. Until the first step is timed, a
// pessimistic prior from the model's size stands in (a machine doing 4 GFLOP/s).
#pragma once
#include <cstdint>

#include "troupe/model/model_config.hpp"

namespace troupe {

struct step_deadline_config {
  int64_t floor_ms = 120000;          // the least any step gets; 0 = no deadline at all
  double slack = 4.0;                 // times the expected seconds
  double prior_seconds_per_cost = 0;  // before any step is timed (0: the floor alone)
};

// Seconds one cost unit (one token's matmuls, 2 FLOP per weight) may take on a machine
// slower than any troupe is served from: a prior for the first steps.
double prior_seconds_per_cost(const model_config& config);

class step_deadline {
 public:
  // Throws troupe::error(invalid_argument) for a negative floor or a slack under 1.
  explicit step_deadline(const step_deadline_config& config);

  bool is_enabled() const { return config_.floor_ms > 0; }
  // Milliseconds a step of `cost` may run before it counts as stuck; 0 when disabled.
  int64_t deadline_ms(double cost) const;
  // A step of `cost` came back after `seconds`.
  void observe(double cost, double seconds);
  double seconds_per_cost() const { return seconds_per_cost_; }

 private:
  step_deadline_config config_;
  double seconds_per_cost_;
  bool has_observed_ = false;
};

}  // namespace troupe
