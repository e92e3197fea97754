// The CPU sampler's whole-vocabulary passes and partial selections (see sampler_select.hpp).
#include "model/sampler_select.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace troupe {
namespace {

constexpr float negative_infinity = -std::numeric_limits<float>::infinity();

void keep_best(std::vector<sampler_candidate>& candidates, size_t k) {
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(k - 1),
                   candidates.end(), ranks_before);
  candidates.resize(k);
}

}  // namespace

sampler_candidate argmax(std::span<const float> logits) {
  sampler_candidate best{negative_infinity, 0};
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > best.logit) best = {logits[i], static_cast<int32_t>(i)};
  }
  return best;
}

double sum_tempered_weights(std::span<const float> logits, float max_logit,
                            float inv_temperature, float cutoff) {
  double total = 0.0;
  for (float logit : logits) {
    if (logit >= cutoff) total += tempered_weight(logit, max_logit, inv_temperature);
  }
  return total;
}

double sum_tempered_weights(std::span<const sampler_candidate> candidates, float max_logit,
                            float inv_temperature) {
  double total = 0.0;
  for (const auto& c : candidates) total += tempered_weight(c.logit, max_logit, inv_temperature);
  return total;
}

double tempered_weights(std::span<const float> logits, float max_logit, float inv_temperature,
                        float cutoff, std::span<float> weights) {
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float logit = logits[i];
    weights[i] = logit >= cutoff ? tempered_weight(logit, max_logit, inv_temperature) : 0.0f;
    total += weights[i];
  }
  return total;
}

// One pass with a buffer of 2k: whenever it fills, keep the k best and raise the admission
// floor just above the k-th, so most tokens cost a single comparison.
void select_top(std::span<const float> logits, size_t k, std::vector<sampler_candidate>& out) {
  out.clear();
  if (k == 0) return;
  const size_t capacity = std::max<size_t>(2 * k, 256);
  out.reserve(std::min(capacity, logits.size()));
  float floor = negative_infinity;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float logit = logits[i];
    if (!(logit >= floor)) continue;
    out.push_back({logit, static_cast<int32_t>(i)});
    if (out.size() == capacity) {
      keep_best(out, k);
      // Later tokens have higher ids, so one tying the k-th ranks after it: strictly above.
      floor = std::nextafter(out[k - 1].logit, std::numeric_limits<float>::infinity());
    }
  }
  if (out.size() > k) keep_best(out, k);
}

void collect_at_least(std::span<const float> logits, float cutoff,
                      std::vector<sampler_candidate>& out) {
  out.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] >= cutoff) out.push_back({logits[i], static_cast<int32_t>(i)});
  }
}

float nucleus_cutoff_logit(float max_logit, float temperature, double total, float top_p,
                           size_t vocab_size) {
  const double tau = 0.5 * (1.0 - static_cast<double>(top_p)) / static_cast<double>(vocab_size);
  return max_logit + temperature * static_cast<float>(std::log(tau) + std::log(total));
}

// Sorts chunks of growing size (nth_element, then sort within the chunk) until the running
// probability reaches top_p: a peaked distribution costs one small sort.
size_t sort_nucleus(std::vector<sampler_candidate>& candidates, double total, float top_p,
                    float max_logit, float inv_temperature) {
  const double target = static_cast<double>(top_p) * total;
  double cumulative = 0.0;
  size_t num_sorted = 0;
  size_t chunk = 32;
  while (num_sorted < candidates.size()) {
    const size_t end = std::min(candidates.size(), num_sorted + chunk);
    const auto first = candidates.begin() + static_cast<std::ptrdiff_t>(num_sorted);
    const auto last = candidates.begin() + static_cast<std::ptrdiff_t>(end);
    if (end < candidates.size()) std::nth_element(first, last, candidates.end(), ranks_before);
    std::sort(first, last, ranks_before);
    for (size_t i = num_sorted; i < end; ++i) {
      cumulative += tempered_weight(candidates[i].logit, max_logit, inv_temperature);
      if (cumulative >= target) return i + 1;
    }
    num_sorted = end;
    chunk *= 4;
  }
  return candidates.size();
}

}  // namespace troupe
