// Iteration-level continuous batching: which sequences run in the next step and with how
// many tokens (decodes first, then prefill chunks), priorities with ageing, preemption
// when KV runs out, stop rules and aborts. The scheduler actor owns one of these and a
// kv_space; it calls schedule(), sends the plan, then on_step_done(), and fans the returned
// events out to the request actors.
//
// Asynchronous scheduling: while one step runs, schedule_ahead() plans the next on the
// assumption that every sequence in the running step gets its token. The plan says "feed
// the token you sampled last" (decode_next, step_plan.hpp), so it needs no correction when
// the tokens arrive; a sequence whose token turns out to be a stop token is dropped from
// the planned step by the worker and by on_step_done alike. What cannot be planned ahead
// (a preemption, for KV or for priority) makes schedule_ahead() leave the rest for a
// synchronous schedule() once the running step is back.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "troupe/engine/beam_search.hpp"
#include "troupe/engine/kv_space.hpp"
#include "troupe/engine/scheduler_config.hpp"
#include "troupe/engine/sequence.hpp"
#include "troupe/engine/speculation_cost.hpp"
#include "troupe/engine/step_plan.hpp"
#include "troupe/model/backend.hpp"

namespace troupe {

struct sequence_request {
  uint64_t id = 0;                     // unique among live sequences
  std::vector<int32_t> prompt_tokens;  // not empty
  sampling_params params;              // validated by the caller
  int32_t priority = 0;                // lower number runs first
  std::optional<speculative_method> speculative;  // the request's choice; none: the server's
  // Parallel sampling (n > 1, best_of): the ids of the other members of the group. The
  // prompt is prefilled once, up to its last token, under `id`; then the sequence forks into
  // one sequence per id (copy-on-write blocks), and each feeds the last prompt token and
  // samples on its own. Member i (1-based here) samples with fork_seed(params.seed, i).
  std::vector<uint64_t> fork_ids;
  // Beam search: with beam.width > 0, fork_ids are the group's other w - 1 ids, taken by
  // beams as the search forks them. Sampling is replaced by the search (the model's raw
  // log-probabilities; max_tokens, min_tokens, stop_token_ids and ignore_eos apply), and
  // the sequence's only event is its end, carrying the hypotheses.
  beam_search_params beam;
  // The request's prefix key (prefix_key.hpp), for the replica's prefix digest; 0: none.
  uint64_t prefix_key = 0;
  bool operator==(const sequence_request&) const = default;
};

struct scheduled_step {
  step_delta plan;                     // empty: nothing to run now (what changed: step_plan.hpp)
  // Block moves to do before running the plan, in this order: swap_out, copies, swap_in
  // (a swap_out reads blocks that a copy or a later step may reuse).
  kv_operations ops;
  std::vector<uint64_t> preempted;     // stopped running this step (recompute or swap)
  std::vector<uint64_t> started;       // scheduled for the first time
  std::vector<uint64_t> resumed;       // running again after a preemption
  int32_t num_scheduled_tokens = 0;    // plan.num_tokens()
  int32_t token_budget = 0;            // max_num_batched_tokens
  int64_t num_attended_pairs = 0;      // attention (query, key) pairs of the fed tokens
  bool is_empty() const {
    return plan.is_empty() && ops.copies.empty() && ops.swap_out.empty() && ops.swap_in.empty();
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
  // A speculative step's proposals and how many of them were accepted, on the first event
  // of the tokens that step emitted (0 elsewhere).
  int32_t num_proposed = 0;
  int32_t num_accepted = 0;
  // A beam search's end (state finished, seq_id its first id): the hypotheses, best first.
  std::vector<beam_hypothesis> beams;
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
  int64_t num_steps_ahead = 0;       // of num_steps, planned while the step before ran
  int64_t num_steady_tokens = 0;     // of num_scheduled_tokens, planned in the steady decode lane
  // Speculative decoding (vLLM's spec_decode counters): sequence-steps that carried
  // proposals, tokens proposed, accepted, and emitted by those sequence-steps (accepted plus
  // the one sampled after them), and per proposal position i (0-based) how many were
  // proposed and accepted there.
  int64_t num_speculative_steps = 0;
  int64_t num_draft_tokens = 0;
  int64_t num_accepted_tokens = 0;
  int64_t num_emitted_tokens = 0;
  std::vector<int64_t> num_drafts_at_position;
  std::vector<int64_t> num_accepted_at_position;
  // Scheduled tokens per budget token over all steps, in [0, 1].
  bool operator==(const scheduler_stats&) const = default;
  double batch_efficiency() const {
    return num_budget_tokens == 0 ? 0.0 : static_cast<double>(num_scheduled_tokens) / num_budget_tokens;
  }
};

// The seed of member i of a parallel-sampling group whose request gave `seed`: member 0
// keeps it (so n = 1 and choice 0 agree), the others get distinct, well-mixed seeds.
uint64_t fork_seed(uint64_t seed, uint64_t member);

class scheduler_policy {
 public:
  // eog_ids: the model's end-of-generation tokens (stop unless ignore_eos). Throws as
  // config.validate() does. `kv` must outlive the policy; the policy is its only user.
  scheduler_policy(scheduler_config config, kv_space& kv, std::vector<int32_t> eog_ids);

  // Queues a new sequence (a group of them with fork_ids). Throws
  // troupe::error(invalid_argument) for an empty prompt, a live id, or a group larger than
  // max_num_seqs, and troupe::error(context_overflow) for a prompt that can never fit
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
  // Plans the step after the one in flight (exactly one must be). Empty when nothing more
  // can run, or when what is left needs a preemption or follows a failed step: then
  // needs_sync() is true and the next step comes from schedule() once this one is back.
  scheduled_step schedule_ahead(int64_t now_ms);
  bool needs_sync() const { return needs_sync_; }

  // Applies the oldest step in flight: appends the sampled tokens (outputs matched by
  // seq_id), applies the stop rules, finishes and frees sequences. A sequence that stopped
  // on a token leaves the step planned behind it (the worker drops it there too). Returns
  // one event per sampled token, in plan order. Throws troupe::error(internal) with no
  // step in flight or when a wanted sample is missing. `seconds`, when known (>= 0), is how
  // long the worker took: decode steps' times teach the speculation break-even rule.
  std::vector<sequence_event> on_step_done(const step_result& result, double seconds = -1);
  // The worker could not run the oldest step: every sequence in it fails and frees its
  // blocks. A step planned ahead of it will fail too (step_delta::is_planned_ahead).
  std::vector<sequence_event> on_step_failed(error_code code, const std::string& message);
  // The worker was replaced: it holds no sequence's state, so every next step is whole.
  void forget_worker_state();

  // What on_worker_lost did: the sequences that failed with the lost steps, and the ones
  // sent back to waiting (recompute preemption) because their KV went with the pool.
  struct worker_loss {
    std::vector<sequence_event> failed;
    std::vector<uint64_t> requeued;
  };
  // The worker was abandoned together with its backend's KV pool (its step never returned):
  // every sequence in a step in flight fails with `code` and `message`; every other running
  // or swapped one goes back to waiting, to be fed again from its prompt and output so far;
  // the pool (kv_space::reset) and the worker's state are forgotten.
  worker_loss on_worker_lost(error_code code, const std::string& message, int64_t now_ms);
  // No worker will run anything any more: every live sequence fails; the pool is reset.
  std::vector<sequence_event> fail_all(error_code code, const std::string& message);

  // Cancels a sequence in any live state and returns its blocks; false (and no effect)
  // for an unknown or already finished id. A group member not forked yet is struck from
  // its group (the parent forks one fewer). Safe while a step is in flight: the step's
  // output for it is ignored and its blocks go back when the step is done.
  bool abort(uint64_t seq_id);

  bool is_step_in_flight() const { return !in_flight_.empty(); }
  int32_t num_steps_in_flight() const { return static_cast<int32_t>(in_flight_.size()); }
  bool has_unfinished() const { return !sequences_.empty(); }
  // Longest a sequence may grow (prompt + output): max_model_len capped by the KV pool.
  int32_t max_sequence_tokens() const { return max_sequence_tokens_; }
  const sequence* find(uint64_t seq_id) const;
  scheduler_stats stats() const;

 private:
  struct step_entry {
    uint64_t seq_id;
    int32_t num_tokens;  // proposals included
    bool wants_sample;
    int32_t num_drafts = 0;
  };
  struct in_flight_step {
    std::vector<step_entry> entries;
    bool is_planned_ahead = false;
    // The steady lane's members in this step (each a one-token decode that wants a sample),
    // and the lane step's number (0: the step has no lane).
    std::vector<uint64_t> steady_ids;
    uint64_t steady_epoch = 0;
    uint64_t serial = 0;                 // totals_.num_steps when it was planned
    std::vector<uint64_t> release_after; // retired sequences whose blocks go back once this step is back
    size_t size() const { return entries.size() + steady_ids.size(); }
    // The entries, then the lane's members: each a one-token decode that wants a sample.
    step_entry entry(size_t i) const {
      return i < entries.size() ? entries[i] : step_entry{steady_ids[i - entries.size()], 1, true, 0};
    }
  };
  // A member of the steady decode lane: a running sequence that decodes one token per step.
  // Lane step e feeds it position offset + e; at its due step (sequence::steady_due_epoch)
  // it takes a new KV block in the lane, or leaves when its length runs out; it leaves too
  // when anything else about it changes (it finishes, is cancelled or preempted), with its
  // in-flight counters made explicit. seq == nullptr: the place of one that left.
  struct steady_member {
    uint64_t id = 0;
    sequence* seq = nullptr;
    int64_t offset = 0;
    int32_t new_block = -1;  // taken for the lane step being planned
  };
  struct step_builder;

  // (effective priority, id) of the waiting sequences, best first.
  std::vector<std::pair<int64_t, uint64_t>> waiting_in_order(int64_t now_ms) const;
  void preempt_for_priority(step_builder& b, const std::vector<std::pair<int64_t, uint64_t>>& queue);
  void schedule_running(step_builder& b);
  // Proposals for the decodes of a synchronous step with few enough of them: each
  // decoding sequence's share grows by its proposals, within the budgets.
  void propose_drafts(step_builder& b, std::vector<sequence*>& order);
  // A speculative entry's result: emits the accepted proposals and the sample after them
  // (up to a stop), adapts the sequence's proposal count, rolls back rejected positions.
  void apply_speculative(const step_entry& e, sequence& seq, const sequence_output& o,
                         std::vector<sequence_event>& events);
  // A step of decodes alone (at most speculative_max_batch of them) took `seconds`: its
  // size and proposals made go to spec_cost_; step_decodes_ is its size (0 for other steps).
  void observe_step_time(const in_flight_step& step, double seconds);
  // The break-even rule for a sequence whose num_proposed proposals won num_accepted.
  void weigh_speculation(sequence& seq, int32_t num_proposed, int32_t num_accepted);
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
  scheduled_step plan(int64_t now_ms, bool is_ahead);
  // Puts a sequence's share of the step into the plan: a decode_next when the worker can
  // continue it, a whole sequence_step otherwise.
  // Takes the growth's copies into the step. Counts the sequence's share as in flight.
  void add_to_plan(step_builder& b, sequence& seq, int32_t num_tokens, kv_growth&& growth);
  sequence_step make_step(const sequence& seq, int32_t num_tokens, const std::vector<int32_t>& block_table) const;
  // Positions fed by steps done or in flight, and the tokens known or pending.
  static int32_t scheduled_end(const sequence& seq) { return seq.num_computed_tokens + seq.num_in_flight_tokens; }
  // A parent whose group is not forked yet stops short of its last prompt token: each
  // member feeds that one itself, and samples there with its own seed.
  static int32_t planned_tokens(const sequence& seq) {
    return seq.num_tokens() + seq.num_pending_samples - (seq.fork_ids.empty() ? 0 : 1);
  }
  static bool is_planned_decode(const sequence& seq) {
    return planned_tokens(seq) - scheduled_end(seq) == 1 && seq.num_output_tokens() + seq.num_pending_samples > 0;
  }
  // A sample in flight will end it by length: nothing more is planned for it.
  bool ends_by_length_in_flight(const sequence& seq) const;
  bool should_stop(sequence& seq) const;
  void retire(sequence& seq, sequence_state final_state);
  // running_ stays in rank order: an admission or a resume is inserted at its rank.
  void insert_running(sequence& seq);
  void erase_running(const sequence& seq);
  void release_deferred(const in_flight_step& step);
  void defer_release(sequence& seq, bool is_discard);
  // The steady decode lane (scheduler_config::steady_decodes).
  bool can_join_steady(const sequence& seq) const;
  void join_steady(sequence& seq);
  void leave_steady(sequence& seq);
  void dissolve_steady();
  void compact_steady();
  void clear_steady();
  void prepare_steady(step_builder& b);
  const sequence* lowest_ranked_steady() const;
  std::vector<steady_member> steady_;  // in joining order, with the places of those that left
  int32_t num_steady_ = 0;             // members
  int32_t num_steady_speculating_ = 0; // members that may speculate (planned one by one when the batch allows it)
  std::vector<int32_t> steady_grown_;  // members given a new block for the lane step being planned
  // A min-heap of (due lane step, id, membership ticket); entries of a membership that ended
  // are skipped (the ticket tells a rejoined sequence's entries from its old ones).
  std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> steady_due_;
  uint64_t steady_tickets_ = 0;
  uint64_t steady_epoch_ = 0;      // the last lane step planned
  int64_t steady_offset_sum_ = 0;  // sum of the members' offsets: their positions' sum is this + size * epoch
  mutable const sequence* steady_lowest_ = nullptr;  // cached lowest-ranked member, or nullptr: unknown

  // Forks every group whose shared prefill is done (its prompt but the last token has KV,
  // no step in flight for it): the members start running beside the parent.
  void fork_ready_groups();
  // Forks a running parent into its group's members (running, their KV shared with the
  // parent's); returns the parent and the members.
  std::vector<sequence*> fork_group(sequence& parent);
  // A parent leaving without forking: its members will never run.
  void drop_pending_forks(sequence& seq);
  // Running slots a waiting sequence takes when admitted: its group's size before a fork; a
  // beam group's width once, when its first sequence is admitted (the group holds them).
  int32_t num_slots(const sequence& seq) const;
  // Running sequences, the members their parents will fork into, and the slots of admitted
  // beam groups not taken by a running beam.
  int32_t num_running_slots() const;
  // Beam groups: when every live beam has its next tokens, one round of the search (the
  // beams forked, moved on or dropped), or the group's end event.
  void advance_beams(uint64_t group_id, std::vector<sequence_event>& events);
  // Every live beam of the group retires in final_state; the group is forgotten.
  void end_beam_group(uint64_t group_id, sequence_state final_state);

  scheduler_config config_;
  double attention_cost_ = 0;
  kv_space& kv_;
  std::vector<int32_t> eog_ids_;
  int32_t max_sequence_tokens_;
  std::unordered_map<uint64_t, sequence> sequences_;  // live ones
  std::vector<uint64_t> waiting_;
  // Rank order (admitted priority, then arrival): a running sequence's rank never changes,
  // so the lowest-ranked, the preemption victim, is the last. The pointers are into
  // sequences_, whose nodes do not move.
  std::vector<sequence*> running_;
  std::vector<uint64_t> swapped_;
  std::vector<in_flight_step> in_flight_;  // oldest first, at most two
  std::vector<sequence*> step_sequences_;  // on_step_done's scratch: the oldest step's entries' sequences
  // Retired sequences whose blocks go back with a step in flight (in_flight_step::release_after);
  // true: their KV was never written (a failed step), so they leave the prefix cache too.
  std::unordered_map<uint64_t, bool> deferred_;
  std::vector<uint64_t> forgets_;  // for the next plan: the worker drops these sequences' state
  std::unordered_map<uint64_t, uint64_t> fork_parents_;  // a member not forked yet -> its parent
  int32_t num_pending_forks_ = 0;  // parents whose group is not forked yet
  int32_t num_reserved_slots_ = 0;  // running parents' members not forked yet: their slots are taken
  struct beam_group {
    beam_search_state search;
    std::vector<uint64_t> ids;  // the group's ids, each held by at most one live beam
    int32_t width = 0;
    bool is_admitted = false;
    uint64_t first_arrival_order = 0;  // ids[i] ranks with first_arrival_order + i
  };
  std::unordered_map<uint64_t, beam_group> beam_groups_;
  std::unordered_map<uint64_t, uint64_t> beam_ids_;  // every id of a beam group -> the group
  // A new beam `id` continuing `parent` (its KV shared copy-on-write while the parent is
  // resident; otherwise it starts waiting, to be fed again).
  sequence& fork_beam(sequence& parent, uint64_t id, uint64_t arrival_order);
  ngram_proposer ngram_;
  speculation_cost spec_cost_;
  int32_t step_decodes_ = 0;  // decodes in the step being applied, when it was timed; else 0
  bool needs_sync_ = false;
  uint64_t next_arrival_order_ = 0;
  scheduler_stats totals_;
};

}  // namespace troupe
