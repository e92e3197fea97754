// A step as the scheduler sends it to the worker: only what changed since each sequence's
// last step. The worker keeps every live sequence's sequence_step (plan_state) and turns a
// step_delta into the batch_plan its backend runs:
// - a decode that follows the sequence's own last sample is one small entry (decode_next):
//   the worker feeds the token it sampled for it last, one position further, with the
//   block table grown by at most one block, the sample index and penalty window advanced;
// - anything else (a new or resumed sequence, a prompt chunk) is a whole sequence_step,
//   sampling parameters included, which replaces what the worker held;
// - sequences that ended or were preempted are forgotten.
// Because the worker fills in the fed token itself, the scheduler can plan step N+1 while
// step N runs (asynchronous scheduling): a decode_next entry of a sequence whose step-N
// sample was a stop token is dropped by the worker, a rule the scheduler applies too
// (is_stop_token), so that no KV slot is written for a sequence that has finished.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "troupe/grammar/matcher.hpp"
#include "troupe/model/backend.hpp"

namespace troupe {

// One decode that continues from the sequence's last step.
struct decode_next {
  uint64_t seq_id = 0;
  int32_t start_pos = 0;   // the position fed: the worker checks it against its own count
  int32_t new_block = -1;  // a block appended to the table for this position, or -1
  bool operator==(const decode_next&) const = default;
};

struct step_delta {
  std::vector<uint64_t> forget;        // drop these sequences' state first (unknown ids are ignored)
  std::vector<sequence_step> full;     // whole entries: new, resumed, prompt chunks
  std::vector<decode_next> next;       // decodes continuing from the last step
  // Planned while the previous step was still running. If that step fails, this one fails
  // too: it may read KV blocks that the failed step should have written (prefix sharing).
  bool is_planned_ahead = false;
  bool operator==(const step_delta&) const = default;
  bool is_empty() const { return full.empty() && next.empty(); }
  int64_t num_tokens() const;
  // Of num_tokens(), those fed as prompt: every token of a whole entry except a sampled
  // decode's (a decode resumed or new to the worker: one known token, and the proposals
  // after it when speculating). A prompt whose last chunk is a single token counts that
  // token as a decode.
  int64_t num_prefill_tokens() const;
};

// The stop rule that both the scheduler and the worker apply to a sampled token: an end of
// generation id (unless ignore_eos without a grammar) or one of the request's stop_token_ids.
bool is_stop_token(const sampling_params& params, std::span<const int32_t> eog_ids, int32_t token);

// The worker's side: every live sequence's last sequence_step, and the plan to run.
class plan_state {
 public:
  explicit plan_state(std::vector<int32_t> eog_ids) : eog_ids_(std::move(eog_ids)) {}

  // The plan for `delta`, valid until the next call. Constrained sequences (params.grammar)
  // that sample carry the mask of their grammar's allowed tokens (allowed_tokens). Throws troupe::error(bad_plan) for an
  // entry that does not fit what the worker holds (a decode_next for an unknown sequence or
  // at another position); the state is then as before the call, apart from forgets.
  const batch_plan& apply(step_delta&& delta);
  // The plan's step ran and returned `result` (outputs in plan order): records each
  // sequence's sample (a constrained sequence's matcher takes it), and drops the state of
  // those whose sample was a stop token.
  void on_result(const step_result& result);
  // The step of `delta` failed (or was refused): the sequences it names are dropped (they
  // fail), its forgets applied. Works on a delta that apply() has consumed: it reads ids only.
  void fail(const step_delta& delta);

  size_t num_sequences() const { return live_.sequences.size() + parked_.size(); }

 private:
  struct slot {
    int32_t last_sample = -1;  // the token sampled at the end of the sequence's last step
    uint64_t stamp = 0;        // the apply() call that last put it in the plan
  };
  void remove_at(size_t index);
  void put(sequence_step&& step, const slot& s);
  void unpark();
  // Structured output: a whole step brings the sequence's matcher to its output so far.
  void start_grammar(const sequence_step& step);
  // The mask of every constrained sequence that samples in the plan.
  void fill_masks();

  // A constrained sequence's matcher, and the mask its next sample is drawn under.
  struct grammar_state {
    grammar_matcher matcher;
    token_bitset bits;
    std::vector<uint64_t> allowed;
  };

  std::vector<int32_t> eog_ids_;
  batch_plan live_;                                      // sequences in the current plan first
  std::vector<slot> slots_;                              // parallel to live_.sequences
  std::unordered_map<uint64_t, size_t> index_;           // seq_id -> position in live_
  std::vector<std::pair<sequence_step, slot>> parked_;   // held, but not in the current plan
  std::unordered_set<uint64_t> ended_;                   // stopped or failed here, not yet forgotten
  std::vector<ptrdiff_t> next_at_;                       // apply()'s scratch: each decode_next's slot, -1 if ended
  uint64_t stamp_ = 0;
  std::unordered_map<uint64_t, grammar_state> grammars_;  // seq_id -> its matcher
};

}  // namespace troupe
