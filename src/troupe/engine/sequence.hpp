// One request as the scheduler sees it: its tokens, how much of them has KV, its priority
// and arrival, and its state machine (transition_to is the only place the state changes).
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "troupe/engine/proposer.hpp"
#include "troupe/engine/single_sequence.hpp"  // finish_reason
#include "troupe/model/sampling_params.hpp"

namespace troupe {

struct sequence_output;

// waiting ──► running ──► finished
//    ▲           │  ▲
//    └─recompute─┘  └─swap in── swapped
//                └──swap out──►
// Any live state (waiting, running, swapped) may also end as cancelled or failed.
enum class sequence_state { waiting, running, swapped, finished, cancelled, failed };

const char* to_string(sequence_state state);
bool is_terminal(sequence_state state);

class sequence {
 public:
  sequence(uint64_t id, std::vector<int32_t> prompt_tokens, sampling_params params, int32_t priority,
           uint64_t arrival_order, int64_t arrival_ms);

  uint64_t id = 0;
  int32_t priority = 0;          // lower number runs first
  uint64_t arrival_order = 0;    // monotonic over the scheduler's lifetime: FIFO tie-break
  int64_t arrival_ms = 0;
  int64_t waiting_since_ms = 0;  // when it last entered the waiting queue (ageing starts here)
  // The effective priority it was admitted with (priority minus its ageing credit). Running
  // sequences are ranked by it, so an aged request is not evicted at once by the work it overtook.
  int64_t admitted_priority = 0;
  sampling_params params;
  // KV is valid for token positions [0, num_computed_tokens). In decode it is num_tokens() - 1:
  // the last sampled token is fed by the next step.
  int32_t num_computed_tokens = 0;
  int32_t num_cached_prefix_tokens = 0;  // of those, reused from the prefix cache at admission
  int32_t num_preemptions = 0;
  finish_reason reason = finish_reason::stop;  // meaningful once finished
  // Steps sent to the worker but not yet back (at most two with asynchronous scheduling):
  // the tokens they feed, how many of them end in a sample not yet known, and how many
  // such steps there are.
  int32_t num_in_flight_tokens = 0;
  int32_t num_pending_samples = 0;
  int32_t num_in_flight_steps = 0;
  // The worker holds the sequence's last step, so that a decode can follow as a
  // decode_next (step_plan.hpp), and this many entries of its block table.
  bool is_known_to_worker = false;
  bool was_last_sent_sampled = false;  // the last step sent for it ends in a sample
  int32_t num_blocks_sent = 0;
  // Scratch for the scheduler's passes over a step: its token share while planning, its
  // output while applying the result.
  int32_t step_share = 0;
  // In the scheduler's steady decode lane (scheduler_policy.hpp): its place there, or -1; the
  // first lane step it is in (its in-flight counters leave those steps out while it is in the
  // lane), the next lane step that needs a look at it (a new KV block, or its end), and the
  // first lane step it can no longer be in (its token would pass max_tokens or the longest
  // sequence).
  int32_t steady_index = -1;
  uint64_t steady_join_epoch = 0;
  uint64_t steady_due_epoch = 0;
  uint64_t steady_end_epoch = 0;
  uint64_t steady_ticket = 0;  // this membership's number (each join takes a new one)
  uint64_t last_step_serial = 0;  // the newest step planned with it (steady lane steps included once it leaves)
  const sequence_output* step_output = nullptr;
  // Speculative decoding: the method (the server's unless the request chose), the most
  // proposals a step may carry now (adapted to how many were accepted), steps left to sit
  // out after repeated misses, consecutive steps with nothing accepted, and the proposals of
  // the step being planned.
  speculative_method speculative = speculative_method::off;
  int32_t num_speculative_tokens = 0;
  int32_t speculation_pause = 0;
  int32_t num_speculation_misses = 0;
  // The break-even rule (scheduler_config::speculative_break_even): a moving average of
  // accepted proposals less what they cost, in tokens per step; the samples in it; how many
  // times in a row it has sat out for it.
  double speculation_gain = 0;
  int32_t num_gain_samples = 0;
  int32_t num_break_even_pauses = 0;
  std::vector<int32_t> drafts;
  // Parallel sampling: the members this sequence forks into once its prompt (but the last
  // token) has KV; empty once forked, and for every sequence without a group. group_id is
  // the id of the group's first sequence (its own id outside a group).
  std::vector<uint64_t> fork_ids;
  std::vector<uint32_t> fork_members;  // each fork id's place in its group (1, 2, ...): its seed
  uint64_t group_id = 0;
  // Beam search (group_id names the beam group): each output token's log-probability and
  // their sum; once a step has fed its last token, the model's most likely next tokens,
  // held until every beam of the group has them and the group advances.
  bool is_beam = false;
  double beam_logprob = 0.0;
  std::vector<float> beam_logprobs;
  std::vector<token_logprob> beam_next;
  bool has_beam_next = false;

  sequence_state state() const { return state_; }
  // Moves to `next` or throws troupe::error(internal) naming both states. Entering waiting
  // from running (recompute preemption) forgets the KV: num_computed_tokens becomes 0.
  void transition_to(sequence_state next);

  int32_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens_; }
  int32_t num_tokens() const { return static_cast<int32_t>(tokens_.size()); }
  // Tokens still to feed before the next sample: 1 in decode, more in (re)prefill.
  int32_t num_uncomputed_tokens() const { return num_tokens() - num_computed_tokens; }
  bool is_decoding() const { return num_uncomputed_tokens() == 1 && num_output_tokens() > 0; }
  bool is_finished() const { return is_terminal(state_); }

  std::span<const int32_t> tokens() const { return tokens_; }  // prompt then output
  std::span<const int32_t> prompt_tokens() const { return tokens().first(static_cast<size_t>(num_prompt_tokens_)); }
  std::span<const int32_t> output_tokens() const { return tokens().subspan(static_cast<size_t>(num_prompt_tokens_)); }
  std::vector<int32_t> tokens_from(int32_t pos, int32_t count) const;
  void append_token(int32_t token) { tokens_.push_back(token); }
  // The last penalty_last_n tokens of prompt+output and how many of them are prompt tokens,
  // as the sampler's penalties expect them (sequence_step::penalty_tokens).
  std::pair<std::vector<int32_t>, int32_t> penalty_window() const;

 private:
  std::vector<int32_t> tokens_;  // prompt then output, contiguous for the prefix-cache keys
  int32_t num_prompt_tokens_ = 0;
  sequence_state state_ = sequence_state::waiting;
};

}  // namespace troupe
