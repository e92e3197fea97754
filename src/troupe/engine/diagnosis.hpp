// The bottleneck monitor: from a history of fleet snapshots, what limits the fleet now,
// which knob to turn, and the numbers that led there. Plain rules over one window's
// summary (fleet_window.hpp); each finding carries every value it compared and the
// threshold it compared it with. docs/diagnosis.md explains each rule and threshold.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "troupe/engine/fleet_snapshot.hpp"
#include "troupe/engine/fleet_window.hpp"

namespace troupe {

enum class bottleneck {
  insufficient_data,   // under two snapshots, or a window too short to difference counters
  idle,                // no work: the workers sat idle and nothing waited
  ok,                  // work flows: nothing waits long, nothing is preempted
  kv_capacity,         // the KV pool is full: sequences are preempted or cannot start
  max_num_seqs,        // running sequences at the cap while requests wait, with KV and tokens to spare
  batch_token_budget,  // steps fill max_num_batched_tokens while requests wait
  compute_bound,       // the worker is always busy and steps are slow: more batching costs every stream
  prefill_heavy,       // prompt tokens are most of what steps feed
  low_prefix_reuse,    // prompts are long but the prefix cache finds almost nothing
  replica_skew,        // one replica queues while another has room
  queue_unexplained,   // requests wait though no limit above is reached
};
const char* to_string(bottleneck b);

// routing: a routing serve's --router-affinity-slack and --router-waiting-weight /
// --router-kv-weight (docs/scale-out.md, "The routing rule").
enum class knob { none, kv_cache, max_num_seqs, max_num_batched_tokens, replicas, prompt_prefix, routing };
const char* to_string(knob k);

// One comparison a rule made: `value op threshold` held (op is one of >=, >, <, <=).
struct comparison {
  std::string name;  // the replica_window field or derived figure, e.g. "max_kv_usage"
  double value = 0;
  std::string op;
  double threshold = 0;
};

struct finding {
  bottleneck kind = bottleneck::ok;
  std::string replica;      // the replica it is about; "" = the whole fleet (every replica alike)
  double confidence = 0;    // in [0, 1]; below 0.5: advice only, never the limiting factor
  knob knob_to_turn = knob::none;
  std::string advice;       // what to change, with the numbers
  std::vector<comparison> evidence;
};

// Every threshold the rules use; the defaults and why they are what they are: docs/diagnosis.md.
struct diagnosis_thresholds {
  double min_window_seconds = 1.0;      // shorter: counters have barely moved
  double idle_busy_ratio = 0.05;        // below: the worker is essentially idle
  double pressure_mean_waiting = 1.0;   // at least one request waiting on average...
  double pressure_queue_share = 0.25;   // ...or a quarter of the latency spent queued
  double kv_full_ratio = 0.95;          // KV pool this full stops admission
  double kv_room_ratio = 0.90;          // below: room for more sequences
  double seqs_at_cap_ratio = 0.95;      // mean running this close to max_num_seqs
  double budget_full_fill = 0.90;       // steps this full of the token budget
  double slow_step_seconds = 0.10;      // a step this long: 10 tokens/s per stream
  double compute_busy_ratio = 0.90;     // the worker has a step this share of the time
  double prefill_heavy_share = 0.70;    // prompt tokens this share of tokens fed
  double prefill_busy_ratio = 0.50;     // and the worker this busy
  double low_reuse_prefill_share = 0.50;
  double low_reuse_hit_ratio = 0.10;
  double low_reuse_min_query_tokens = 1024;  // fewer: too few lookups to judge
  double skew_load_ratio = 1.5;         // busiest replica's load over the fleet's mean
  double skew_room_waiting = 0.5;       // the quietest replica's mean waiting below this
};

struct diagnosis {
  bottleneck limiting_factor = bottleneck::insufficient_data;
  std::string summary;                  // one line for people
  std::vector<finding> findings;        // highest confidence first; never empty
  std::vector<replica_window> replicas; // the window's summary each finding was read from
  double window_seconds = 0;            // asked for
  int32_t num_snapshots = 0;            // in the window
};

// Diagnoses the last window_seconds of `history` (snapshots in time order). Throws as
// summarize_window does.
diagnosis diagnose(const std::vector<fleet_snapshot>& history, double window_seconds,
                   const diagnosis_thresholds& thresholds = {});

}  // namespace troupe
