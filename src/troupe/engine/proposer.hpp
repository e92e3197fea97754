// Proposers for speculative decoding: what guesses a sequence's next tokens cheaply, for the
// target model to verify in one step (model/speculative.hpp). The scheduler asks a proposer
// for up to k tokens per decoding sequence while it plans a step.
//
// The seam: a proposer sees the sequence's tokens (prompt then output) and answers with
// fixed tokens. n-gram lookup is one. A draft model is not a proposer here: it runs in the
// worker, beside the target (model/draft_backend.hpp), and the scheduler only reserves
// proposal slots (draft_slot) for it to fill.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace troupe {

// How a server (and a request, overriding it) proposes tokens: draft needs a draft model
// loaded beside the target (--draft-model).
enum class speculative_method { off, ngram, draft };

const char* to_string(speculative_method m);
// "off", "ngram" or "draft"; throws troupe::error(invalid_argument) naming the allowed values.
speculative_method parse_speculative_method(const std::string& text);

class proposer {
 public:
  virtual ~proposer() = default;
  // Appends at most max_tokens proposed continuations of `tokens` to `out` (cleared first).
  virtual void propose(std::span<const int32_t> tokens, int32_t max_tokens, std::vector<int32_t>& out) const = 0;
};

// Prompt lookup: the longest suffix of the sequence, from max_n tokens down to min_n, that
// occurred earlier in it (prompt or output, the latest occurrence), and what followed there.
// Nothing when no suffix of at least min_n tokens recurs.
class ngram_proposer final : public proposer {
 public:
  // Throws troupe::error(invalid_argument) unless 1 <= min_n <= max_n <= 64.
  ngram_proposer(int32_t min_n, int32_t max_n);
  void propose(std::span<const int32_t> tokens, int32_t max_tokens, std::vector<int32_t>& out) const override;

 private:
  int32_t min_n_;
  int32_t max_n_;
};

}  // namespace troupe
