// The sampler's per-element math and its counter-based RNG, shared by the CPU sampler and
// the CUDA sampler so that both draw the same token from the same (seed, sample_index).
#pragma once
#include <cmath>
#include <cstdint>

#include "model/hd.hpp"

namespace troupe {

// One round of splitmix64: a bijective 64-bit mix with full avalanche.
TROUPE_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The uniform in [0, 1) for a sequence's sample_index-th draw: a pure function of
// (seed, sample_index), so a recomputed sequence redraws exactly the same values. Mixing the
// seed before combining it with the index keeps nearby seeds and nearby indexes unrelated.
TROUPE_HD double sample_uniform(uint64_t seed, uint64_t sample_index) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ splitmix64(sample_index ^ 0x5A3C0F1E2D4B6987ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// Repetition penalty, llama.cpp/HF style: pushes a seen token's logit towards "less likely"
// whatever its sign.
TROUPE_HD float apply_repetition_penalty(float logit, float penalty) {
  return logit > 0.0f ? logit / penalty : logit * penalty;
}

// OpenAI presence and frequency penalties for a token seen num_output_occurrences times in
// the output part of the window.
TROUPE_HD float apply_presence_frequency_penalty(float logit, int32_t num_output_occurrences,
                                                 float presence_penalty, float frequency_penalty) {
  if (num_output_occurrences <= 0) return logit;
  return logit - presence_penalty -
         frequency_penalty * static_cast<float>(num_output_occurrences);
}

// Unnormalized probability of a logit after temperature scaling, relative to the maximum
// logit (so the maximum weighs 1 and nothing overflows).
TROUPE_HD float tempered_weight(float logit, float max_logit, float inv_temperature) {
  return expf((logit - max_logit) * inv_temperature);
}

// min-p keeps p >= min_p * p_max, i.e. a logit >= max_logit + temperature * ln(min_p):
// one comparison per token, before any exponential.
TROUPE_HD float min_p_cutoff_logit(float max_logit, float min_p, float temperature) {
  if (min_p <= 0.0f) return -INFINITY;
  return max_logit + temperature * logf(min_p);
}

// A token and its logit; candidates rank by logit, ties to the lower id.
struct sampler_candidate {
  float logit;
  int32_t token;
};

TROUPE_HD bool ranks_before(const sampler_candidate& a, const sampler_candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
}

}  // namespace troupe
