// The autoscaler's decision rule as a plain object: fed one sample of the fleet at a time
// (its utilization, how many replicas it has, whether a change is under way), it answers
// whether to add a replica, drain one, or do nothing, and why (docs/scale-out.md).
#pragma once
#include <cstdint>
#include <string>

namespace troupe::cluster {

struct autoscale_options {
  int32_t min_replicas = 1;
  int32_t max_replicas = 1;
  // Utilization = requests in flight / (ready replicas * max_num_seqs); above this for
  // scale_up_delay_ms: one more replica.
  double target_utilization = 0.7;
  int64_t scale_up_delay_ms = 30000;
  int64_t scale_down_delay_ms = 120000;
  // Hysteresis: one replica fewer only while the utilization the others would have
  // (u * n / (n - 1)) stays below target * scale_down_margin for scale_down_delay_ms, so
  // that a scale-down does not by itself push the fleet over the target.
  double scale_down_margin = 0.8;
};

// Throws troupe::error(invalid_argument) naming the flag and the allowed range.
void validate(const autoscale_options& o);

// One observation of the fleet.
struct fleet_sample {
  int32_t num_replicas = 0;  // ready ones plus those starting (the count min and max bound)
  int32_t num_ready = 0;     // routed to now: the utilization's denominator
  double utilization = 0.0;
  bool is_changing = false;  // a replica is starting, warming up or draining
};

enum class scale_direction { none, up, down };
const char* to_string(scale_direction d);

struct scale_decision {
  scale_direction direction = scale_direction::none;
  int32_t desired = 0;  // the replica count wanted after this decision
  std::string reason;   // the numbers that led to it (empty for none)
};

// Not thread-safe: one owner (the autoscaler actor) feeds it in time order.
class autoscale_policy {
 public:
  explicit autoscale_policy(autoscale_options o);

  // The decision at now_ms given sample. A change under way holds every decision and
  // restarts both delays: each change is judged on load measured after the previous one
  // (the cooldown). Below min_replicas (at start, or after a replica died) it asks for
  // min at once; above max, one fewer at once.
  scale_decision observe(int64_t now_ms, const fleet_sample& sample);

  const autoscale_options& options() const { return options_; }
  // The utilization below which a fleet of n counts as low (the hysteresis threshold).
  double scale_down_threshold(int32_t n) const;

 private:
  autoscale_options options_;
  int64_t above_since_ms_ = -1;  // -1: not above now
  int64_t below_since_ms_ = -1;
};

}  // namespace troupe::cluster
