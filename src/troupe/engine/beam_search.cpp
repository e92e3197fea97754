// beam_search_state: the hypotheses kept, best first, and their scores.
#include "troupe/engine/beam_search.hpp"

#include <cmath>

namespace troupe {

double beam_score(double cumulative_logprob, int32_t length, float length_penalty) {
  return cumulative_logprob / std::pow(static_cast<double>(std::max(length, 1)), static_cast<double>(length_penalty));
}

void beam_search_state::add_ended(const live_beam& b, int32_t token, float logprob, double cumulative,
                                  finish_reason reason) {
  beam_hypothesis h;
  h.tokens = *b.output;
  h.tokens.push_back(token);
  h.logprobs = *b.logprobs;
  h.logprobs.push_back(logprob);
  h.cumulative_logprob = cumulative;
  h.score = beam_score(cumulative, static_cast<int32_t>(h.tokens.size()), params_.length_penalty);
  h.reason = reason;
  add(std::move(h));
}

void beam_search_state::add(beam_hypothesis h) {
  // Stable: an earlier hypothesis stays ahead of a later one with the same score.
  const auto at = std::upper_bound(hypotheses_.begin(), hypotheses_.end(), h.score,
                                   [](double score, const beam_hypothesis& x) { return score > x.score; });
  hypotheses_.insert(at, std::move(h));
  if (hypotheses_.size() > static_cast<size_t>(params_.width)) hypotheses_.pop_back();
}

}  // namespace troupe
