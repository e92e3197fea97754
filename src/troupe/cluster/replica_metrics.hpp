// One replica's engine series on the front door's /metrics, labelled replica="HOST:PORT":
// the scheduler and KV series a plain serve exports, under the same names, from the
// replica's stats snapshots (polled by the router), plus what the router itself measures
// of the requests that replica finished. docs/scale-out.md lists them.
#pragma once
#include <string>

#include "troupe/actors/messages.hpp"
#include "troupe/engine/metrics.hpp"
#include "troupe/engine/request_events.hpp"

namespace troupe::cluster {

// The router actor's thread only. A replica that is lost keeps its last values (its
// troupe_replica_up is 0 then); a counter whose replica restarted (its total fell) counts on
// from the new total, never backwards.
class replica_metrics {
 public:
  replica_metrics(metrics_registry& registry, const std::string& replica);

  // The replica's latest stats snapshot.
  void on_snapshot(const scheduler_snapshot& s);
  // A request this replica ran ended with done: its timings and token counts.
  void on_request_done(const done_event& done);

 private:
  // A counter that follows a running total reported from elsewhere.
  struct mirrored {
    counter_metric* counter = nullptr;
    double seen = 0;
    void follow(double total);
  };

  gauge_metric* running_;
  gauge_metric* waiting_;
  gauge_metric* swapped_;
  gauge_metric* blocks_used_;
  gauge_metric* blocks_cached_;
  gauge_metric* blocks_free_;
  gauge_metric* blocks_capacity_;
  gauge_metric* usage_ratio_;
  gauge_metric* waste_ratio_;
  gauge_metric* swap_used_;
  gauge_metric* swap_free_;
  gauge_metric* prefix_hit_ratio_;
  gauge_metric* max_num_seqs_;
  gauge_metric* max_num_batched_tokens_;
  gauge_metric* digest_keys_;

  mirrored preemptions_, busy_seconds_, overhead_seconds_, prefix_queries_, prefix_hits_, evicted_blocks_;
  mirrored steps_, step_tokens_, step_sequences_, prefill_tokens_;
  mirrored spec_steps_, spec_drafts_, spec_accepted_, spec_emitted_;

  counter_metric* finished_;
  counter_metric* queue_seconds_;
  counter_metric* e2e_seconds_;
  counter_metric* prompt_tokens_;
  counter_metric* generation_tokens_;
};

}  // namespace troupe::cluster
