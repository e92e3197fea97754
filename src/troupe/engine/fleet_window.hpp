// What a replica did over a window of a snapshot history: rates and means from the
// counters' differences, means and peaks of the gauges. The bottleneck rules
// (diagnosis.hpp) read these, never the raw snapshots.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "troupe/engine/fleet_snapshot.hpp"

namespace troupe {

// A value that the window cannot give (no request finished, no step ran, the replica does
// not export the metric) is -1.
struct replica_window {
  std::string replica;
  double duration_seconds = 0;
  int32_t num_snapshots = 0;

  // From the counters' differences.
  double num_finished = 0;
  double requests_per_second = 0;
  double generation_tokens_per_second = 0;
  double mean_queue_seconds = -1;   // arrival to first scheduled, finished requests
  double mean_e2e_seconds = -1;     // arrival to finish
  double queue_share = -1;          // queue time over end-to-end latency
  double num_steps = 0;
  double mean_step_seconds = -1;
  double busy_ratio = 0;            // wall time with a step in flight over the window
  double batch_fill = -1;           // mean scheduled tokens over the token budget per step
  double mean_batch_sequences = -1;
  double mean_batch_tokens = -1;
  double prefill_share = -1;        // prompt tokens over all tokens fed in steps
  double mean_prompt_tokens = -1;   // per finished request
  double num_prefix_query_tokens = 0;
  double prefix_hit_ratio = -1;
  double num_preemptions = 0;

  // From the gauges at each snapshot.
  double mean_running = 0;
  double max_running = 0;
  double mean_waiting = 0;
  double max_waiting = 0;
  double mean_kv_usage = 0;
  double max_kv_usage = 0;
  double max_num_seqs = -1;         // the limits, as of the last snapshot
  double max_num_batched_tokens = -1;
};

// Each replica over the snapshots of `history` (in time order) no older than
// window_seconds before the last one. A replica's counters are differenced between its
// first and last snapshot in the window; one that went down (the replica restarted)
// counts from zero. A replica seen in only one snapshot of the window has no rates
// (duration 0). Throws troupe::error(invalid_argument) for a history out of time order
// or a window_seconds that is not positive.
std::vector<replica_window> summarize_window(const std::vector<fleet_snapshot>& history, double window_seconds);

}  // namespace troupe
