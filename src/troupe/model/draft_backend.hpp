// Draft-model speculative decoding: a backend that runs a small draft model beside the
// target and fills the proposal slots the scheduler reserved (draft_slot) with the draft's
// own draws, then verifies them against the target with the general acceptance rule
// (accept_or_resample, speculative.hpp). docs/speculative.md, "Draft model".
//
// Both models' KV caches are indexed by the same block ids: the scheduler's one block
// manager hands out ids, and every block table, copy, swap-out and swap-in applies to the
// target's pool and the draft's alike (the two pools have the same block count and size).
// The draft is fed the tokens the target is fed (prompt chunks, decode tokens, n-gram
// proposals) at the same positions, so its KV is valid wherever the target's is, with two
// lags. A plain one-token decode (the sequence proposes nothing this step: it sits out, its
// request did not ask, the batch is too large) is not fed to the draft then: it joins the
// sequence's run of unfed tokens, and the run is fed as one chunk, before the draft's
// proposal steps, the next time the sequence speculates (a draft step per decode token is
// the draft's largest cost, and a chunk costs a fraction of that per token). And a draft of
// k proposals feeds itself only the first k - 1 of them: when all k are accepted, the k-th
// starts the run. Runs outlive swap-outs; a sequence fed again from an earlier position (a
// rollback, a recompute) cuts its run there.
//
// Per speculating sequence a step runs: up to k one-token draft steps (batched over the
// sequences; a sequence stops early where the draft is unsure), each drawing a proposal from q = sampler::distribution of the draft's row
// with the request's own sampling knobs and penalty window, then one target step over
// [t, d1..dk], then position by position p = sampler::distribution of the target's row and
// accept_or_resample(p, q); after k acceptances the bonus token is the plain sample of the
// target's last row. Slots the draft left unfilled are not fed to the target; the output
// says how many were filled (sequence_output::num_drafted). The uniforms are pure functions of (seed, output index), one stream for
// the draft's draws, one for acceptance, one for the resample, so a seeded request draws the
// same tokens when it is scheduled the same way. Greedy requests (p and q one-hot) emit
// exactly the target's argmax tokens, the output without speculation.
#pragma once
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "troupe/model/backend.hpp"
#include "troupe/model/sampler.hpp"
#include "troupe/model/tokenizer.hpp"

namespace troupe {

// Throws troupe::error(invalid_argument) unless the draft's vocabulary is the target's: the
// same size, the same text for every token, the same bos, eos and end-of-generation ids. The
// message names the first difference.
void check_draft_vocabulary(const tokenizer& target, const tokenizer& draft);

class draft_backend final : public backend {
 public:
  // Both backends must have the same KV block count and block size and the same
  // vocabulary size, and the target must verify proposals (supports_speculation); throws
  // troupe::error(invalid_argument) otherwise. eog_ids: the target's end-of-generation
  // tokens, for the sampler.
  //
  // min_confidence: the draft stops proposing once the product of its own probabilities of
  // its proposals so far (each the softmax of its raw logits at the proposed token) falls
  // under it; the proposal that took it under is still made. 0: always fill every slot.
  draft_backend(std::shared_ptr<backend> target, std::shared_ptr<backend> draft, std::vector<int32_t> eog_ids,
                double min_confidence = 0.0);

  const model_config& config() const override { return target_->config(); }
  // The target's pool geometry; bytes_per_block counts both models' KV of a block.
  kv_cache_shape kv_shape() const override;
  step_result step(const batch_plan& plan) override;
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override;
  int32_t num_swap_blocks() const override { return target_->num_swap_blocks(); }
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) override;
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) override;
  double attention_efficiency() const override { return target_->attention_efficiency(); }
  bool supports_speculation() const override { return true; }
  bool has_draft_model() const override { return true; }

 private:
  struct drafting;  // one speculating sequence's proposals during a step

  // Feeds the draft the known tokens of the plan (a plain decode's token only joins its
  // sequence's unfed run; a speculating sequence's run is fed first), and runs the
  // speculating sequences' proposal steps; fills `seqs`.
  void run_draft(const batch_plan& plan, std::vector<drafting>& seqs);
  // Verifies one sequence's proposals on the target's rows, fills its output.
  void verify(const sequence_step& step, drafting& d, std::span<const float> rows, sequence_output& out);

  std::shared_ptr<backend> target_;
  std::shared_ptr<backend> draft_;
  sampler sampler_;
  double min_confidence_ = 0.0;
  // Per sequence, known tokens at positions [pos, pos + tokens.size()) that the target has
  // and the draft has not been fed yet: plain decodes' tokens, and the last proposal of a
  // fully accepted draft run. Dropped once max_unfed_age steps pass without the sequence in
  // a plan (it ended; checked every 64 steps).
  struct unfed_run {
    int32_t pos = 0;
    std::vector<int32_t> tokens;
    uint64_t step = 0;
  };
  // The sequence's run (a new empty one if it has none), cut where a step starting at
  // start_pos continues it; emptied and moved to start_pos when start_pos is not within it
  // (a sequence fed again from before the run, or after a gap the draft cannot fill).
  unfed_run& unfed_at(uint64_t seq_id, int32_t start_pos);
  static constexpr uint64_t max_unfed_age = 4096;
  std::unordered_map<uint64_t, unfed_run> unfed_;
  uint64_t num_steps_ = 0;
};

}  // namespace troupe
