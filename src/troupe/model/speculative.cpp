// verify_drafts: the plain sampler, position by position, until a draw departs from the
// proposals; accept_or_resample: the general acceptance rule for a proposal distribution.
#include "troupe/model/speculative.hpp"

#include <algorithm>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

void verify_drafts(const sampler& s, std::span<float> logits, const sequence_step& step, sequence_output& out,
                   std::vector<int32_t>& window) {
  const auto vocab = static_cast<size_t>(s.vocab_size());
  const auto num_drafts = static_cast<size_t>(step.num_draft_tokens);
  if (logits.size() != (num_drafts + 1) * vocab) {
    throw error(error_code::internal, "verify_drafts: " + std::to_string(num_drafts + 1) +
                                          " rows of logits expected, got " + std::to_string(logits.size()) +
                                          " values");
  }
  const auto drafts = std::span<const int32_t>(step.tokens).last(num_drafts);
  // The penalties of position i look at the window the plain step for that output index
  // would send: the step's window plus the proposals accepted before it.
  window.assign(step.penalty_tokens.begin(), step.penalty_tokens.end());
  const bool has_penalties = step.params.has_penalties();
  out.accepted.clear();
  for (size_t i = 0; i <= num_drafts; ++i) {
    auto r = s.sample(logits.subspan(i * vocab, vocab), step.params, window, step.num_prompt_penalty_tokens,
                      step.sample_index + i);
    if (i < num_drafts && r.token == drafts[i]) {
      if (has_penalties) window.push_back(r.token);
      out.accepted.push_back({r.token, r.logprob, std::move(r.top_logprobs)});
      continue;
    }
    out.token = r.token;
    out.logprob = r.logprob;
    out.top_logprobs = std::move(r.top_logprobs);
    return;
  }
}

int32_t accept_or_resample(std::span<const float> p, std::span<const float> q, int32_t draft, double accept_uniform,
                           double resample_uniform) {
  if (p.size() != q.size() || p.empty() || draft < 0 || static_cast<size_t>(draft) >= p.size()) {
    throw error(error_code::invalid_argument, "accept_or_resample: p and q must have equal, non-zero sizes and "
                                              "the draft must index them");
  }
  const double pd = p[static_cast<size_t>(draft)];
  const double qd = q[static_cast<size_t>(draft)];
  if (qd > 0 && accept_uniform * qd < pd) return draft;
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) total += std::max(0.0, double(p[i]) - double(q[i]));
  if (!(total > 0)) return draft;  // p == q: the residual is empty and acceptance was certain
  const double target = resample_uniform * total;
  double acc = 0;
  int32_t last = draft;
  for (size_t i = 0; i < p.size(); ++i) {
    const double w = std::max(0.0, double(p[i]) - double(q[i]));
    if (w <= 0) continue;
    last = static_cast<int32_t>(i);
    acc += w;
    if (target < acc) return last;
  }
  return last;
}

}  // namespace troupe
