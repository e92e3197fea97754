// Beam search's selection rule, free of the scheduler: from each live beam's most likely next
// tokens, the next beams and the hypotheses that end. The scheduler runs it once every beam of
// a group has its distribution (scheduler_policy, "beam groups").
//
// The rule (as Hugging Face's BeamSearchScorer, with troupe's length): candidates are every
// live beam's 2w most likely tokens (by the model's raw log-softmax), ranked by the beam's
// summed log-probability plus the token's. Walking the ranking, a candidate that is a stop
// token ends a hypothesis if it ranks among the first w (and the output has min_tokens);
// any other becomes a next beam, until there are w. A hypothesis' score is its summed
// log-probability over length^length_penalty, length counting its output tokens with the
// stop token. The w best hypotheses are kept.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "troupe/engine/single_sequence.hpp"  // finish_reason
#include "troupe/model/backend.hpp"           // token_logprob

namespace troupe {

inline constexpr int32_t max_beam_width = 10;  // 2w candidates per beam: the most logprobs a step returns

struct beam_search_params {
  int32_t width = 0;            // 0: no beam search
  float length_penalty = 1.0f;  // > 0 favours longer hypotheses, < 0 shorter
  // true: stop once w hypotheses have ended; false: once no live beam can beat the worst of
  // them (its summed log-probability can only fall, so its best score is at its current length).
  bool early_stopping = false;
  bool operator==(const beam_search_params&) const = default;
};

// One finished beam: its output tokens (the stop token included when it ended on one), each
// token's log-probability, their sum, and its score.
struct beam_hypothesis {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  double cumulative_logprob = 0.0;
  double score = 0.0;
  finish_reason reason = finish_reason::stop;
  bool operator==(const beam_hypothesis&) const = default;
};

double beam_score(double cumulative_logprob, int32_t length, float length_penalty);

// One live beam as the rule sees it: its output so far, summed log-probability, and the
// model's most likely next tokens (at least 2w, most likely first).
struct live_beam {
  const std::vector<int32_t>* output = nullptr;
  const std::vector<float>* logprobs = nullptr;
  double cumulative_logprob = 0.0;
  const std::vector<token_logprob>* next = nullptr;
};

struct next_beam {
  int32_t parent = 0;  // index into the live beams
  int32_t token = -1;
  float logprob = 0.0f;
  double cumulative_logprob = 0.0;
};

class beam_search_state {
 public:
  // min_tokens: no hypothesis ends on a stop token before its output has this many tokens.
  beam_search_state(beam_search_params params, int32_t min_tokens) : params_(params), min_tokens_(min_tokens) {}

  // One round: the next beams (empty when the search is over) and the hypotheses that ended.
  // `max_output` is the longest output allowed (max_tokens, or what the context leaves): a
  // next beam reaching it ends as a hypothesis by length and the search is over.
  // is_stop(token): the request's end tokens (the model's, stop_token_ids, unless ignore_eos).
  template <class IsStop>
  std::vector<next_beam> advance(const std::vector<live_beam>& beams, int32_t max_output, IsStop is_stop);

  bool is_done() const { return is_done_; }
  // The hypotheses, best first (at most w).
  const std::vector<beam_hypothesis>& hypotheses() const { return hypotheses_; }

 private:
  void add(beam_hypothesis h);
  void add_ended(const live_beam& b, int32_t token, float logprob, double cumulative, finish_reason reason);

  beam_search_params params_;
  int32_t min_tokens_;
  std::vector<beam_hypothesis> hypotheses_;
  bool is_done_ = false;
};

template <class IsStop>
std::vector<next_beam> beam_search_state::advance(const std::vector<live_beam>& beams, int32_t max_output,
                                                  IsStop is_stop) {
  struct candidate {
    double cumulative;
    int32_t parent;
    int32_t rank_in_beam;
    int32_t token;
    float logprob;
  };
  std::vector<candidate> ranked;
  const auto width = static_cast<size_t>(params_.width);
  for (size_t b = 0; b < beams.size(); ++b) {
    const auto& next = *beams[b].next;
    for (size_t k = 0; k < next.size() && k < 2 * width; ++k) {
      ranked.push_back({beams[b].cumulative_logprob + next[k].logprob, static_cast<int32_t>(b), static_cast<int32_t>(k),
                        next[k].token, next[k].logprob});
    }
  }
  // Ties by beam, then by the beam's own ranking: deterministic whatever the sort.
  std::sort(ranked.begin(), ranked.end(), [](const candidate& x, const candidate& y) {
    if (x.cumulative != y.cumulative) return x.cumulative > y.cumulative;
    if (x.parent != y.parent) return x.parent < y.parent;
    return x.rank_in_beam < y.rank_in_beam;
  });
  if (ranked.size() > 2 * width) ranked.resize(2 * width);
  std::vector<next_beam> out;
  for (size_t rank = 0; rank < ranked.size() && out.size() < width; ++rank) {
    const candidate& c = ranked[rank];
    const live_beam& parent = beams[static_cast<size_t>(c.parent)];
    const auto length = static_cast<int32_t>(parent.output->size()) + 1;
    if (is_stop(c.token)) {
      if (length < min_tokens_ || rank >= width) continue;
      add_ended(parent, c.token, c.logprob, c.cumulative, finish_reason::stop);
      continue;
    }
    out.push_back({c.parent, c.token, c.logprob, c.cumulative});
  }
  if (out.empty()) {
    // Only stop tokens the output may not end on yet: the likeliest candidate ends it
    // anyway, so that a search always has a hypothesis.
    if (hypotheses_.empty() && !ranked.empty()) {
      const candidate& c = ranked.front();
      add_ended(beams[static_cast<size_t>(c.parent)], c.token, c.logprob, c.cumulative,
                is_stop(c.token) ? finish_reason::stop : finish_reason::length);
    }
    is_done_ = true;
    return out;
  }
  const auto length = static_cast<int32_t>(beams[static_cast<size_t>(out.front().parent)].output->size()) + 1;
  if (length >= max_output) {
    for (const next_beam& n : out) {
      add_ended(beams[static_cast<size_t>(n.parent)], n.token, n.logprob, n.cumulative_logprob, finish_reason::length);
    }
    is_done_ = true;
    return {};
  }
  if (hypotheses_.size() >= width) {
    const double best_live = beam_score(out.front().cumulative_logprob, length, params_.length_penalty);
    if (params_.early_stopping || hypotheses_.back().score >= best_live) {
      is_done_ = true;
      return {};
    }
  }
  return out;
}

}  // namespace troupe
