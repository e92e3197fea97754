// Iteration-level continuous batching: which sequences run in the next step and with how
// many tokens (decodes first, then prefill chunks), priorities with ageing, preemption
// when KV runs out, stop rules and aborts. One step is in flight at a time. The scheduler
// actor owns one of these and a kv_space; it calls schedule(), runs the plan, then
// on_step_done(), and fans the returned events out to the request actors.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "troupe/engine/kv_space.hpp"
#include "troupe/engine/scheduler_config.hpp"
#include "troupe/engine/sequence.hpp"
#include "troupe/model/backend.hpp"

namespace troupe {

struct sequence_request {
  uint64_t id = 0;                     // unique among live sequences
  std::vector<int32_t> prompt_tokens;  // not empty
  sampling_params params;              // validated by the caller
  int32_t priority = 0;                // lower number runs first
  bool operator==(const sequence_request&) const = default;
};

struct scheduled_step {
  batch_plan plan;                     // empty: nothing to run now
  // Block moves to do before running the plan, in this order: swap_out, copies, swap_in
  // (a swap_out reads blocks that a copy or a later step may reuse).
  kv_operations ops;
  std::vector<uint64_t> preempted;     // stopped running this step (recompute or swap)
  std::vector<uint64_t> started;       // scheduled for the first time
  std::vector<uint64_t> resumed;       // running again after a preemption
  int32_t num_scheduled_tokens = 0;    // plan.num_tokens()
  int32_t token_budget = 0;            // max_num_batched_tokens
  bool is_empty() const {
    return plan.sequences.empty() && ops.copies.empty() && ops.swap_out.empty() && ops.swap_in.empty();
  }
};

// What a step (or its failure) did to one sequence.
struct sequence_event {
  uint64_t seq_id = 0;
  sequence_state state = sequence_state::running;  // running: a token was appended
  int32_t token = -1;                              // -1 when failed
  float logprob = 0.0f;
  std::vector<token_logprob> top_logprobs;
  finish_reason reason = finish_reason::stop;      // when state is finished: stop or length
  error_code error = error_code::internal;         // when state is failed: why
  std::string message;                             // when state is failed
  bool operator==(const sequence_event&) const = default;
};

struct scheduler_stats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_swapped = 0;
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  int64_t num_scheduled_tokens = 0;  // over all steps
  int64_t num_budget_tokens = 0;     // max_num_batched_tokens times num_steps
  // Scheduled tokens per budget token over all steps, in [0, 1].
  bool operator==(const scheduler_stats&) const = default;
  double batch_efficiency() const {
    return num_budget_tokens == 0 ? 0.0 : static_cast<double>(num_scheduled_tokens) / num_budget_tokens;
  }
};

class scheduler_policy {
 public:
  // eog_ids: the model's end-of-generation tokens (stop unless ignore_eos). Throws as
  // config.validate() does. `kv` must outlive the policy; the policy is its only user.
  scheduler_policy(scheduler_config config, kv_space& kv, std::vector<int32_t> eog_ids);

  // Queues a new sequence. Throws troupe::error(invalid_argument) for an empty prompt or a
  // live id, and troupe::error(context_overflow) for a prompt that can never fit
  // (longer than max_model_len or than the whole KV pool).
  void add(sequence_request request, int64_t now_ms);

  // The pairs of attention that cost one token (scheduler_config::attention_cost), as the
  // scheduler learns it from step timings; 0 sizes chunks by tokens alone.
  void set_attention_cost(double attention_cost);
  double attention_cost() const { return attention_cost_; }

  // Plans the next step and reserves its KV. Throws troupe::error(internal) while a
  // step is in flight. A non-empty result is in flight until on_step_done/on_step_failed;
  // an empty one means nothing can run before the next add, abort or step_done.
  scheduled_step schedule(int64_t now_ms);

  // Appends the sampled tokens (outputs matched by seq_id), applies the stop rules, finishes
  // and frees sequences. Returns one event per sampled token, in plan order. Throws
  // troupe::error(internal) with no step in flight or when a wanted sample is missing.
  std::vector<sequence_event> on_step_done(const step_result& result);
  // The worker could not run the step: every sequence in it fails and frees its blocks.
  std::vector<sequence_event> on_step_failed(error_code code, const std::string& message);

  // Cancels a sequence in any live state and returns its blocks; false (and no effect)
  // for an unknown or already finished id. Safe while a step is in flight: the step's
  // output for it is ignored and its blocks go back when the step is done.
  bool abort(uint64_t seq_id);

  bool is_step_in_flight() const { return is_step_in_flight_; }
  bool has_unfinished() const { return !sequences_.empty(); }
  // Longest a sequence may grow (prompt + output): max_model_len capped by the KV pool.
  int32_t max_sequence_tokens() const { return max_sequence_tokens_; }
  const sequence* find(uint64_t seq_id) const;
  scheduler_stats stats() const;

 private:
  struct step_entry {
    uint64_t seq_id;
    int32_t num_tokens;
  };
  struct step_builder;

  // (effective priority, id) of the waiting sequences, best first.
  std::vector<std::pair<int64_t, uint64_t>> waiting_in_order(int64_t now_ms) const;
  void preempt_for_priority(step_builder& b, const std::vector<std::pair<int64_t, uint64_t>>& queue);
  void schedule_running(step_builder& b);
  void schedule_swapped(step_builder& b);
  void schedule_waiting(step_builder& b, const std::vector<std::pair<int64_t, uint64_t>>& queue);
  // Tokens to feed this step under the remaining budget (0: not this step), from position
  // num_computed; a chunk short of the prompt's end stops at a block boundary when it can.
  int32_t num_tokens_to_feed(int32_t num_computed, int32_t num_uncomputed, int32_t budget) const;
  // num_tokens_to_feed under both of the step's budgets, tokens and cost; takes them from
  // the budgets. The first prefill of a step gets at least a block, so that a prompt moves
  // even when decodes at long contexts have used up the cost.
  int32_t take_tokens(step_builder& b, int32_t num_computed, int32_t num_uncomputed);
  void preempt(uint64_t seq_id, step_builder& b, preemption_mode mode);
  // The victim: lowest admitted priority, then latest arrival.
  std::optional<uint64_t> lowest_ranked_running() const;
  int64_t effective_priority(const sequence& seq, int64_t now_ms) const;
  sequence_step make_step(const sequence& seq, int32_t num_tokens) const;
  bool should_stop(sequence& seq) const;
  void retire(sequence& seq, sequence_state final_state);
  void end_step();

  scheduler_config config_;
  double attention_cost_ = 0;
  kv_space& kv_;
  std::vector<int32_t> eog_ids_;
  int32_t max_sequence_tokens_;
  std::unordered_map<uint64_t, sequence> sequences_;  // live ones
  std::vector<uint64_t> waiting_;
  std::vector<uint64_t> running_;
  // A running sequence's rank (admitted priority, arrival) never changes and removals keep
  // the order, so running_ is sorted again only after an admission or a resume.
  bool is_running_sorted_ = true;
  std::vector<uint64_t> swapped_;
  std::vector<step_entry> in_flight_;
  std::vector<uint64_t> releases_after_step_;  // aborted while their step was in flight
  bool is_step_in_flight_ = false;
  uint64_t next_arrival_order_ = 0;
  scheduler_stats totals_;
};

}  // namespace troupe
