// Whole-vocabulary passes of the CPU sampler: argmax, sums of tempered weights, and the
// partial selections (top-k, threshold, nucleus) that keep the filters off a full sort.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "troupe/model/sampler_math.hpp"

namespace troupe {

// The best logit and its token, ties to the lowest id; NaN never wins.
sampler_candidate argmax(std::span<const float> logits);

// Sum over logits >= cutoff of tempered_weight(logit, max_logit, inv_temperature).
double sum_tempered_weights(std::span<const float> logits, float max_logit,
                            float inv_temperature, float cutoff);
double sum_tempered_weights(std::span<const sampler_candidate> candidates, float max_logit,
                            float inv_temperature);

// Writes each token's tempered weight (0 below cutoff) to weights.
void tempered_weights(std::span<const float> logits, float max_logit, float inv_temperature,
                      float cutoff, std::span<float> weights);

// The index drawn from weights (unnormalized, not all zero) by inverse CDF at uniform in
// [0, 1), scanning in index order; only positive weights can be drawn.
size_t draw_by_weight(std::span<const float> weights, double uniform);

// The k best tokens (ranks_before), in no particular order; out is reused scratch.
void select_top(std::span<const float> logits, size_t k, std::vector<sampler_candidate>& out);

// Every token whose logit is >= cutoff, in id order.
void collect_at_least(std::span<const float> logits, float cutoff,
                      std::vector<sampler_candidate>& out);

// A logit below which no token can be in the top_p nucleus: such tokens together weigh
// less than (1 - top_p) / 2, so the tokens above it already hold more than top_p.
// total is the sum of the tempered weights of the whole vocabulary.
float nucleus_cutoff_logit(float max_logit, float temperature, double total, float top_p,
                           size_t vocab_size);

// Reorders candidates so that the nucleus comes first and returns its length: the
// smallest set of best-ranked candidates whose probability (weight / total) reaches top_p,
// or all candidates when they never reach it. The nucleus itself is left in no particular
// order. Expected linear time in the number of candidates.
size_t select_nucleus(std::vector<sampler_candidate>& candidates, double total, float top_p,
                      float max_logit, float inv_temperature);

}  // namespace troupe
