// The sampler's per-element math and its counter-based RNG, shared by the CPU sampler and
// the CUDA sampler so that both draw the same token from the same (seed, sample_index).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "troupe/model/hd.hpp"

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
  const uint64_t bits =
      splitmix64(splitmix64(seed) ^ splitmix64(sample_index ^ 0x5A3C0F1E2D4B6987ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// min_tokens: whether a sequence's sample_index-th draw (0-based: the number of output tokens
// before it) may pick an end-of-generation or stop token. Before min_tokens outputs both
// samplers ban them, so a stop token never appears early and the stop rules that the
// scheduler, the worker and the request apply to a sampled token need not know min_tokens.
TROUPE_HD bool can_sample_end(uint64_t sample_index, int32_t min_tokens) {
  return min_tokens <= 0 || sample_index >= static_cast<uint64_t>(min_tokens);
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

// x >= y, false when either is NaN. On the host the quiet comparison raises no FP exception,
// which lets the compiler turn selects on it into vector blends (GCC keeps trapping math on).
TROUPE_HD bool is_at_least(float x, float y) {
#if defined(__CUDA_ARCH__)
  return x >= y;
#else
  return __builtin_isgreaterequal(x, y);
#endif
}

// e^x for -87 <= x <= 0 within about 2.5e-7 relative; x below -87 (or NaN) is taken as -87
// and x above 0 as 0. Call-free and with each select used once, so that the CPU loops over
// the vocabulary vectorize (a second use lets GCC thread the select back into branches),
// and bit-identical on the host and the device.
TROUPE_HD float sampler_exp(float x) {
  x = is_at_least(x, -87.0f) ? x : -87.0f;
  x = is_at_least(x, 0.0f) ? 0.0f : x;
  // Round x / ln 2 to the nearest integer by the 1.5 * 2^23 trick (no rounding call).
  const float rounder = 12582912.0f;
  const float n = (x * 1.44269504088896341f + rounder) - rounder;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t scale_bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// Scaled logits this far below the best weigh nothing: exactly 0, so a banned (-inf) token
// can never be drawn.
constexpr float negligible_scaled_logit = -87.0f;

// Unnormalized probability of a logit after temperature scaling, relative to the maximum
// logit (so the maximum weighs 1 and nothing overflows).
TROUPE_HD float tempered_weight(float logit, float max_logit, float inv_temperature) {
  const float x = (logit - max_logit) * inv_temperature;
  return is_at_least(x, negligible_scaled_logit) ? sampler_exp(x) : 0.0f;
}

// The lowest logit tempered_weight does not treat as negligible, for vocabulary loops that
// fold it into their own cutoff instead of branching per token.
TROUPE_HD float negligible_logit_below(float max_logit, float temperature) {
  return max_logit + negligible_scaled_logit * temperature;
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
