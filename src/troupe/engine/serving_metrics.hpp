// The engine's troupe_* metrics on a metrics_registry, and the calls that feed them: one
// per request that ends (from its done or error event), one per scheduler step, and the
// queue and KV gauges (docs/design.md, "Where state lives"). docs/actor-runtime.md lists
// every metric.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/metrics.hpp"
#include "troupe/engine/request_events.hpp"
#include "troupe/engine/scheduler_policy.hpp"

namespace troupe {

// One step as the scheduler saw it. Times are seconds on one steady clock.
struct step_sample {
  double sent_seconds = 0;       // the step went to the worker
  double back_seconds = 0;       // its result came back
  int32_t num_sequences = 0;
  int64_t num_tokens = 0;        // scheduled this step
  int32_t token_budget = 0;      // max_num_batched_tokens
  int64_t num_reserved_slots = 0;  // KV token slots held by sequences while the step ran
  int64_t num_unused_slots = 0;    // of those, the ones holding no token
  int64_t num_prefill_tokens = 0;  // of num_tokens, prompt (or recompute): all but single decodes
};

// What a serving_metrics exports: everything (a server with its own engine), or only the
// request series (a front door that routes to replicas and runs no engine: the replicas'
// scheduler and KV series are the router's, labelled by replica, under the same names).
enum class metrics_scope { engine, front_door };

class serving_metrics {
 public:
  // Registers every metric in `registry` (again harmlessly when another engine shares it:
  // then both add to the same series), plus troupe_build_info and process_start_time_seconds.
  // With metrics_scope::front_door the step, queue, KV, speculative and supervision series
  // go to a private registry instead: their calls stay valid and export nothing.
  explicit serving_metrics(std::shared_ptr<metrics_registry> registry, metrics_scope scope = metrics_scope::engine);

  // From request actors' threads, concurrently: the request's last event, and the time
  // between two consecutive output tokens of one request as the engine hands them over.
  void on_request_done(const done_event& done);
  void on_inter_token(double seconds);
  void on_request_error(const error_event& error);

  // The rest from the scheduler actor only (they keep a little state between calls).
  void on_step(const step_sample& step);
  void on_preemptions(int64_t num_preempted);
  void on_scheduler_overhead(double seconds);
  // The attended (query, key) pairs that cost one token, as the scheduler sizes prefill
  // chunks by it (step_cost.hpp); 0 = chunks sized by tokens alone.
  void on_attention_cost(double pairs_per_token);
  // The scheduler's limits, once at its start: what the bottleneck monitor compares the
  // running count and the steps' tokens with.
  void on_limits(int32_t max_num_seqs, int32_t max_num_batched_tokens);
  // The queue lengths; cheap, so after every change.
  void on_queues(const scheduler_stats& stats);
  // The KV pool; block_manager::stats() walks every sequence, so the caller samples it.
  void on_blocks(const block_manager_stats& stats);
  // Nothing can run: the worker's busy ratio is 0 until the next step.
  void on_idle();

  // From the batcher actor: requests it holds, not yet handed to the scheduler.
  void on_batching(int32_t num_held);

  // Supervision, from the scheduler: a step the watchdog gave up on; a worker replaced
  // because it died (crash) or was stuck in a step (step_timeout); and the engine failed
  // for good (no replacement could be made): troupe_engine_healthy drops to 0.
  enum class replacement_reason { crash, step_timeout };
  void on_step_timeout();
  void on_worker_replaced(replacement_reason reason);
  void on_engine_failed();

  const std::shared_ptr<metrics_registry>& registry() const { return registry_; }

 private:
  std::shared_ptr<metrics_registry> registry_;
  std::shared_ptr<metrics_registry> engine_registry_;  // registry_, or a private one (front_door)
  void engine_series(metrics_registry& r);  // registers the step, queue and KV series in r

  std::array<counter_metric*, 5> finished_;  // by request_finish_reason
  std::array<counter_metric*, 9> rejected_;  // by request_error_code
  counter_metric* prompt_tokens_;
  counter_metric* generation_tokens_;
  histogram_metric* time_to_first_token_;
  histogram_metric* time_per_output_token_;
  histogram_metric* inter_token_latency_;
  histogram_metric* e2e_latency_;
  histogram_metric* queue_time_;
  histogram_metric* request_prompt_tokens_;
  histogram_metric* request_generation_tokens_;

  histogram_metric* step_duration_;
  histogram_metric* batch_sequences_;
  histogram_metric* batch_tokens_;
  histogram_metric* batch_efficiency_;
  counter_metric* preemptions_;
  counter_metric* prefill_tokens_;
  gauge_metric* max_num_seqs_;
  gauge_metric* max_num_batched_tokens_;
  counter_metric* busy_seconds_;
  counter_metric* overhead_seconds_;
  gauge_metric* busy_ratio_;
  gauge_metric* attention_cost_;

  gauge_metric* running_;
  gauge_metric* waiting_;
  gauge_metric* batching_;
  gauge_metric* swapped_;
  gauge_metric* blocks_used_;
  gauge_metric* blocks_cached_;
  gauge_metric* blocks_free_;
  gauge_metric* blocks_capacity_;
  gauge_metric* usage_ratio_;
  gauge_metric* waste_ratio_;
  counter_metric* reserved_slot_seconds_;
  counter_metric* unused_slot_seconds_;
  gauge_metric* swap_used_;
  gauge_metric* swap_free_;
  counter_metric* prefix_queries_;
  counter_metric* prefix_hits_;
  gauge_metric* prefix_hit_ratio_;

  counter_metric* step_timeouts_;
  std::array<counter_metric*, 2> replacements_;  // by replacement_reason
  gauge_metric* healthy_;

  // Scheduler-side state: the busy-ratio window, and the block manager's running totals
  // already added to the counters.
  double window_start_seconds_ = -1;  // -1: no window open (idle)
  double window_busy_seconds_ = 0;
  int64_t num_prefix_queries_seen_ = 0;
  int64_t num_prefix_hits_seen_ = 0;
  // Tokens planned in the steady decode lane, and the scheduler's total already added.
  counter_metric* steady_tokens_;
  int64_t steady_tokens_seen_ = 0;

  // Speculative decoding (vLLM's spec_decode counters), and the scheduler's totals already
  // added to them.
  counter_metric* spec_steps_;
  counter_metric* spec_drafts_;
  counter_metric* spec_accepted_;
  counter_metric* spec_emitted_;
  gauge_metric* spec_acceptance_;
  gauge_metric* spec_tokens_per_step_;
  std::vector<counter_metric*> spec_drafts_at_;
  std::vector<counter_metric*> spec_accepted_at_;
  scheduler_stats spec_seen_;
};

}  // namespace troupe
