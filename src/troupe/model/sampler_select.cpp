// The CPU sampler's whole-vocabulary passes and partial selections (see sampler_select.hpp).
#include "troupe/model/sampler_select.hpp"

#include "troupe/model/sampler_simd.hpp"

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

// Whole-vocabulary reductions keep num_lanes independent float accumulators, a fixed
// association the compiler may vectorize: the result is the same on every run, which the
// seeded draw needs.
constexpr size_t num_lanes = 16;

sampler_candidate argmax(std::span<const float> logits) {
  float lanes[num_lanes];
  std::fill(std::begin(lanes), std::end(lanes), negative_infinity);
  const size_t num_whole = logits.size() - logits.size() % num_lanes;
  for (size_t i = 0; i < num_whole; i += num_lanes) {
    for (size_t j = 0; j < num_lanes; ++j) {
      lanes[j] = __builtin_isgreater(logits[i + j], lanes[j]) ? logits[i + j] : lanes[j];
    }
  }
  float max_logit = negative_infinity;
  for (float lane : lanes) max_logit = lane > max_logit ? lane : max_logit;
  for (size_t i = num_whole; i < logits.size(); ++i) {
    max_logit = logits[i] > max_logit ? logits[i] : max_logit;
  }
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == max_logit) return {max_logit, static_cast<int32_t>(i)};
  }
  return {negative_infinity, 0};  // no logit above -inf (all -inf or NaN)
}

double sum_tempered_weights(std::span<const float> logits, float max_logit,
                            float inv_temperature, float cutoff) {
  cutoff = std::max(cutoff, negligible_logit_below(max_logit, 1.0f / inv_temperature));
  float4 lanes[num_lanes / 4] = {};
  const size_t num_whole = logits.size() - logits.size() % num_lanes;
  for (size_t i = 0; i < num_whole; i += num_lanes) {
    for (size_t j = 0; j < num_lanes / 4; ++j) {
      lanes[j] += tempered_weight4(load_float4(&logits[i + 4 * j]), max_logit, inv_temperature,
                                   cutoff);
    }
  }
  double total = 0.0;
  for (const float4& lane : lanes) total += lane[0] + lane[1] + lane[2] + lane[3];
  for (size_t i = num_whole; i < logits.size(); ++i) {
    if (logits[i] >= cutoff) total += sampler_exp((logits[i] - max_logit) * inv_temperature);
  }
  return total;
}

double sum_tempered_weights(std::span<const sampler_candidate> candidates, float max_logit,
                            float inv_temperature) {
  double total = 0.0;
  for (const auto& c : candidates) total += tempered_weight(c.logit, max_logit, inv_temperature);
  return total;
}

void tempered_weights(std::span<const float> logits, float max_logit, float inv_temperature,
                      float cutoff, std::span<float> weights) {
  cutoff = std::max(cutoff, negligible_logit_below(max_logit, 1.0f / inv_temperature));
  const size_t num_whole = logits.size() - logits.size() % 4;
  for (size_t i = 0; i < num_whole; i += 4) {
    store_float4(&weights[i], tempered_weight4(load_float4(&logits[i]), max_logit,
                                               inv_temperature, cutoff));
  }
  for (size_t i = num_whole; i < logits.size(); ++i) {
    const float weight = sampler_exp((logits[i] - max_logit) * inv_temperature);
    weights[i] = logits[i] >= cutoff ? weight : 0.0f;
  }
}

namespace {

constexpr size_t block_size = 256;

float block_sum(std::span<const float> weights) {
  float lanes[num_lanes] = {};
  const size_t num_whole = weights.size() - weights.size() % num_lanes;
  for (size_t i = 0; i < num_whole; i += num_lanes) {
    for (size_t j = 0; j < num_lanes; ++j) lanes[j] += weights[i + j];
  }
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  for (size_t i = num_whole; i < weights.size(); ++i) sum += weights[i];
  return sum;
}

}  // namespace

// Two levels, blocks then elements, with the total summed exactly as the scan sums it; if
// rounding still carries the target past every weight, the last positive weight wins.
size_t draw_by_weight(std::span<const float> weights, double uniform) {
  const auto block_at = [&](size_t first) {
    return weights.subspan(first, std::min(block_size, weights.size() - first));
  };
  double total = 0.0;
  size_t last_nonempty = 0;
  for (size_t first = 0; first < weights.size(); first += block_size) {
    const float sum = block_sum(block_at(first));
    total += sum;
    if (sum > 0.0f) last_nonempty = first;
  }
  const double target = uniform * total;
  double cumulative = 0.0;
  for (size_t first = 0; first < weights.size(); first += block_size) {
    const auto block = block_at(first);
    const double block_total = block_sum(block);
    if (cumulative + block_total > target) {
      for (size_t i = 0; i < block.size(); ++i) {
        cumulative += block[i];
        if (block[i] > 0.0f && cumulative > target) return first + i;
      }
      last_nonempty = first;
      break;
    }
    cumulative += block_total;
  }
  const auto block = block_at(last_nonempty);
  for (size_t i = block.size(); i-- > 0;) {
    if (block[i] > 0.0f) return last_nonempty + i;
  }
  return 0;  // no positive weight at all; callers never pass that
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

// Quickselect by probability mass: halve the undecided range [lo, hi) with nth_element
// until it is small, moving its better half into the nucleus when that half's mass is not
// yet enough; then sort what is left and scan.
size_t select_nucleus(std::vector<sampler_candidate>& candidates, double total, float top_p,
                      float max_logit, float inv_temperature) {
  const double target = static_cast<double>(top_p) * total;
  const auto at = [&](size_t i) { return candidates.begin() + static_cast<std::ptrdiff_t>(i); };
  const auto mass = [&](size_t first, size_t last) {
    return sum_tempered_weights(std::span(candidates).subspan(first, last - first), max_logit,
                                inv_temperature);
  };
  double mass_before = 0.0;  // of candidates [0, lo), all in the nucleus
  size_t lo = 0;
  size_t hi = candidates.size();
  while (hi - lo > 64) {
    const size_t mid = lo + (hi - lo) / 2;
    std::nth_element(at(lo), at(mid), at(hi), ranks_before);
    const double upper_mass = mass(lo, mid);
    if (mass_before + upper_mass >= target) {
      hi = mid;
    } else {
      mass_before += upper_mass;
      lo = mid;
    }
  }
  std::sort(at(lo), at(hi), ranks_before);
  for (size_t i = lo; i < hi; ++i) {
    mass_before += tempered_weight(candidates[i].logit, max_logit, inv_temperature);
    if (mass_before >= target) return i + 1;
  }
  return hi;
}

}  // namespace troupe
