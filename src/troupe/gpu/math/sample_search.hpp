// The sampling filters as searches over the vocabulary, shared by the CUDA sampler and its
// CPU test. The CPU sampler (model/sampler.cpp) selects candidates by partial sorting; a
// thread block cannot sort cheaply, so here every filter is a boundary found by bisection,
// each probe one reduction over the vocabulary:
//   top-k    the k-th best (logit, token) rank key,
//   top-p    the best-ranked key whose prefix of the ranking holds top_p of the mass,
//   min-p    a logit cutoff (model/sampler_math.hpp),
//   the draw the first token id whose running kept weight passes uniform * total.
// The kept set and the inverse-CDF draw in token id order are the CPU sampler's; only the
// order of floating-point sums differs. The algorithm is written against a reducer R that
// the caller supplies: a serial loop on the CPU, a block-wide reduction on the GPU (where
// every thread of the block runs the same search and gets the same reduced values).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "troupe/model/hd.hpp"
#include "troupe/model/sampler_math.hpp"

// Host-device templates that call the reducer's device-only functions on the GPU.
#if defined(__CUDACC__)
#define TROUPE_HD_TEMPLATE _Pragma("nv_exec_check_disable")
#else
#define TROUPE_HD_TEMPLATE
#endif

namespace troupe::gpu {

// A total order on (logit, token) as unsigned keys: a larger key ranks before
// (ranks_before: higher logit, ties to the lower id). NaN ranks below everything, and
// -0.0 equals +0.0, as float comparison has it.
TROUPE_HD uint32_t ordered_logit_bits(float logit) {
  uint32_t b;
  memcpy(&b, &logit, sizeof b);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0;  // NaN
  if (b == 0x80000000u) b = 0;                     // -0.0
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

TROUPE_HD uint64_t rank_key(float logit, int32_t token) {
  return ((uint64_t)ordered_logit_bits(logit) << 32) | (uint64_t)(0xffffffffu - (uint32_t)token);
}

TROUPE_HD int32_t key_token(uint64_t key) { return (int32_t)(0xffffffffu - (uint32_t)(key & 0xffffffffu)); }

TROUPE_HD float key_logit(uint64_t key) {
  uint32_t b = (uint32_t)(key >> 32);
  b = (b & 0x80000000u) ? (b & 0x7fffffffu) : ~b;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

// What decides whether a token is kept and how much it weighs.
struct sample_filter {
  uint64_t boundary = 0;               // keys below it are cut (top-k, top-p)
  float min_p_cutoff = -INFINITY;      // logits below it are cut (min-p)
  float max_logit = 0.0f;
  float inv_temperature = 1.0f;
};

TROUPE_HD float kept_weight(float logit, int32_t token, const sample_filter& f) {
  if (rank_key(logit, token) < f.boundary || !(logit >= f.min_p_cutoff)) return 0.0f;
  return tempered_weight(logit, f.max_logit, f.inv_temperature);
}

// The parameters the filters need, flattened (sampling_params holds vectors).
struct filter_params {
  float temperature = 1.0f;
  float top_p = 1.0f;
  float min_p = 0.0f;
  int32_t top_k = 0;
};

// The reducer R provides, each a reduction over the vocabulary of the (penalized) logits:
//   uint64_t max_key()                               the best rank key
//   int64_t count_at_least(uint64_t key)             tokens whose key >= key
//   double weight_at_least(uint64_t key, float max_logit, float inv_temperature)
//                                                    sum of tempered weights of those tokens
//   double kept_weight_before(int32_t end, const sample_filter&)
//                                                    sum of kept_weight over ids [0, end)

// The largest key with at least k tokens at or above it: the k-th best token's key.
TROUPE_HD_TEMPLATE
template <class R>
TROUPE_HD uint64_t kth_best_key(R& r, int64_t k, uint64_t best_key) {
  uint64_t lo = 0, hi = best_key;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2 + 1;
    if (r.count_at_least(mid) >= k) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// The largest key >= floor_key whose prefix of the ranking holds at least target weight:
// the end of the nucleus (the shortest best-ranked prefix that reaches top_p).
TROUPE_HD_TEMPLATE
template <class R>
TROUPE_HD uint64_t nucleus_key(R& r, double target, uint64_t floor_key, uint64_t best_key, float max_logit,
                               float inv_temperature) {
  uint64_t lo = floor_key, hi = best_key;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2 + 1;
    if (r.weight_at_least(mid, max_logit, inv_temperature) >= target) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// The kept set for the penalized logits: top-k, then top-p within it, then min-p.
TROUPE_HD_TEMPLATE
template <class R>
TROUPE_HD sample_filter make_filter(R& r, const filter_params& p, int32_t vocab_size, uint64_t best_key) {
  sample_filter f;
  f.max_logit = key_logit(best_key);
  f.inv_temperature = 1.0f / p.temperature;
  f.min_p_cutoff = min_p_cutoff_logit(f.max_logit, p.min_p, p.temperature);
  const bool has_top_k = p.top_k > 0 && p.top_k < vocab_size;
  if (has_top_k) f.boundary = kth_best_key(r, p.top_k, best_key);
  if (p.top_p < 1.0f) {
    const double total = r.weight_at_least(f.boundary, f.max_logit, f.inv_temperature);
    f.boundary = nucleus_key(r, (double)p.top_p * total, f.boundary, best_key, f.max_logit, f.inv_temperature);
  }
  return f;
}

// The token drawn at `uniform` in [0, 1): the first id whose running kept weight exceeds
// uniform * (total kept weight). Greedy (temperature <= 0) and top_k == 1 take the best.
TROUPE_HD_TEMPLATE
template <class R>
TROUPE_HD int32_t sample_token(R& r, const filter_params& p, int32_t vocab_size, double uniform) {
  const uint64_t best_key = r.max_key();
  const int32_t best = key_token(best_key);
  if (p.temperature <= 0.0f || p.top_k == 1) return best;
  if (!(key_logit(best_key) > -INFINITY)) return best;  // everything banned: nothing to weigh
  const sample_filter f = make_filter(r, p, vocab_size, best_key);
  const double total = r.kept_weight_before(vocab_size, f);
  const double target = uniform * total;
  if (!(total > target)) return best;  // no weight, or uniform * total rounded up to total
  int32_t lo = 1, hi = vocab_size;  // smallest end whose prefix weight exceeds target
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (r.kept_weight_before(mid, f) > target) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo - 1;
}

// log-softmax base of the raw logits: log-softmax(x) = x - log_sum_exp.
TROUPE_HD_TEMPLATE
template <class R>
TROUPE_HD float raw_log_sum_exp(R& r) {
  const float max_logit = key_logit(r.max_key());
  if (!(max_logit > -INFINITY)) return max_logit;
  return max_logit + (float)log(r.weight_at_least(0, max_logit, 1.0f));
}

// The repetition, presence and frequency penalties over the window of recent tokens, as the
// CPU sampler applies them: each distinct token once, presence and frequency counting only
// its occurrences in the output part (index >= num_prompt_tokens). Serial: one thread.
TROUPE_HD void apply_penalty_window(float* logits, const int32_t* tokens, int32_t num_tokens,
                                    int32_t num_prompt_tokens, int32_t penalty_last_n, float repetition_penalty,
                                    float presence_penalty, float frequency_penalty) {
  const bool has_repetition = repetition_penalty != 1.0f;
  if (!has_repetition && presence_penalty == 0.0f && frequency_penalty == 0.0f) return;
  const int32_t first = penalty_last_n < 0 ? 0 : (num_tokens > penalty_last_n ? num_tokens - penalty_last_n : 0);
  for (int32_t i = first; i < num_tokens; ++i) {
    const int32_t token = tokens[i];
    bool seen = false;
    for (int32_t j = first; j < i && !seen; ++j) seen = tokens[j] == token;
    if (seen) continue;
    int32_t num_output = 0;
    for (int32_t j = i; j < num_tokens; ++j) num_output += (tokens[j] == token && j >= num_prompt_tokens) ? 1 : 0;
    float logit = logits[token];
    if (has_repetition) logit = apply_repetition_penalty(logit, repetition_penalty);
    logits[token] = apply_presence_frequency_penalty(logit, num_output, presence_penalty, frequency_penalty);
  }
}

// The end tokens a draw may not pick, set to -inf: the end-of-generation ids under ignore_eos,
// and, before min_tokens (can_end false, from can_sample_end), those and the request's stop
// token ids. The CPU sampler bans the same (model/sampler.cpp).
TROUPE_HD void ban_end_tokens(float* logits, const int32_t* eog_ids, int32_t num_eog, const int32_t* stop_ids,
                              int32_t num_stop, bool ignore_eos, bool can_end) {
  if (ignore_eos || !can_end) {
    for (int32_t i = 0; i < num_eog; ++i) logits[eog_ids[i]] = -INFINITY;
  }
  if (!can_end) {
    for (int32_t i = 0; i < num_stop; ++i) logits[stop_ids[i]] = -INFINITY;
  }
}

}  // namespace troupe::gpu
