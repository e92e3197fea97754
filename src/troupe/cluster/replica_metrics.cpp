// Registration of a replica's labelled series, and the snapshot-to-series arithmetic.
#include "troupe/cluster/replica_metrics.hpp"

namespace troupe::cluster {

void replica_metrics::mirrored::follow(double total) {
  if (!(total >= 0)) return;  // a negative or NaN total is no count (and no restart)
  counter->inc(total >= seen ? total - seen : total);  // below: the replica restarted from zero
  seen = total;
}

replica_metrics::replica_metrics(metrics_registry& r, const std::string& replica) {
  const metric_labels l{{"replica", replica}};
  auto with_state = [&](const char* state) { return metric_labels{{"replica", replica}, {"state", state}}; };
  auto mirror = [&](const char* name, const char* help) { return mirrored{r.counter(name, help, l), 0}; };

  running_ = r.gauge("troupe_num_requests_running", "Sequences in the running batch.", l);
  waiting_ = r.gauge("troupe_num_requests_waiting", "Sequences queued in the scheduler (not yet running).", l);
  swapped_ = r.gauge("troupe_num_requests_swapped", "Sequences preempted to host memory.", l);
  const char* blocks_help = "KV cache blocks by state: used by sequences, cached (evictable prefix KV), free.";
  blocks_used_ = r.gauge("troupe_kv_cache_blocks", blocks_help, with_state("used"));
  blocks_cached_ = r.gauge("troupe_kv_cache_blocks", blocks_help, with_state("cached"));
  blocks_free_ = r.gauge("troupe_kv_cache_blocks", blocks_help, with_state("free"));
  blocks_capacity_ = r.gauge("troupe_kv_cache_capacity_blocks", "KV cache blocks in the pool.", l);
  usage_ratio_ = r.gauge("troupe_kv_cache_usage_ratio", "Used KV cache blocks over the pool, in [0, 1].", l);
  waste_ratio_ = r.gauge("troupe_kv_cache_waste_ratio",
                         "Reserved token slots holding no token (last blocks' tails), in [0, 1].", l);
  const char* swap_help = "Host swap blocks by state.";
  swap_used_ = r.gauge("troupe_kv_swap_blocks", swap_help, with_state("used"));
  swap_free_ = r.gauge("troupe_kv_swap_blocks", swap_help, with_state("free"));
  prefix_hit_ratio_ =
      r.gauge("troupe_prefix_cache_hit_ratio", "Prefix-cache hits over queries since start, in [0, 1].", l);
  max_num_seqs_ = r.gauge("troupe_scheduler_max_num_seqs", "The scheduler's limit on sequences running at once.", l);
  max_num_batched_tokens_ = r.gauge("troupe_scheduler_max_num_batched_tokens",
                                    "The scheduler's token budget per step (max_num_batched_tokens).", l);
  digest_keys_ = r.gauge("troupe_replica_prefix_digest_keys",
                         "Prefix keys in the replica's last digest: recent requests whose prompt start it still "
                         "caches.",
                         l);

  preemptions_ = mirror("troupe_num_preemptions_total", "Sequences preempted (recompute or swap).");
  busy_seconds_ = mirror("troupe_worker_busy_seconds_total", "Wall time with a step in flight to the worker.");
  overhead_seconds_ =
      mirror("troupe_scheduler_overhead_seconds_total", "Scheduler time around steps: planning, and fanning tokens out.");
  prefix_queries_ = mirror("troupe_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
  prefix_hits_ = mirror("troupe_prefix_cache_hits_total", "Prompt tokens whose KV came from the prefix cache.");
  evicted_blocks_ = mirror("troupe_kv_cache_evicted_blocks_total", "Cached prefix blocks reclaimed for new data.");
  // A snapshot has totals, not each step: these counters stand for the step histograms'
  // _count and _sum a plain serve exports.
  steps_ = mirror("troupe_steps_total", "Steps the replica ran (a plain serve: troupe_step_duration_seconds_count).");
  step_tokens_ = mirror("troupe_step_tokens_total",
                        "Tokens fed over all steps (a plain serve: troupe_batch_size_tokens_sum).");
  step_sequences_ = mirror("troupe_step_sequences_total",
                           "Sequences over all steps (a plain serve: troupe_batch_size_sequences_sum).");
  prefill_tokens_ = mirror("troupe_step_prefill_tokens_total",
                           "Tokens fed in steps as prompt (prefill chunks, recompute), not single decodes.");
  spec_steps_ = mirror("troupe_spec_decode_num_steps_total",
                       "Speculative decoding: sequence-steps that carried proposed tokens.");
  spec_drafts_ = mirror("troupe_spec_decode_num_draft_tokens_total", "Speculative decoding: tokens proposed.");
  spec_accepted_ = mirror("troupe_spec_decode_num_accepted_tokens_total",
                          "Speculative decoding: proposed tokens the model accepted.");
  spec_emitted_ = mirror("troupe_spec_decode_num_emitted_tokens_total",
                         "Speculative decoding: tokens emitted by speculative sequence-steps.");

  finished_ = r.counter("troupe_replica_requests_finished_total",
                        "Requests the replica finished with a done event (any finish reason), as the router saw them.",
                        l);
  queue_seconds_ = r.counter("troupe_replica_request_queue_seconds_total",
                             "Queue time (arrival to first scheduled) of the replica's finished requests, summed.", l);
  e2e_seconds_ = r.counter("troupe_replica_request_e2e_seconds_total",
                           "Arrival-to-finish time of the replica's finished requests, summed.", l);
  prompt_tokens_ = r.counter("troupe_replica_prompt_tokens_total", "Prompt tokens of the replica's finished requests.", l);
  generation_tokens_ =
      r.counter("troupe_replica_generation_tokens_total", "Output tokens of the replica's finished requests.", l);
}

void replica_metrics::on_snapshot(const scheduler_snapshot& s) {
  const auto& q = s.scheduling;
  const auto& b = s.blocks;
  running_->set(q.num_running);
  waiting_->set(q.num_waiting);
  swapped_->set(q.num_swapped);
  blocks_used_->set(b.num_used_blocks);
  blocks_cached_->set(b.num_cached_blocks);
  blocks_free_->set(b.num_free_blocks);
  blocks_capacity_->set(b.num_total_blocks);
  usage_ratio_->set(b.num_total_blocks > 0 ? double(b.num_used_blocks) / b.num_total_blocks : 0.0);
  waste_ratio_->set(b.waste_ratio());
  swap_used_->set(b.num_used_swap_blocks);
  swap_free_->set(b.num_total_swap_blocks - b.num_used_swap_blocks);
  prefix_hit_ratio_->set(b.prefix_hit_ratio());
  max_num_seqs_->set(s.max_num_seqs);
  max_num_batched_tokens_->set(s.max_num_batched_tokens);
  digest_keys_->set(static_cast<double>(s.cached_prefix_keys.size()));

  preemptions_.follow(static_cast<double>(q.num_preemptions));
  busy_seconds_.follow(s.step_busy_seconds);
  overhead_seconds_.follow(s.step_overhead_seconds);
  prefix_queries_.follow(static_cast<double>(b.num_prefix_query_tokens));
  prefix_hits_.follow(static_cast<double>(b.num_prefix_hit_tokens));
  evicted_blocks_.follow(static_cast<double>(b.num_evicted_blocks));
  steps_.follow(static_cast<double>(q.num_steps));
  step_tokens_.follow(static_cast<double>(q.num_scheduled_tokens));
  step_sequences_.follow(static_cast<double>(s.num_step_sequences));
  prefill_tokens_.follow(static_cast<double>(s.num_prefill_tokens));
  spec_steps_.follow(static_cast<double>(q.num_speculative_steps));
  spec_drafts_.follow(static_cast<double>(q.num_draft_tokens));
  spec_accepted_.follow(static_cast<double>(q.num_accepted_tokens));
  spec_emitted_.follow(static_cast<double>(q.num_emitted_tokens));
}

void replica_metrics::on_request_done(const done_event& done) {
  finished_->inc();
  queue_seconds_->inc(done.timings.queue_ms / 1000.0);
  e2e_seconds_->inc(done.timings.total_ms / 1000.0);
  prompt_tokens_->inc(done.usage.prompt_tokens);
  generation_tokens_->inc(done.usage.completion_tokens);
}

}  // namespace troupe::cluster
