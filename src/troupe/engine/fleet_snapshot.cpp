// snapshot_from_samples: which troupe_* series feeds which field of replica_sample.
#include "troupe/engine/fleet_snapshot.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

// The series a field adds up, by the field's address in replica_sample.
using field = double replica_sample::*;

const std::unordered_map<std::string, std::vector<field>>& fields_by_metric() {
  static const std::unordered_map<std::string, std::vector<field>> fields = {
      {"troupe_num_requests_running", {&replica_sample::num_running}},
      {"troupe_num_requests_waiting", {&replica_sample::num_waiting}},
      {"troupe_num_requests_batching", {&replica_sample::num_waiting}},
      {"troupe_num_requests_swapped", {&replica_sample::num_swapped}},
      {"troupe_kv_cache_usage_ratio", {&replica_sample::kv_usage_ratio}},
      {"troupe_kv_cache_capacity_blocks", {&replica_sample::kv_capacity_blocks}},
      {"troupe_scheduler_max_num_seqs", {&replica_sample::max_num_seqs}},
      {"troupe_scheduler_max_num_batched_tokens", {&replica_sample::max_num_batched_tokens}},
      {"troupe_request_success_total", {&replica_sample::num_finished}},
      {"troupe_prompt_tokens_total", {&replica_sample::num_prompt_tokens}},
      {"troupe_generation_tokens_total", {&replica_sample::num_generation_tokens}},
      {"troupe_request_queue_time_seconds_sum", {&replica_sample::queue_seconds_sum}},
      {"troupe_request_queue_time_seconds_count", {&replica_sample::num_queue_observations}},
      {"troupe_e2e_request_latency_seconds_sum", {&replica_sample::e2e_seconds_sum}},
      {"troupe_e2e_request_latency_seconds_count", {&replica_sample::num_e2e_observations}},
      {"troupe_step_duration_seconds_count", {&replica_sample::num_steps}},
      {"troupe_step_duration_seconds_sum", {&replica_sample::step_seconds_sum}},
      {"troupe_batch_size_tokens_sum", {&replica_sample::num_step_tokens}},
      {"troupe_batch_size_sequences_sum", {&replica_sample::num_step_sequences}},
      {"troupe_batch_efficiency_ratio_sum", {&replica_sample::batch_fill_sum}},
      {"troupe_worker_busy_seconds_total", {&replica_sample::busy_seconds}},
      {"troupe_num_preemptions_total", {&replica_sample::num_preemptions}},
      {"troupe_step_prefill_tokens_total", {&replica_sample::num_prefill_tokens}},
      {"troupe_prefix_cache_queries_total", {&replica_sample::num_prefix_query_tokens}},
      {"troupe_prefix_cache_hits_total", {&replica_sample::num_prefix_hit_tokens}},
      // A routing serve's replicas (cluster/replica_metrics.hpp): step totals from their
      // snapshots, and the requests the router saw each finish.
      {"troupe_steps_total", {&replica_sample::num_steps}},
      {"troupe_step_tokens_total", {&replica_sample::num_step_tokens}},
      {"troupe_step_sequences_total", {&replica_sample::num_step_sequences}},
      {"troupe_replica_requests_finished_total",
       {&replica_sample::num_finished, &replica_sample::num_queue_observations, &replica_sample::num_e2e_observations}},
      {"troupe_replica_request_queue_seconds_total", {&replica_sample::queue_seconds_sum}},
      {"troupe_replica_request_e2e_seconds_total", {&replica_sample::e2e_seconds_sum}},
      {"troupe_replica_prompt_tokens_total", {&replica_sample::num_prompt_tokens}},
      {"troupe_replica_generation_tokens_total", {&replica_sample::num_generation_tokens}},
  };
  return fields;
}

// Fields that stay -1 unless the replica exports their metric.
constexpr field optional_fields[] = {&replica_sample::max_num_seqs, &replica_sample::max_num_batched_tokens,
                                     &replica_sample::num_prefill_tokens};

}  // namespace

fleet_snapshot snapshot_from_samples(const std::vector<metric_sample>& samples, double time_seconds,
                                     const std::string& default_replica) {
  struct partial {
    replica_sample sample;
    bool is_troupe = false;
    bool is_down = false;              // troupe_replica_up 0 (a routing serve's replica)
    bool has_step_histogram = false;   // troupe_step_duration_seconds (a server's own engine)
    bool has_step_totals = false;      // troupe_steps_total (a router's replica)
    std::vector<field> seen;
  };
  std::map<std::string, partial> replicas;
  const auto& fields = fields_by_metric();
  for (const auto& s : samples) {
    const auto it = fields.find(s.name);
    const bool is_up_gauge = s.name == "troupe_replica_up";
    if (it == fields.end() && !is_up_gauge) continue;
    std::string name = default_replica;
    for (const auto& [label, value] : s.labels) {
      if (label == "replica") name = value;
    }
    auto& p = replicas[name];
    p.sample.replica = name;
    if (is_up_gauge) {
      p.is_down = s.value == 0;
      continue;
    }
    for (const field f : it->second) {
      if (std::find(std::begin(optional_fields), std::end(optional_fields), f) != std::end(optional_fields) &&
          std::find(p.seen.begin(), p.seen.end(), f) == p.seen.end()) {
        p.sample.*f = 0;  // exported: from -1 (unknown) to a sum
        p.seen.push_back(f);
      }
      p.sample.*f += s.value;
    }
    if (s.name == "troupe_num_requests_running") p.is_troupe = true;
    if (s.name == "troupe_step_duration_seconds_count") p.has_step_histogram = true;
    if (s.name == "troupe_steps_total") p.has_step_totals = true;
  }
  fleet_snapshot snapshot;
  snapshot.time_seconds = time_seconds;
  bool has_troupe = false;
  for (auto& [name, p] : replicas) {
    has_troupe = has_troupe || p.is_troupe;
    if (!p.is_troupe || p.is_down) continue;
    auto& r = p.sample;
    if (p.has_step_totals && !p.has_step_histogram) {
      // Totals instead of per-step observations: a step's time is the busy time it added,
      // and its fill its tokens over the (fixed) token budget.
      r.step_seconds_sum = r.busy_seconds;
      r.batch_fill_sum = r.max_num_batched_tokens > 0 ? r.num_step_tokens / r.max_num_batched_tokens : 0;
    }
    snapshot.replicas.push_back(std::move(r));
  }
  if (!has_troupe) {
    throw error(error_code::invalid_argument,
                "no troupe metrics: troupe_num_requests_running is missing (is this a troupe server's /metrics?)");
  }
  return snapshot;
}

fleet_snapshot merge_snapshots(const std::vector<fleet_snapshot>& parts) {
  fleet_snapshot merged;
  for (const auto& part : parts) {
    merged.time_seconds = std::max(merged.time_seconds, part.time_seconds);
    for (const auto& r : part.replicas) {
      const bool is_taken = std::any_of(merged.replicas.begin(), merged.replicas.end(),
                                        [&](const replica_sample& m) { return m.replica == r.replica; });
      if (is_taken) throw error(error_code::invalid_argument, "two replicas are both named '" + r.replica + "'");
      merged.replicas.push_back(r);
    }
  }
  std::sort(merged.replicas.begin(), merged.replicas.end(),
            [](const replica_sample& a, const replica_sample& b) { return a.replica < b.replica; });
  return merged;
}

}  // namespace troupe
