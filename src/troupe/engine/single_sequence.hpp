// Drives a backend for one sequence at a time, without actors: chunked prefill (chunks of
// max_chunk_tokens), then a decode loop with the stop rules (end-of-generation ids unless
// ignore_eos, stop token ids, max_tokens, a full context or KV pool; no stop strings);
// score() returns the logits of every position. The model tests use it to check a backend
// against llama.cpp (tests/cpu/test_llama_cpp_agreement.cpp); `troupe generate` and serving
// go through the actor runtime instead. The sequence takes the backend's whole KV pool as
// its own (blocks 0..n-1 in order) and reuses the KV of the prefix a prompt shares with what
// was fed before. finish_reason is also the scheduler's (engine/sequence.hpp).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "troupe/model/backend.hpp"

namespace troupe {

struct generation_stats {
  int64_t num_prompt_tokens = 0;    // fed this call (after reusing the cached prefix)
  int64_t num_cached_tokens = 0;    // prompt tokens whose KV was reused
  int64_t num_generated_tokens = 0;
  double prefill_seconds = 0.0;     // until the first sampled token
  double decode_seconds = 0.0;      // the rest
};

enum class finish_reason { stop, length, cancelled };

class single_sequence {
 public:
  explicit single_sequence(backend& b, std::vector<int32_t> eog_ids, int32_t max_chunk_tokens = 512);

  // Generates after `prompt` (the whole conversation so far). KV of the longest prefix
  // shared with what was fed before is reused. on_token returns false to stop early.
  finish_reason generate(const std::vector<int32_t>& prompt, const sampling_params& params,
                         const std::function<bool(int32_t token)>& on_token, generation_stats& stats);

  // Runs `tokens` through the model from position 0 and returns the logits of every
  // position (tokens.size() x vocab), in chunks of max_chunk_tokens.
  std::vector<float> score(const std::vector<int32_t>& tokens);

  void reset() { fed_.clear(); }
  const std::vector<int32_t>& tokens() const { return fed_; }

 private:
  sequence_step make_step(int32_t start_pos, std::vector<int32_t> chunk) const;
  void ensure_capacity(int64_t num_positions) const;

  backend& backend_;
  std::vector<int32_t> eog_ids_;
  int32_t max_chunk_tokens_;
  std::vector<int32_t> fed_;          // tokens whose KV is in blocks 0..
  std::vector<int32_t> block_table_;
};

}  // namespace troupe
