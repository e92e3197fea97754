// Turns one position's logits into a token: penalties, logit bias, temperature, top-k,
// top-p, min-p, then a seeded draw (or argmax when greedy). Stateless: the random draw for
// a sequence's n-th token depends only on (seed, n), so a preempted and recomputed sequence
// samples exactly what it would have sampled uninterrupted.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "troupe/model/backend.hpp"
#include "troupe/model/sampling_params.hpp"

namespace troupe {

struct sample_result {
  int32_t token = -1;
  float logprob = 0.0f;                     // log-softmax of the raw logits at token
  std::vector<token_logprob> top_logprobs;  // params.num_logprobs best, by raw log-softmax
};

class sampler {
 public:
  // eog_ids: the model's end-of-generation tokens, suppressed when params.ignore_eos, and
  // with params.stop_token_ids while sample_index < params.min_tokens.
  sampler(int32_t vocab_size, std::vector<int32_t> eog_ids);

  // logits: vocab_size values, used as scratch (modified). penalty_tokens: the recent
  // tokens, the first num_prompt_tokens of which come from the prompt.
  // allowed (structured output): bit i set = token i may be sampled; every other logit is
  // masked after the penalties and bans. Should the grammar leave only tokens the request
  // bans (end tokens before min_tokens or under ignore_eos), the grammar wins: those are
  // unbanned. The reported logprobs stay the raw distribution's.
  sample_result sample(std::span<float> logits, const sampling_params& params,
                       std::span<const int32_t> penalty_tokens, int32_t num_prompt_tokens,
                       uint64_t sample_index, const std::vector<uint64_t>* allowed = nullptr) const;

  // The distribution sample() draws from at this position, as probabilities over the
  // vocabulary (summing to 1): the same penalties, bias, end-token bans, temperature,
  // top-k, top-p and min-p, so the same kept set; one-hot at the argmax when greedy. What a
  // proposal distribution is checked against (accept_or_resample, speculative.hpp).
  // `logits` is scratch, as for sample().
  void distribution(std::span<float> logits, const sampling_params& params, std::span<const int32_t> penalty_tokens,
                    int32_t num_prompt_tokens, uint64_t sample_index, std::vector<float>& probs) const;

  int32_t vocab_size() const { return vocab_size_; }

 private:
  void check_size(std::span<const float> logits) const;
  // Structured output: every logit whose bit in `allowed` is clear becomes -inf.
  void mask_disallowed(std::span<float> logits, const std::vector<uint64_t>& allowed) const;
  // Penalties, logit bias and end-token bans, in place (the thread's scratch records each
  // logit's raw value for the reported logprob).
  void modify(std::span<float> logits, const sampling_params& params, std::span<const int32_t> penalty_tokens,
              int32_t num_prompt_tokens, uint64_t sample_index) const;

  int32_t vocab_size_;
  std::vector<int32_t> eog_ids_;
};

}  // namespace troupe
