// Per-request sampling parameters, shared by the sampler, the scheduler and the wire codecs.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace troupe {

class grammar_masks;  // troupe/grammar/grammar_masks.hpp: a compiled grammar bound to the vocabulary

struct sampling_params {
  float temperature = 1.0f;          // 0 = greedy
  int32_t top_k = 0;                 // 0 = off
  float top_p = 1.0f;                // 1 = off
  float min_p = 0.0f;                // 0 = off
  float repetition_penalty = 1.0f;   // 1 = off; applied to prompt and output tokens in the window
  float presence_penalty = 0.0f;     // OpenAI semantics, over output tokens in the window
  float frequency_penalty = 0.0f;
  int32_t penalty_last_n = 64;       // window of recent tokens the penalties look at; -1 = all
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> added to its logit
  uint64_t seed = 0;                 // same seed, same params, same prompt => same tokens
  int32_t num_logprobs = 0;          // top-N logprobs to return with each token (0..20)
  int32_t max_tokens = 256;
  // vLLM's min_tokens: the sampler cannot draw an end-of-generation id or a stop_token_id
  // while fewer output tokens than this came before (can_sample_end), and stop strings do not
  // end the output before it has this many tokens. 0 = off; at most max_tokens.
  int32_t min_tokens = 0;
  std::vector<int32_t> stop_token_ids;  // in addition to the model's end-of-generation ids
  bool ignore_eos = false;
  // Structured output: every token sampled keeps the output inside this grammar (the worker
  // keeps a matcher per sequence and masks the logits: sequence_step::allowed_tokens). An
  // in-process object, not sent over the wire; null = unconstrained.
  std::shared_ptr<const grammar_masks> grammar;

  bool operator==(const sampling_params&) const = default;
  bool is_greedy() const { return temperature <= 0.0f; }
  // Whether any penalty looks at recent tokens (and the sampler needs their window).
  bool has_penalties() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
  // Throws troupe::error(invalid_argument) naming the first field out of range.
  void validate(int32_t vocab_size) const;
};

}  // namespace troupe
