// Registration of the troupe_* metrics (names follow vLLM's where vLLM has the metric) and
// the arithmetic that turns events, steps and pool statistics into their values.
#include "troupe/engine/serving_metrics.hpp"

#include <algorithm>
#include <chrono>

#ifndef TROUPE_VERSION
#define TROUPE_VERSION "unknown"
#endif

namespace troupe {

namespace {

// Taken during static initialisation, as near to the process' start as a library can see.
const double process_start_seconds =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

// Latencies from a millisecond (a queue hop) to two minutes (a long generation).
const std::vector<double> latency_buckets = exponential_buckets(0.001, 2, 18);
const std::vector<double> token_gap_buckets = exponential_buckets(0.001, 2, 14);
const std::vector<double> step_buckets = exponential_buckets(0.0005, 2, 16);
const std::vector<double> count_buckets = exponential_buckets(1, 2, 15);  // 1 .. 16384
const std::vector<double> ratio_buckets = {0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0};

constexpr request_finish_reason all_finish_reasons[] = {
    request_finish_reason::stop, request_finish_reason::length, request_finish_reason::cancelled,
    request_finish_reason::error, request_finish_reason::timeout};
constexpr request_error_code all_error_codes[] = {
    request_error_code::invalid_request, request_error_code::queue_full, request_error_code::context_overflow,
    request_error_code::cancelled,       request_error_code::timeout,    request_error_code::internal,
    request_error_code::unavailable,     request_error_code::out_of_memory,   request_error_code::replica_lost};

}  // namespace

serving_metrics::serving_metrics(std::shared_ptr<metrics_registry> registry, metrics_scope scope)
    : registry_(std::move(registry)),
      engine_registry_(scope == metrics_scope::engine ? registry_ : std::make_shared<metrics_registry>()) {
  auto& r = *registry_;
  r.gauge("troupe_build_info", "Always 1; the labels say which troupe is running.", {{"version", TROUPE_VERSION}})
      ->set(1);
  r.gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.")
      ->set(process_start_seconds);

  for (auto reason : all_finish_reasons) {
    finished_[static_cast<size_t>(reason)] =
        r.counter("troupe_request_success_total", "Requests that ended with a done event, by finish reason.",
                  {{"finished_reason", to_string(reason)}});
  }
  for (auto code : all_error_codes) {
    rejected_[static_cast<size_t>(code)] =
        r.counter("troupe_request_rejected_total", "Requests that ended with an error event instead, by error code.",
                  {{"reason", to_string(code)}});
  }
  prompt_tokens_ = r.counter("troupe_prompt_tokens_total", "Prompt tokens of finished requests.");
  generation_tokens_ = r.counter("troupe_generation_tokens_total", "Output tokens of finished requests.");
  time_to_first_token_ = r.histogram("troupe_time_to_first_token_seconds",
                                     "Arrival to first output token, per request with output.", latency_buckets);
  time_per_output_token_ = r.histogram("troupe_time_per_output_token_seconds",
                                       "Mean gap between output tokens, per request with two or more.",
                                       token_gap_buckets);
  inter_token_latency_ = r.histogram("troupe_inter_token_latency_seconds",
                                     "Gap between consecutive output tokens of a request, one observation per "
                                     "token after the first (vLLM's inter-token latency).",
                                     token_gap_buckets);
  e2e_latency_ = r.histogram("troupe_e2e_request_latency_seconds", "Arrival to finish, per finished request.",
                             latency_buckets);
  queue_time_ = r.histogram("troupe_request_queue_time_seconds",
                            "Arrival to first scheduled (or to the end, if never), per finished request.",
                            latency_buckets);
  request_prompt_tokens_ = r.histogram("troupe_request_prompt_tokens", "Prompt tokens per finished request.",
                                       count_buckets);
  request_generation_tokens_ = r.histogram("troupe_request_generation_tokens", "Output tokens per finished request.",
                                           count_buckets);

  engine_series(*engine_registry_);
}

void serving_metrics::engine_series(metrics_registry& r) {
  step_duration_ = r.histogram("troupe_step_duration_seconds",
                               "Scheduler to worker and back, per step (the worker's compute plus two hops).",
                               step_buckets);
  batch_sequences_ = r.histogram("troupe_batch_size_sequences", "Sequences per step.", count_buckets);
  batch_tokens_ = r.histogram("troupe_batch_size_tokens", "Tokens fed per step.", count_buckets);
  batch_efficiency_ = r.histogram("troupe_batch_efficiency_ratio",
                                  "Scheduled tokens over the token budget (max_num_batched_tokens), per step.",
                                  ratio_buckets);
  prefill_tokens_ = r.counter("troupe_step_prefill_tokens_total",
                              "Tokens fed in steps as prompt (prefill chunks, recompute), not single decodes; "
                              "over troupe_batch_size_tokens_sum: the prefill share of scheduled tokens.");
  max_num_seqs_ = r.gauge("troupe_scheduler_max_num_seqs", "The scheduler's limit on sequences running at once.");
  max_num_batched_tokens_ = r.gauge("troupe_scheduler_max_num_batched_tokens",
                                    "The scheduler's token budget per step (max_num_batched_tokens).");
  steady_tokens_ = r.counter("troupe_scheduler_steady_decode_tokens_total",
                             "Decode tokens planned in the scheduler's steady decode lane, without looking at "
                             "their sequences; over troupe_batch_size_tokens_sum: the lane's share.");
  preemptions_ = r.counter("troupe_num_preemptions_total", "Sequences preempted (recompute or swap).");
  busy_seconds_ = r.counter("troupe_worker_busy_seconds_total", "Wall time with a step in flight to the worker.");
  overhead_seconds_ = r.counter("troupe_scheduler_overhead_seconds_total",
                                "Scheduler time around steps: planning, and fanning tokens out.");
  busy_ratio_ = r.gauge("troupe_worker_busy_ratio",
                        "Share of wall time the worker had a step, over the last window of 1 s or more; "
                        "0 while idle. The CPU stand-in for GPU utilization.");
  attention_cost_ = r.gauge("troupe_scheduler_attention_cost",
                            "Attended (query, key) pairs that cost one fed token, as chunked prefill sizes "
                            "chunks by it (refit from step timings); 0: chunks sized by tokens alone.");

  spec_steps_ = r.counter("troupe_spec_decode_num_steps_total",
                          "Speculative decoding: sequence-steps that carried proposed tokens.");
  spec_drafts_ = r.counter("troupe_spec_decode_num_draft_tokens_total", "Speculative decoding: tokens proposed.");
  spec_accepted_ = r.counter("troupe_spec_decode_num_accepted_tokens_total",
                             "Speculative decoding: proposed tokens the model accepted.");
  spec_emitted_ = r.counter("troupe_spec_decode_num_emitted_tokens_total",
                            "Speculative decoding: tokens emitted by speculative sequence-steps (accepted ones "
                            "plus the one sampled after them).");
  spec_acceptance_ = r.gauge("troupe_spec_decode_draft_acceptance_rate",
                             "Speculative decoding: accepted over proposed tokens since the start.");
  spec_tokens_per_step_ = r.gauge("troupe_spec_decode_mean_tokens_per_step",
                                  "Speculative decoding: tokens emitted per speculative sequence-step since the start.");

  running_ = r.gauge("troupe_num_requests_running", "Sequences in the running batch.");
  waiting_ = r.gauge("troupe_num_requests_waiting", "Sequences queued in the scheduler (not yet running).");
  batching_ = r.gauge("troupe_num_requests_batching",
                      "Requests held by the batcher (dynamic batching), not yet handed to the scheduler; "
                      "waiting for a slot in all: this plus troupe_num_requests_waiting.");
  swapped_ = r.gauge("troupe_num_requests_swapped", "Sequences preempted to host memory.");
  const char* blocks_help = "KV cache blocks by state: used by sequences, cached (evictable prefix KV), free.";
  blocks_used_ = r.gauge("troupe_kv_cache_blocks", blocks_help, {{"state", "used"}});
  blocks_cached_ = r.gauge("troupe_kv_cache_blocks", blocks_help, {{"state", "cached"}});
  blocks_free_ = r.gauge("troupe_kv_cache_blocks", blocks_help, {{"state", "free"}});
  blocks_capacity_ = r.gauge("troupe_kv_cache_capacity_blocks", "KV cache blocks in the pool.");
  usage_ratio_ = r.gauge("troupe_kv_cache_usage_ratio", "Used KV cache blocks over the pool, in [0, 1].");
  waste_ratio_ = r.gauge("troupe_kv_cache_waste_ratio",
                         "Reserved token slots holding no token (last blocks' tails), in [0, 1].");
  reserved_slot_seconds_ = r.counter("troupe_kv_cache_reserved_slot_seconds_total",
                                     "KV token slots held by sequences, integrated over the steps' time "
                                     "(slot-seconds).");
  unused_slot_seconds_ = r.counter("troupe_kv_cache_unused_slot_seconds_total",
                                   "Of troupe_kv_cache_reserved_slot_seconds_total, the slot-seconds that held no "
                                   "token: over any window, the time-weighted KV waste is the ratio of the two "
                                   "increases.");
  const char* swap_help = "Host swap blocks by state.";
  swap_used_ = r.gauge("troupe_kv_swap_blocks", swap_help, {{"state", "used"}});
  swap_free_ = r.gauge("troupe_kv_swap_blocks", swap_help, {{"state", "free"}});
  prefix_queries_ = r.counter("troupe_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
  prefix_hits_ = r.counter("troupe_prefix_cache_hits_total", "Prompt tokens whose KV came from the prefix cache.");
  prefix_hit_ratio_ = r.gauge("troupe_prefix_cache_hit_ratio", "Prefix-cache hits over queries since start, in [0, 1].");

  step_timeouts_ = r.counter("troupe_step_timeouts_total",
                             "Steps the watchdog gave up on: not back from the worker within --step-timeout-ms "
                             "(or 4x their predicted time).");
  const char* replaced_help = "Workers replaced, by reason: crash (the worker died), step_timeout (stuck in a step; "
                              "the replacement has a fresh backend).";
  replacements_[0] = r.counter("troupe_worker_replacements_total", replaced_help, {{"reason", "crash"}});
  replacements_[1] = r.counter("troupe_worker_replacements_total", replaced_help, {{"reason", "step_timeout"}});
  healthy_ = r.gauge("troupe_engine_healthy",
                     "1 while the engine can serve; 0 once a stuck worker could not be replaced (every request "
                     "then ends with unavailable, /health answers 503).");
  healthy_->set(1);
}

void serving_metrics::on_step_timeout() { step_timeouts_->inc(); }

void serving_metrics::on_worker_replaced(replacement_reason reason) {
  replacements_[reason == replacement_reason::crash ? 0 : 1]->inc();
}

void serving_metrics::on_engine_failed() { healthy_->set(0); }

void serving_metrics::on_request_done(const done_event& done) {
  finished_[static_cast<size_t>(done.reason)]->inc();
  const auto& u = done.usage;
  const auto& t = done.timings;
  prompt_tokens_->inc(u.prompt_tokens);
  generation_tokens_->inc(u.completion_tokens);
  request_prompt_tokens_->observe(u.prompt_tokens);
  request_generation_tokens_->observe(u.completion_tokens);
  if (u.completion_tokens >= 1) time_to_first_token_->observe(t.time_to_first_token_ms / 1000.0);
  if (u.completion_tokens >= 2) time_per_output_token_->observe(t.per_output_token_ms / 1000.0);
  e2e_latency_->observe(t.total_ms / 1000.0);
  queue_time_->observe(t.queue_ms / 1000.0);
}

void serving_metrics::on_request_error(const error_event& error) { rejected_[static_cast<size_t>(error.code)]->inc(); }

void serving_metrics::on_step(const step_sample& step) {
  const double busy = step.back_seconds - step.sent_seconds;
  step_duration_->observe(busy);
  batch_sequences_->observe(step.num_sequences);
  batch_tokens_->observe(static_cast<double>(step.num_tokens));
  prefill_tokens_->inc(static_cast<double>(step.num_prefill_tokens));
  if (step.token_budget > 0) batch_efficiency_->observe(static_cast<double>(step.num_tokens) / step.token_budget);
  busy_seconds_->inc(busy);
  reserved_slot_seconds_->inc(static_cast<double>(step.num_reserved_slots) * busy);
  unused_slot_seconds_->inc(static_cast<double>(step.num_unused_slots) * busy);
  if (window_start_seconds_ < 0) window_start_seconds_ = step.sent_seconds;
  window_busy_seconds_ += busy;
  const double elapsed = step.back_seconds - window_start_seconds_;
  if (elapsed >= 1.0) {
    busy_ratio_->set(std::min(1.0, window_busy_seconds_ / elapsed));
    window_start_seconds_ = step.back_seconds;
    window_busy_seconds_ = 0;
  }
}

void serving_metrics::on_preemptions(int64_t num_preempted) {
  if (num_preempted > 0) preemptions_->inc(static_cast<double>(num_preempted));
}

void serving_metrics::on_scheduler_overhead(double seconds) { overhead_seconds_->inc(seconds); }

void serving_metrics::on_attention_cost(double pairs_per_token) { attention_cost_->set(pairs_per_token); }

void serving_metrics::on_limits(int32_t max_num_seqs, int32_t max_num_batched_tokens) {
  max_num_seqs_->set(max_num_seqs);
  max_num_batched_tokens_->set(max_num_batched_tokens);
}

void serving_metrics::on_queues(const scheduler_stats& stats) {
  running_->set(stats.num_running);
  waiting_->set(stats.num_waiting);
  swapped_->set(stats.num_swapped);
  steady_tokens_->inc(static_cast<double>(stats.num_steady_tokens - steady_tokens_seen_));
  steady_tokens_seen_ = stats.num_steady_tokens;
  if (stats.num_speculative_steps == spec_seen_.num_speculative_steps) return;
  spec_steps_->inc(static_cast<double>(stats.num_speculative_steps - spec_seen_.num_speculative_steps));
  spec_drafts_->inc(static_cast<double>(stats.num_draft_tokens - spec_seen_.num_draft_tokens));
  spec_accepted_->inc(static_cast<double>(stats.num_accepted_tokens - spec_seen_.num_accepted_tokens));
  spec_emitted_->inc(static_cast<double>(stats.num_emitted_tokens - spec_seen_.num_emitted_tokens));
  if (stats.num_draft_tokens > 0) {
    spec_acceptance_->set(static_cast<double>(stats.num_accepted_tokens) / stats.num_draft_tokens);
  }
  spec_tokens_per_step_->set(static_cast<double>(stats.num_emitted_tokens) / stats.num_speculative_steps);
  for (size_t i = 0; i < stats.num_drafts_at_position.size(); ++i) {
    if (i == spec_drafts_at_.size()) {
      const metric_labels position{{"position", std::to_string(i)}};
      spec_drafts_at_.push_back(engine_registry_->counter("troupe_spec_decode_num_draft_tokens_per_pos_total",
                                                   "Speculative decoding: tokens proposed at each position "
                                                   "(0: the first after the known tokens).",
                                                   position));
      spec_accepted_at_.push_back(engine_registry_->counter("troupe_spec_decode_num_accepted_tokens_per_pos_total",
                                                     "Speculative decoding: proposed tokens accepted at each "
                                                     "position; over the proposed count, the acceptance rate there.",
                                                     position));
    }
    const auto seen = [&](const std::vector<int64_t>& v) { return i < v.size() ? v[i] : 0; };
    spec_drafts_at_[i]->inc(static_cast<double>(stats.num_drafts_at_position[i] - seen(spec_seen_.num_drafts_at_position)));
    spec_accepted_at_[i]->inc(
        static_cast<double>(stats.num_accepted_at_position[i] - seen(spec_seen_.num_accepted_at_position)));
  }
  spec_seen_ = stats;
}

void serving_metrics::on_blocks(const block_manager_stats& stats) {
  blocks_used_->set(stats.num_used_blocks);
  blocks_cached_->set(stats.num_cached_blocks);
  blocks_free_->set(stats.num_free_blocks);
  blocks_capacity_->set(stats.num_total_blocks);
  usage_ratio_->set(stats.num_total_blocks ? double(stats.num_used_blocks) / stats.num_total_blocks : 0.0);
  waste_ratio_->set(stats.waste_ratio());
  swap_used_->set(stats.num_used_swap_blocks);
  swap_free_->set(stats.num_total_swap_blocks - stats.num_used_swap_blocks);
  prefix_queries_->inc(static_cast<double>(stats.num_prefix_query_tokens - num_prefix_queries_seen_));
  prefix_hits_->inc(static_cast<double>(stats.num_prefix_hit_tokens - num_prefix_hits_seen_));
  num_prefix_queries_seen_ = stats.num_prefix_query_tokens;
  num_prefix_hits_seen_ = stats.num_prefix_hit_tokens;
  prefix_hit_ratio_->set(stats.prefix_hit_ratio());
}

void serving_metrics::on_batching(int32_t num_held) { batching_->set(num_held); }

void serving_metrics::on_inter_token(double seconds) { inter_token_latency_->observe(seconds); }

void serving_metrics::on_idle() {
  busy_ratio_->set(0.0);
  window_start_seconds_ = -1;
  window_busy_seconds_ = 0;
}

}  // namespace troupe
