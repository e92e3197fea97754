// The rules, one function per bottleneck, each returning its finding (or none) from one
// replica's window; then the fleet-level ones (idle, skew) and the ordering.
#include "troupe/engine/diagnosis.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

namespace troupe {

const char* to_string(bottleneck b) {
  switch (b) {
    case bottleneck::insufficient_data: return "insufficient_data";
    case bottleneck::idle: return "idle";
    case bottleneck::ok: return "ok";
    case bottleneck::kv_capacity: return "kv_capacity";
    case bottleneck::max_num_seqs: return "max_num_seqs";
    case bottleneck::batch_token_budget: return "batch_token_budget";
    case bottleneck::compute_bound: return "compute_bound";
    case bottleneck::prefill_heavy: return "prefill_heavy";
    case bottleneck::low_prefix_reuse: return "low_prefix_reuse";
    case bottleneck::replica_skew: return "replica_skew";
    case bottleneck::queue_unexplained: return "queue_unexplained";
  }
  return "unknown";
}

const char* to_string(knob k) {
  switch (k) {
    case knob::none: return "none";
    case knob::kv_cache: return "kv_cache";
    case knob::max_num_seqs: return "max_num_seqs";
    case knob::max_num_batched_tokens: return "max_num_batched_tokens";
    case knob::replicas: return "replicas";
    case knob::prompt_prefix: return "prompt_prefix";
    case knob::routing: return "routing";
  }
  return "unknown";
}

namespace {

using rule_result = std::optional<finding>;

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, std::fabs(v) >= 1000 ? "%.0f" : "%.3g", v);
  return text;
}

std::string percent(double ratio) { return number(100 * ratio) + "%"; }

// Requests are kept waiting: the condition every capacity rule needs. The evidence is
// the figure that showed it (both when both did).
bool has_pressure(const replica_window& w, const diagnosis_thresholds& t, std::vector<comparison>& out) {
  const bool waits = w.mean_waiting >= t.pressure_mean_waiting;
  const bool queues = w.queue_share >= t.pressure_queue_share;
  if (waits) out.push_back({"mean_waiting", w.mean_waiting, ">=", t.pressure_mean_waiting});
  if (queues) out.push_back({"queue_share", w.queue_share, ">=", t.pressure_queue_share});
  return waits || queues;
}

// The share of the pool one running sequence holds on average; 0 with nothing running.
double kv_per_sequence(const replica_window& w) {
  return w.mean_running > 0 ? w.mean_kv_usage / w.mean_running : 0;
}

// Whether the free part of the pool would take one more sequence of today's mean size.
bool has_room_for_one_more(const replica_window& w) { return 1 - w.mean_kv_usage >= kv_per_sequence(w); }

rule_result kv_capacity(const replica_window& w, const diagnosis_thresholds& t) {
  finding f{bottleneck::kv_capacity, w.replica, 0, knob::kv_cache, "", {}};
  // Preemptions with room in the pool were for priority (a waiting request aged past a
  // running one), not for KV: max_num_seqs reports those.
  if (w.num_preemptions > 0 && w.max_kv_usage >= t.kv_room_ratio) {
    f.evidence.push_back({"num_preemptions", w.num_preemptions, ">", 0});
    f.evidence.push_back({"max_kv_usage", w.max_kv_usage, ">=", t.kv_room_ratio});
    // One preemption per finished request or more: every request is recomputed once.
    f.confidence = 0.8 + 0.2 * std::min(1.0, w.num_preemptions / std::max(1.0, w.num_finished));
  } else {
    // Requests wait below the sequence cap, and the pool is full or has less room than one
    // more sequence of today's mean size takes: the next prompt cannot be admitted.
    const bool below_cap = w.max_num_seqs < 0 || w.mean_running < t.seqs_at_cap_ratio * w.max_num_seqs;
    const bool is_full = w.max_kv_usage >= t.kv_full_ratio;
    const bool lacks_room = !has_room_for_one_more(w);
    if (!(is_full || lacks_room) || !below_cap || !has_pressure(w, t, f.evidence)) return std::nullopt;
    if (is_full) f.evidence.push_back({"max_kv_usage", w.max_kv_usage, ">=", t.kv_full_ratio});
    if (lacks_room) f.evidence.push_back({"kv_free_ratio", 1 - w.mean_kv_usage, "<", kv_per_sequence(w)});
    if (w.max_num_seqs >= 0) {
      f.evidence.push_back({"mean_running", w.mean_running, "<", t.seqs_at_cap_ratio * w.max_num_seqs});
    }
    f.confidence = 0.8;
  }
  if (w.num_preemptions > 0 && w.max_kv_usage >= t.kv_room_ratio) {
    // Running sequences outgrow the pool: as many as today's use per sequence keeps at
    // kv_room_ratio of it would fit.
    const double fitting = std::max(1.0, std::floor(w.mean_running * t.kv_room_ratio / w.max_kv_usage));
    const bool can_fewer = fitting < w.mean_running;
    if (can_fewer) f.evidence.push_back({"suggested_max_num_seqs", fitting, "<", w.mean_running});
    f.advice = "running sequences outgrow the KV pool (peak " + percent(w.max_kv_usage) + " used, " +
               number(w.num_preemptions) + " preemptions in " + number(w.duration_seconds) +
               " s): give it more memory (--kv-cache-bytes) or store it as --kv-cache-dtype q8_0 (about 1.9x the "
               "tokens in the same memory)" +
               (can_fewer ? "; or lower --max-num-seqs to about " + number(fitting) + " so they fit" : std::string());
  } else {
    f.advice = "requests wait for KV room: the pool is " + percent(w.mean_kv_usage) + " used by " +
               number(w.mean_running) + " running sequences (" + percent(kv_per_sequence(w)) +
               " each) and the next does not fit: give it more memory (--kv-cache-bytes) or store it as "
               "--kv-cache-dtype q8_0 (about 1.9x the tokens in the same memory)";
  }
  return f;
}

rule_result max_num_seqs(const replica_window& w, const diagnosis_thresholds& t) {
  finding f{bottleneck::max_num_seqs, w.replica, 0, knob::max_num_seqs, "", {}};
  if (w.max_num_seqs <= 0) return std::nullopt;
  const double cap = t.seqs_at_cap_ratio * w.max_num_seqs;
  if (w.mean_running < cap || w.max_kv_usage >= t.kv_room_ratio || !has_room_for_one_more(w)) return std::nullopt;
  if (w.batch_fill >= t.budget_full_fill || w.mean_step_seconds >= t.slow_step_seconds) return std::nullopt;
  if (!has_pressure(w, t, f.evidence)) return std::nullopt;
  f.evidence.push_back({"mean_running", w.mean_running, ">=", cap});
  f.evidence.push_back({"max_kv_usage", w.max_kv_usage, "<", t.kv_room_ratio});
  if (w.batch_fill >= 0) f.evidence.push_back({"batch_fill", w.batch_fill, "<", t.budget_full_fill});
  if (w.mean_step_seconds >= 0) f.evidence.push_back({"mean_step_seconds", w.mean_step_seconds, "<", t.slow_step_seconds});
  // As many more as the KV pool holds at today's use per sequence, at most twice as many.
  const double kv_scale = w.max_kv_usage > 0 ? t.kv_room_ratio / w.max_kv_usage : 2.0;
  const double suggested = std::floor(w.max_num_seqs * std::min(2.0, kv_scale));
  f.evidence.push_back({"suggested_max_num_seqs", suggested, ">", w.max_num_seqs});
  f.confidence = 0.6 + 0.3 * (1 - std::max(0.0, w.batch_fill));
  f.advice = "requests wait while all " + number(w.max_num_seqs) + " sequence slots are taken, with the KV pool at " +
             percent(w.max_kv_usage) + " and steps at " + percent(std::max(0.0, w.batch_fill)) +
             " of the token budget: raise --max-num-seqs to about " + number(suggested);
  if (w.num_preemptions > 0) {
    f.evidence.push_back({"num_preemptions", w.num_preemptions, ">", 0});
    f.advice += " (the " + number(w.num_preemptions) +
                " preemptions were waiting requests ageing past running ones: recomputed work)";
  }
  return f;
}

rule_result batch_token_budget(const replica_window& w, const diagnosis_thresholds& t) {
  finding f{bottleneck::batch_token_budget, w.replica, 0, knob::max_num_batched_tokens, "", {}};
  if (w.batch_fill < t.budget_full_fill || w.mean_step_seconds >= t.slow_step_seconds) return std::nullopt;
  if (!has_pressure(w, t, f.evidence)) return std::nullopt;
  f.evidence.push_back({"batch_fill", w.batch_fill, ">=", t.budget_full_fill});
  f.evidence.push_back({"mean_step_seconds", w.mean_step_seconds, "<", t.slow_step_seconds});
  if (w.max_num_batched_tokens > 0) f.evidence.push_back({"max_num_batched_tokens", w.max_num_batched_tokens, ">", 0});
  f.confidence = 0.6 + 0.3 * std::min(1.0, (w.batch_fill - t.budget_full_fill) / (1 - t.budget_full_fill));
  f.advice = "steps feed " + percent(w.batch_fill) + " of the token budget (" +
             (w.max_num_batched_tokens > 0 ? number(w.max_num_batched_tokens) : std::string("unknown")) +
             " tokens) while requests wait, and a step takes " + number(w.mean_step_seconds * 1000) +
             " ms: raise --max-num-batched-tokens (a step of more tokens costs little more at this size)";
  return f;
}

// Busy and slow: the caps are not what holds requests back, the hardware is. Busy with
// fast steps is not compute-bound: the scheduler would admit more, unless a cap stops it.
rule_result compute_bound(const replica_window& w, const diagnosis_thresholds& t) {
  finding f{bottleneck::compute_bound, w.replica, 0.7, knob::replicas, "", {}};
  if (w.busy_ratio < t.compute_busy_ratio || w.mean_step_seconds < t.slow_step_seconds) return std::nullopt;
  if (!has_pressure(w, t, f.evidence)) return std::nullopt;
  f.evidence.push_back({"busy_ratio", w.busy_ratio, ">=", t.compute_busy_ratio});
  f.evidence.push_back({"mean_step_seconds", w.mean_step_seconds, ">=", t.slow_step_seconds});
  f.advice = "the worker has a step " + percent(w.busy_ratio) + " of the time and each takes " +
             number(w.mean_step_seconds * 1000) + " ms: a bigger batch would slow every stream below 10 tokens/s; "
             "add replicas (or faster hardware)";
  return f;
}

rule_result prefill_heavy(const replica_window& w, const diagnosis_thresholds& t) {
  finding f{bottleneck::prefill_heavy, w.replica, 0, knob::max_num_batched_tokens, "", {}};
  if (w.prefill_share < t.prefill_heavy_share || w.busy_ratio < t.prefill_busy_ratio) return std::nullopt;
  const bool pressed = has_pressure(w, t, f.evidence);
  f.evidence.push_back({"prefill_share", w.prefill_share, ">=", t.prefill_heavy_share});
  f.evidence.push_back({"busy_ratio", w.busy_ratio, ">=", t.prefill_busy_ratio});
  // Above compute_bound (when prompts are the work, that is the more useful answer), below
  // kv_capacity (when prompts cannot even be admitted, the pool is the limit).
  f.confidence = pressed ? 0.75 : 0.35;
  f.advice = "prompts are " + percent(w.prefill_share) + " of the tokens steps feed" +
             (w.mean_prompt_tokens > 0 ? " (" + number(w.mean_prompt_tokens) + " per request)" : std::string()) +
             ": a larger --max-num-batched-tokens prefills them in fewer steps; shorter prompts or a shared "
             "prefix (cached) cut the work itself";
  return f;
}

rule_result low_prefix_reuse(const replica_window& w, const diagnosis_thresholds& t) {
  finding f{bottleneck::low_prefix_reuse, w.replica, 0.3, knob::prompt_prefix, "", {}};
  if (w.prefill_share < t.low_reuse_prefill_share || w.num_prefix_query_tokens < t.low_reuse_min_query_tokens ||
      w.prefix_hit_ratio >= t.low_reuse_hit_ratio) {
    return std::nullopt;
  }
  f.evidence.push_back({"prefill_share", w.prefill_share, ">=", t.low_reuse_prefill_share});
  f.evidence.push_back({"num_prefix_query_tokens", w.num_prefix_query_tokens, ">=", t.low_reuse_min_query_tokens});
  f.evidence.push_back({"prefix_hit_ratio", w.prefix_hit_ratio, "<", t.low_reuse_hit_ratio});
  f.advice = "the prefix cache served " + percent(w.prefix_hit_ratio) +
             " of prompt tokens: put what requests share (system prompt, examples) first and byte-identical";
  return f;
}

void diagnose_replica(const replica_window& w, const diagnosis_thresholds& t, std::vector<finding>& out) {
  for (auto rule : {kv_capacity, max_num_seqs, batch_token_budget, compute_bound, prefill_heavy, low_prefix_reuse}) {
    if (auto f = rule(w, t)) out.push_back(std::move(*f));
  }
}

// A limit every replica of a fleet has is the fleet's (a router that spreads the load
// well in front of replicas that are all saturated): one finding for the whole fleet,
// with the most confident replica's figures, instead of one per replica.
std::vector<finding> merge_fleet_wide(std::vector<finding> findings, size_t num_replicas) {
  if (num_replicas < 2) return findings;
  std::vector<finding> out;
  std::vector<bool> taken(findings.size(), false);
  for (size_t i = 0; i < findings.size(); ++i) {
    if (taken[i]) continue;
    std::vector<size_t> same;
    for (size_t j = i; j < findings.size(); ++j) {
      if (!taken[j] && findings[j].kind == findings[i].kind) same.push_back(j);
    }
    if (same.size() < num_replicas) {
      out.push_back(findings[i]);
      taken[i] = true;
      continue;
    }
    size_t top = same.front();
    for (size_t j : same) {
      taken[j] = true;
      if (findings[j].confidence > findings[top].confidence) top = j;
    }
    finding f = findings[top];
    f.advice = "on all " + std::to_string(num_replicas) + " replicas (the figures are " + f.replica + "'s): " + f.advice;
    f.replica.clear();
    f.evidence.push_back({"num_replicas_with_finding", static_cast<double>(same.size()), ">=",
                          static_cast<double>(num_replicas)});
    out.push_back(std::move(f));
  }
  return out;
}

double load_of(const replica_window& w) { return w.mean_running + w.mean_waiting; }

rule_result replica_skew(const std::vector<replica_window>& ws, const diagnosis_thresholds& t) {
  if (ws.size() < 2) return std::nullopt;
  double mean_load = 0;
  for (const auto& w : ws) mean_load += load_of(w) / ws.size();
  const auto busiest = std::max_element(ws.begin(), ws.end(),
                                        [](const auto& a, const auto& b) { return load_of(a) < load_of(b); });
  const auto quietest = std::min_element(ws.begin(), ws.end(),
                                         [](const auto& a, const auto& b) { return load_of(a) < load_of(b); });
  if (mean_load <= 0 || load_of(*busiest) < t.skew_load_ratio * mean_load) return std::nullopt;
  if (busiest->mean_waiting < t.pressure_mean_waiting || quietest->mean_waiting >= t.skew_room_waiting) {
    return std::nullopt;
  }
  // Above every per-replica rule: the fleet has room, so the routing is the limit first.
  finding f{bottleneck::replica_skew, busiest->replica, 0.95, knob::routing, "", {}};
  f.evidence.push_back({"busiest_load", load_of(*busiest), ">=", t.skew_load_ratio * mean_load});
  f.evidence.push_back({"busiest_mean_waiting", busiest->mean_waiting, ">=", t.pressure_mean_waiting});
  f.evidence.push_back({"quietest_mean_waiting", quietest->mean_waiting, "<", t.skew_room_waiting});
  f.evidence.push_back({"quietest_load", load_of(*quietest), "<", load_of(*busiest)});
  f.advice = "replica " + busiest->replica + " holds " + number(load_of(*busiest)) +
             " requests (running + waiting) against " + number(load_of(*quietest)) + " on " + quietest->replica +
             ": the router keeps sending it work. Behind `troupe serve --replica`, lower --router-affinity-slack "
             "(default 4) so that prefix affinity gives way sooner, or raise --router-waiting-weight (default 0.5) "
             "so that its queue counts more; behind another balancer, route to the replica with the fewest "
             "outstanding requests, not round robin. If it stays busier with even routing (slower hardware), "
             "add replicas";
  return f;
}

// When no rule found a limit: idle, ok, or requests waiting that no limit explains.
finding fleet_state(const std::vector<replica_window>& ws, const diagnosis_thresholds& t) {
  double max_busy = 0, max_waiting = 0, num_preemptions = 0;
  for (const auto& w : ws) {
    max_busy = std::max(max_busy, w.busy_ratio);
    max_waiting = std::max(max_waiting, w.max_waiting);
    num_preemptions += w.num_preemptions;
  }
  if (max_busy < t.idle_busy_ratio && max_waiting < t.pressure_mean_waiting) {
    return {bottleneck::idle, "", 0.9, knob::none,
            "the workers had a step " + percent(max_busy) + " of the time and nothing waited: no bottleneck under "
            "this load (fewer replicas would do)",
            {{"max_busy_ratio", max_busy, "<", t.idle_busy_ratio},
             {"max_waiting", max_waiting, "<", t.pressure_mean_waiting}}};
  }
  for (const auto& w : ws) {
    finding f{bottleneck::queue_unexplained, w.replica, 0.5, knob::none, "", {}};
    if (!has_pressure(w, t, f.evidence)) continue;
    f.evidence.push_back({"max_kv_usage", w.max_kv_usage, "<", t.kv_full_ratio});
    f.evidence.push_back({"busy_ratio", w.busy_ratio, "<", t.compute_busy_ratio});
    f.advice = "requests wait (mean " + number(w.mean_waiting) + ") though no limit is reached: the batcher may "
               "hold them (--max-wait-ms), or a long prompt waits for KV room";
    return f;
  }
  double max_mean_waiting = 0, max_queue_share = 0;
  for (const auto& w : ws) {
    max_mean_waiting = std::max(max_mean_waiting, w.mean_waiting);
    max_queue_share = std::max(max_queue_share, w.queue_share);
  }
  return {bottleneck::ok, "", 0.6, knob::none, "requests flow: none waits long and none is preempted",
          {{"max_mean_waiting", max_mean_waiting, "<", t.pressure_mean_waiting},
           {"max_queue_share", max_queue_share, "<", t.pressure_queue_share},
           {"num_preemptions", num_preemptions, "<=", 0}}};
}

}  // namespace

diagnosis diagnose(const std::vector<fleet_snapshot>& history, double window_seconds,
                   const diagnosis_thresholds& t) {
  diagnosis d;
  d.window_seconds = window_seconds;
  d.replicas = summarize_window(history, window_seconds);
  for (const auto& w : d.replicas) d.num_snapshots = std::max(d.num_snapshots, w.num_snapshots);
  double longest = 0;
  for (const auto& w : d.replicas) longest = std::max(longest, w.duration_seconds);
  if (longest < t.min_window_seconds) {
    d.findings.push_back({bottleneck::insufficient_data, "", 1.0, knob::none,
                          "too little history to difference counters: wait a few seconds",
                          {{"window_covered_seconds", longest, "<", t.min_window_seconds},
                           {"num_snapshots", static_cast<double>(d.num_snapshots), ">=", 0}}});
  } else {
    std::vector<replica_window> measured;
    for (const auto& w : d.replicas) {
      if (w.duration_seconds >= t.min_window_seconds) measured.push_back(w);
    }
    for (const auto& w : measured) diagnose_replica(w, t, d.findings);
    d.findings = merge_fleet_wide(std::move(d.findings), measured.size());
    if (auto f = replica_skew(measured, t)) d.findings.push_back(std::move(*f));
    const bool has_limit = std::any_of(d.findings.begin(), d.findings.end(),
                                       [](const finding& f) { return f.confidence >= 0.5; });
    if (!has_limit) d.findings.push_back(fleet_state(measured, t));
  }
  std::stable_sort(d.findings.begin(), d.findings.end(),
                   [](const finding& a, const finding& b) { return a.confidence > b.confidence; });
  const finding& top = d.findings.front();
  d.limiting_factor = top.kind;
  d.summary = std::string(to_string(top.kind)) + (top.replica.empty() ? "" : " on " + top.replica) + ": " + top.advice;
  return d;
}

}  // namespace troupe
