// A serving fleet's numbers at one moment, as the bottleneck monitor reads them: per
// replica, the troupe_* gauges as they stood and the counters' running totals. Built from
// metric samples, whether a server's own registry or a scraped /metrics page
// (docs/diagnosis.md lists which metric feeds which field).
#pragma once
#include <string>
#include <vector>

#include "troupe/engine/metrics.hpp"

namespace troupe {

// Counters are totals since the replica started: only a difference between two snapshots
// means anything. A field the replica does not export is -1 (an older troupe).
struct replica_sample {
  std::string replica;

  // Gauges, as they stood.
  double num_running = 0;         // troupe_num_requests_running
  double num_waiting = 0;         // scheduler queue plus batcher: waiting for a slot in all
  double num_swapped = 0;
  double kv_usage_ratio = 0;      // used KV blocks over the pool
  double kv_capacity_blocks = 0;
  double max_num_seqs = -1;            // the scheduler's limits
  double max_num_batched_tokens = -1;

  // Counters, running totals.
  double num_finished = 0;        // requests that ended with done, any reason
  double num_prompt_tokens = 0;   // of finished requests
  double num_generation_tokens = 0;
  double queue_seconds_sum = 0;   // troupe_request_queue_time_seconds
  double num_queue_observations = 0;
  double e2e_seconds_sum = 0;     // troupe_e2e_request_latency_seconds
  double num_e2e_observations = 0;
  double num_steps = 0;
  double step_seconds_sum = 0;
  double num_step_tokens = 0;     // tokens fed over all steps
  double num_step_sequences = 0;  // sequences over all steps
  double batch_fill_sum = 0;      // scheduled tokens over the token budget, summed over steps
  double busy_seconds = 0;        // wall time with a step in flight
  double num_preemptions = 0;
  double num_prefill_tokens = -1; // tokens fed as prompt (or recompute) over all steps
  double num_prefix_query_tokens = 0;
  double num_prefix_hit_tokens = 0;
};

struct fleet_snapshot {
  double time_seconds = 0;  // any steady clock, the same for every snapshot of one history
  std::vector<replica_sample> replicas;  // sorted by replica name
};

// The replicas found in `samples`: a sample with a `replica` label belongs to that
// replica, one without it to `default_replica`; series of one metric that differ in other
// labels (finished_reason, ...) add up. A routing serve's page has its replicas' engine
// series labelled (cluster/replica_metrics.hpp): their step counters stand in for the step
// histograms, the router's per-replica request counters for the request histograms, and a
// replica whose troupe_replica_up is 0 is left out (its gauges are stale). Its unlabelled
// series are the front door's own, without troupe_num_requests_running: not a replica.
// Throws troupe::error(invalid_argument) when no replica exports
// troupe_num_requests_running: these are not a troupe server's metrics.
fleet_snapshot snapshot_from_samples(const std::vector<metric_sample>& samples, double time_seconds,
                                     const std::string& default_replica);

// One fleet from several (one scrape per server, each already named): the replicas of all,
// at the latest time. Throws troupe::error(invalid_argument) when two share a name.
fleet_snapshot merge_snapshots(const std::vector<fleet_snapshot>& parts);

}  // namespace troupe
