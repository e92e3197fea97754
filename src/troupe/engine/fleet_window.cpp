// summarize_window: counters by difference, gauges by mean and peak, per replica.
#include "troupe/engine/fleet_window.hpp"

#include <algorithm>
#include <map>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

// A counter's growth from a to b; a replica that restarted in between counts from zero.
double growth(double a, double b) { return b >= a ? b - a : b; }

double ratio_or_unknown(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : -1;
}

replica_window summarize(const std::vector<std::pair<double, const replica_sample*>>& seen) {
  const replica_sample& first = *seen.front().second;
  const replica_sample& last = *seen.back().second;
  replica_window w;
  w.replica = last.replica;
  w.num_snapshots = static_cast<int32_t>(seen.size());
  w.duration_seconds = seen.back().first - seen.front().first;
  for (const auto& [time, s] : seen) {
    w.mean_running += s->num_running / seen.size();
    w.mean_waiting += s->num_waiting / seen.size();
    w.mean_kv_usage += s->kv_usage_ratio / seen.size();
    w.max_running = std::max(w.max_running, s->num_running);
    w.max_waiting = std::max(w.max_waiting, s->num_waiting);
    w.max_kv_usage = std::max(w.max_kv_usage, s->kv_usage_ratio);
  }
  w.max_num_seqs = last.max_num_seqs;
  w.max_num_batched_tokens = last.max_num_batched_tokens;
  if (w.duration_seconds <= 0) return w;

  auto grew = [&](double replica_sample::*f) { return growth(first.*f, last.*f); };
  w.num_finished = grew(&replica_sample::num_finished);
  w.requests_per_second = w.num_finished / w.duration_seconds;
  w.generation_tokens_per_second = grew(&replica_sample::num_generation_tokens) / w.duration_seconds;
  const double queue_seconds = grew(&replica_sample::queue_seconds_sum);
  const double e2e_seconds = grew(&replica_sample::e2e_seconds_sum);
  w.mean_queue_seconds = ratio_or_unknown(queue_seconds, grew(&replica_sample::num_queue_observations));
  w.mean_e2e_seconds = ratio_or_unknown(e2e_seconds, grew(&replica_sample::num_e2e_observations));
  w.queue_share = ratio_or_unknown(queue_seconds, e2e_seconds);
  w.num_steps = grew(&replica_sample::num_steps);
  w.mean_step_seconds = ratio_or_unknown(grew(&replica_sample::step_seconds_sum), w.num_steps);
  w.busy_ratio = std::clamp(grew(&replica_sample::busy_seconds) / w.duration_seconds, 0.0, 1.0);
  w.batch_fill = ratio_or_unknown(grew(&replica_sample::batch_fill_sum), w.num_steps);
  w.mean_batch_sequences = ratio_or_unknown(grew(&replica_sample::num_step_sequences), w.num_steps);
  const double step_tokens = grew(&replica_sample::num_step_tokens);
  w.mean_batch_tokens = ratio_or_unknown(step_tokens, w.num_steps);
  const double prompt_tokens = grew(&replica_sample::num_prompt_tokens);
  w.mean_prompt_tokens = ratio_or_unknown(prompt_tokens, w.num_finished);
  w.num_prefix_query_tokens = grew(&replica_sample::num_prefix_query_tokens);
  w.prefix_hit_ratio = ratio_or_unknown(grew(&replica_sample::num_prefix_hit_tokens), w.num_prefix_query_tokens);
  w.num_preemptions = grew(&replica_sample::num_preemptions);
  if (first.num_prefill_tokens >= 0 && last.num_prefill_tokens >= 0) {
    w.prefill_share = ratio_or_unknown(grew(&replica_sample::num_prefill_tokens), step_tokens);
  } else {
    // An older troupe: the finished requests' prompt tokens less the prefix cache's hits,
    // against their output tokens.
    const double computed = std::max(0.0, prompt_tokens - grew(&replica_sample::num_prefix_hit_tokens));
    w.prefill_share = ratio_or_unknown(computed, computed + grew(&replica_sample::num_generation_tokens));
  }
  if (w.prefill_share > 1) w.prefill_share = 1;
  return w;
}

}  // namespace

std::vector<replica_window> summarize_window(const std::vector<fleet_snapshot>& history, double window_seconds) {
  if (!(window_seconds > 0)) throw error(error_code::invalid_argument, "the window must be longer than 0 seconds");
  for (size_t i = 1; i < history.size(); ++i) {
    if (history[i].time_seconds < history[i - 1].time_seconds) {
      throw error(error_code::invalid_argument, "snapshot history out of time order at snapshot " + std::to_string(i));
    }
  }
  if (history.empty()) return {};
  const double start = history.back().time_seconds - window_seconds;
  std::map<std::string, std::vector<std::pair<double, const replica_sample*>>> by_replica;
  for (const auto& snapshot : history) {
    if (snapshot.time_seconds < start) continue;
    for (const auto& r : snapshot.replicas) by_replica[r.replica].emplace_back(snapshot.time_seconds, &r);
  }
  std::vector<replica_window> windows;
  for (const auto& [name, seen] : by_replica) windows.push_back(summarize(seen));
  return windows;
}

}  // namespace troupe
