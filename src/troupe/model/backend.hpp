// The backend interface: one call runs one batch_plan (prefill chunks and decode tokens of
// many sequences over the paged KV cache) and returns the sampled tokens. The CPU backend
// and the CUDA backend implement it; the scheduler drives it through the worker actor
// (docs/design.md, "Layers"). The plan lives here, not in engine/, because model/ may not
// include engine/.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "troupe/model/kv_cache_dtype.hpp"
#include "troupe/model/model_config.hpp"
#include "troupe/model/sampling_params.hpp"

namespace troupe {

// A proposal the scheduler reserved for a draft model: the step's draft model draws it.
inline constexpr int32_t draft_slot = -1;

// One sequence's share of a step.
struct sequence_step {
  uint64_t seq_id = 0;
  std::vector<int32_t> tokens;       // fed this step: a prompt chunk, one decode token, ...
  int32_t start_pos = 0;             // position of tokens[0]; KV for [0, start_pos) is cached
  std::vector<int32_t> block_table;  // physical KV blocks covering [0, start_pos + tokens.size())
  bool wants_sample = true;          // sample after the last token (false for a non-final chunk)
  bool wants_all_logits = false;     // return the logits of every fed position (tests, scoring)
  sampling_params params;
  std::vector<int32_t> penalty_tokens;   // recent prompt+output tokens the penalties look at
  int32_t num_prompt_penalty_tokens = 0; // how many of penalty_tokens come from the prompt
  uint64_t sample_index = 0;             // number of tokens sampled so far: seeds the RNG
  // Speculative decoding: the last num_draft_tokens of `tokens` are proposed continuations,
  // not known tokens. The backend samples after tokens[0] and, while its sample equals the
  // proposal that follows, after each proposal too (verify_drafts, speculative.hpp); the
  // output carries the accepted proposals and the sample that ended the run. Needs
  // wants_sample. KV is written for every fed position; the scheduler rolls back the
  // positions of rejected proposals. Proposals that are all draft_slot are for the worker's
  // draft model to fill (model/draft_backend.hpp); a backend without one refuses them as
  // tokens outside the vocabulary.
  int32_t num_draft_tokens = 0;
  // Structured output (params.grammar): the output tokens before this step, for the worker
  // to bring its matcher to where the sequence is (whole steps only), and the tokens the
  // grammar allows next as bits (bit i of word i / 64: token i), which the worker fills in
  // before the backend runs the step; null = unconstrained.
  std::vector<int32_t> output_tokens;
  const std::vector<uint64_t>* allowed_tokens = nullptr;
  bool operator==(const sequence_step&) const = default;
};

struct batch_plan {
  std::vector<sequence_step> sequences;
  bool operator==(const batch_plan&) const = default;
  int64_t num_tokens() const {
    int64_t n = 0;
    for (const auto& s : sequences) n += static_cast<int64_t>(s.tokens.size());
    return n;
  }
};

struct token_logprob {
  int32_t token = -1;
  float logprob = 0.0f;
  bool operator==(const token_logprob&) const = default;
};

// One sampled token with what the sampler reports about it.
struct sampled_token_info {
  int32_t token = -1;
  float logprob = 0.0f;                // under the unfiltered distribution
  std::vector<token_logprob> top_logprobs;
  bool operator==(const sampled_token_info&) const = default;
};

struct sequence_output {
  uint64_t seq_id = 0;
  int32_t token = -1;                  // -1 when no sample was asked for
  float logprob = 0.0f;                // of the sampled token under the unfiltered distribution
  std::vector<token_logprob> top_logprobs;
  std::vector<float> logits;           // num_tokens x vocab when wants_all_logits
  // Speculative steps: the proposals the target accepted, in order; they come before
  // `token` (the sample after the last accepted one). Empty otherwise.
  std::vector<sampled_token_info> accepted;
  // Draft-model steps: how many of the sequence's draft_slot proposals the draft model made
  // (it may stop early where it is unsure; the slots after them were not fed to the
  // target). -1 elsewhere: every proposal of the plan was made.
  int32_t num_drafted = -1;
  bool operator==(const sequence_output&) const = default;
};

struct step_result {
  std::vector<sequence_output> outputs;  // in plan order
  bool operator==(const step_result&) const = default;
};

struct kv_cache_shape {
  int32_t num_blocks = 0;
  int32_t block_size = 16;       // tokens per block
  int64_t bytes_per_block = 0;   // over all layers, K and V
  kv_cache_dtype dtype = kv_cache_dtype::f16;
};

class backend {
 public:
  virtual ~backend() = default;
  virtual const model_config& config() const = 0;
  virtual kv_cache_shape kv_shape() const = 0;
  // Runs one plan. Throws troupe::error for a malformed plan (a block id out of range, a
  // block table too short, a position past the context); the KV cache is then unchanged
  // for every other sequence.
  virtual step_result step(const batch_plan& plan) = 0;
  // Copies whole KV blocks (copy-on-write forks), pairs of (source, destination).
  virtual void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) = 0;
  // Host swap space for preempted sequences: blocks of it, and moves of whole blocks
  // (device block, host block) out to it and (host block, device block) back.
  virtual int32_t num_swap_blocks() const = 0;
  virtual void swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) = 0;
  virtual void swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) = 0;
  // How fast attention runs per multiply-add relative to the weight matmuls, in (0, 1]:
  // the scheduler's first estimate of what a chunk deep in a long prompt costs
  // (step_cost.hpp); it refits from the steps it times.
  virtual double attention_efficiency() const { return 0.5; }
  // Whether step() verifies proposed tokens (sequence_step::num_draft_tokens > 0); a
  // backend that does not refuses such a step with troupe::error(unsupported).
  virtual bool supports_speculation() const { return false; }
  // Whether step() fills proposals that are draft_slot from a draft model of its own.
  virtual bool has_draft_model() const { return false; }
};

}  // namespace troupe
