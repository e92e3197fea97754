// The CPU sampler: raw logprobs, penalties, logit bias, end-token bans (ignore_eos,
// min_tokens), then argmax or a filtered seeded draw.
// Filters work on a candidate set picked by partial selection, never a full vocabulary sort.
#include "troupe/model/sampler.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "troupe/model/error.hpp"
#include "troupe/model/sampler_math.hpp"
#include "troupe/model/sampler_select.hpp"

namespace troupe {
namespace {

constexpr float negative_infinity = -std::numeric_limits<float>::infinity();

// Reused across calls on one thread so that a step allocates nothing once warm.
struct sampler_scratch {
  std::vector<sampler_candidate> candidates;
  std::vector<float> weights;
  std::vector<std::pair<int32_t, float>> raw_logits;  // (token, logit before we touched it)
  std::vector<std::pair<int32_t, bool>> window;       // (token, is_output) of the penalty window
};

sampler_scratch& thread_scratch() {
  thread_local sampler_scratch scratch;
  return scratch;
}

[[noreturn]] void reject_token(const char* what, int32_t token, int32_t vocab_size) {
  throw error(error_code::invalid_argument, std::string(what) + " must be in [0, " +
                                                std::to_string(vocab_size) + "), got " +
                                                std::to_string(token));
}

// Overwrites logits[token], recording the old value; a token's first record holds its raw
// logit, which raw_logit finds for the reported logprob.
void set_logit(std::span<float> logits, int32_t token, float value, sampler_scratch& scratch) {
  scratch.raw_logits.emplace_back(token, logits[token]);
  logits[token] = value;
}

float raw_logit(std::span<const float> logits, int32_t token, const sampler_scratch& scratch) {
  for (const auto& [touched, raw] : scratch.raw_logits) {
    if (touched == token) return raw;
  }
  return logits[token];
}

// Repetition penalty over the whole window; presence and frequency over its output part.
void apply_penalties(std::span<float> logits, const sampling_params& params,
                     std::span<const int32_t> penalty_tokens, int32_t num_prompt_tokens,
                     sampler_scratch& scratch) {
  const bool has_repetition = params.repetition_penalty != 1.0f;
  const bool has_openai = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  if (!has_repetition && !has_openai) return;
  const int64_t num_tokens = static_cast<int64_t>(penalty_tokens.size());
  const int64_t first = params.penalty_last_n < 0
                            ? 0
                            : std::max<int64_t>(0, num_tokens - params.penalty_last_n);
  auto& window = scratch.window;
  window.clear();
  for (int64_t i = first; i < num_tokens; ++i) {
    const int32_t token = penalty_tokens[static_cast<size_t>(i)];
    if (token < 0 || token >= static_cast<int32_t>(logits.size())) {
      reject_token("penalty token", token, static_cast<int32_t>(logits.size()));
    }
    window.emplace_back(token, i >= num_prompt_tokens);
  }
  std::sort(window.begin(), window.end());
  for (size_t i = 0; i < window.size();) {
    const int32_t token = window[i].first;
    int32_t num_output = 0;
    for (; i < window.size() && window[i].first == token; ++i) num_output += window[i].second;
    float logit = logits[token];
    if (has_repetition) logit = apply_repetition_penalty(logit, params.repetition_penalty);
    logit = apply_presence_frequency_penalty(logit, num_output, params.presence_penalty,
                                             params.frequency_penalty);
    set_logit(logits, token, logit, scratch);
  }
}

struct log_softmax_base {
  float max_logit;
  float log_sum_exp;  // log-softmax(x) = x - log_sum_exp
};

log_softmax_base raw_log_softmax(std::span<const float> logits) {
  const float max_logit = argmax(logits).logit;
  if (!(max_logit > negative_infinity)) return {max_logit, max_logit};
  const double sum = sum_tempered_weights(logits, max_logit, 1.0f, negative_infinity);
  return {max_logit, max_logit + static_cast<float>(std::log(sum))};
}

std::vector<token_logprob> top_raw_logprobs(std::span<const float> logits, int32_t n,
                                            float log_sum_exp, sampler_scratch& scratch) {
  std::vector<token_logprob> top;
  if (n <= 0) return top;
  auto& best = scratch.candidates;
  select_top(logits, std::min<size_t>(static_cast<size_t>(n), logits.size()), best);
  std::sort(best.begin(), best.end(), ranks_before);
  top.reserve(best.size());
  for (const auto& c : best) top.push_back({c.token, c.logit - log_sum_exp});
  return top;
}

// Above this many kept tokens, weighing the whole vocabulary beats sorting them by id.
constexpr size_t max_compact_draw = 2048;

// Draws among the kept candidates (min-p still to apply), scanning them in token id order
// like every other path.
int32_t draw_kept(std::span<const float> logits, std::span<sampler_candidate> kept,
                  float max_logit, float inv_temperature, float min_p_cutoff, double uniform,
                  sampler_scratch& scratch) {
  auto& weights = scratch.weights;
  if (kept.size() <= max_compact_draw) {
    std::sort(kept.begin(), kept.end(),
              [](const auto& a, const auto& b) { return a.token < b.token; });
    weights.clear();
    for (const auto& c : kept) {
      const bool is_kept = c.logit >= min_p_cutoff;
      weights.push_back(is_kept ? tempered_weight(c.logit, max_logit, inv_temperature) : 0.0f);
    }
    return kept[draw_by_weight(weights, uniform)].token;
  }
  // The kept set is every token ranking at or before its worst member.
  const sampler_candidate worst = *std::min_element(
      kept.begin(), kept.end(), [](const auto& a, const auto& b) { return ranks_before(b, a); });
  weights.resize(logits.size());
  tempered_weights(logits, max_logit, inv_temperature, std::max(min_p_cutoff, worst.logit),
                   weights);
  for (size_t i = static_cast<size_t>(worst.token) + 1; i < logits.size(); ++i) {
    if (logits[i] == worst.logit) weights[i] = 0.0f;  // ties after the worst rank below it
  }
  return static_cast<int32_t>(draw_by_weight(weights, uniform));
}

// What temperature, top-k, top-p and min-p keep of the (penalized) logits, for a draw and
// for the distribution it draws from alike.
struct filter_result {
  float max_logit;
  int32_t best;                      // the argmax, ties to the lowest id
  float inv_temperature;
  float min_p_cutoff;                // kept tokens below it weigh nothing
  bool is_filtered;                  // top-k or top-p is on: `kept` holds the candidates
  std::span<sampler_candidate> kept; // min-p still to apply
};

filter_result filter(std::span<const float> logits, const sampling_params& params, sampler_scratch& scratch) {
  const auto vocab_size = logits.size();
  const auto [max_logit, best] = argmax(logits);
  filter_result f{max_logit, best, 1.0f / params.temperature, 0.0f, false, {}};
  if (!(max_logit > negative_infinity)) return f;  // everything banned: nothing to weigh
  const float temperature = params.temperature;
  f.min_p_cutoff = min_p_cutoff_logit(max_logit, params.min_p, temperature);
  const bool has_top_k = params.top_k > 0 && static_cast<size_t>(params.top_k) < vocab_size;
  const bool has_top_p = params.top_p < 1.0f;
  if (!has_top_k && !has_top_p) return f;
  auto& candidates = scratch.candidates;
  double total = 0.0;
  if (has_top_k) {
    select_top(logits, static_cast<size_t>(params.top_k), candidates);
    if (has_top_p) total = sum_tempered_weights(candidates, max_logit, f.inv_temperature);
  } else {
    total = sum_tempered_weights(logits, max_logit, f.inv_temperature, negative_infinity);
    collect_at_least(logits,
                     std::max(f.min_p_cutoff, nucleus_cutoff_logit(max_logit, temperature, total,
                                                                   params.top_p, vocab_size)),
                     candidates);
  }
  const size_t num_kept =
      has_top_p ? select_nucleus(candidates, total, params.top_p, max_logit, f.inv_temperature)
                : candidates.size();
  f.is_filtered = true;
  f.kept = std::span(candidates).first(num_kept);
  return f;
}

// Temperature, top-k, top-p, min-p and the seeded draw over the (penalized) logits.
int32_t draw(std::span<const float> logits, const sampling_params& params, double uniform,
             sampler_scratch& scratch) {
  const filter_result f = filter(logits, params, scratch);
  if (!(f.max_logit > negative_infinity)) return f.best;
  if (f.is_filtered) {
    return draw_kept(logits, f.kept, f.max_logit, f.inv_temperature, f.min_p_cutoff, uniform, scratch);
  }
  // No top-k, no top-p: weigh the whole vocabulary, min-p by cutoff.
  auto& weights = scratch.weights;
  weights.resize(logits.size());
  tempered_weights(logits, f.max_logit, f.inv_temperature, f.min_p_cutoff, weights);
  return static_cast<int32_t>(draw_by_weight(weights, uniform));
}

}  // namespace

sampler::sampler(int32_t vocab_size, std::vector<int32_t> eog_ids)
    : vocab_size_(vocab_size), eog_ids_(std::move(eog_ids)) {
  if (vocab_size_ <= 0) {
    throw error(error_code::invalid_argument,
                "sampler vocab_size must be positive, got " + std::to_string(vocab_size_));
  }
  for (int32_t id : eog_ids_) {
    if (id < 0 || id >= vocab_size_) reject_token("sampler eog id", id, vocab_size_);
  }
}

sample_result sampler::sample(std::span<float> logits, const sampling_params& params,
                              std::span<const int32_t> penalty_tokens, int32_t num_prompt_tokens,
                              uint64_t sample_index, const std::vector<uint64_t>* allowed) const {
  check_size(logits);
  sampler_scratch& scratch = thread_scratch();
  scratch.raw_logits.clear();
  const log_softmax_base raw = raw_log_softmax(logits);
  sample_result result;
  result.top_logprobs = top_raw_logprobs(logits, params.num_logprobs, raw.log_sum_exp, scratch);
  modify(logits, params, penalty_tokens, num_prompt_tokens, sample_index);
  if (allowed != nullptr) mask_disallowed(logits, *allowed);

  if (params.is_greedy() || params.top_k == 1) {
    result.token = argmax(logits).token;
  } else {
    result.token = draw(logits, params, sample_uniform(params.seed, sample_index), scratch);
  }
  result.logprob = raw_logit(logits, result.token, scratch) - raw.log_sum_exp;
  return result;
}

void sampler::distribution(std::span<float> logits, const sampling_params& params,
                           std::span<const int32_t> penalty_tokens, int32_t num_prompt_tokens,
                           uint64_t sample_index, std::vector<float>& probs) const {
  check_size(logits);
  sampler_scratch& scratch = thread_scratch();
  scratch.raw_logits.clear();
  modify(logits, params, penalty_tokens, num_prompt_tokens, sample_index);
  probs.assign(logits.size(), 0.0f);
  const filter_result f = filter(logits, params, scratch);
  if (params.is_greedy() || params.top_k == 1 || !(f.max_logit > negative_infinity)) {
    probs[static_cast<size_t>(f.best)] = 1.0f;
    return;
  }
  if (f.is_filtered) {
    for (const auto& c : f.kept) {
      if (c.logit >= f.min_p_cutoff) {
        probs[static_cast<size_t>(c.token)] = tempered_weight(c.logit, f.max_logit, f.inv_temperature);
      }
    }
  } else {
    tempered_weights(logits, f.max_logit, f.inv_temperature, f.min_p_cutoff, probs);
  }
  double total = 0.0;
  for (float w : probs) total += w;
  for (auto& w : probs) w = static_cast<float>(w / total);
}

void sampler::mask_disallowed(std::span<float> logits, const std::vector<uint64_t>& allowed) const {
  if (allowed.size() * 64 < logits.size()) {
    throw error(error_code::invalid_argument, "the allowed-token mask covers " + std::to_string(allowed.size() * 64) +
                                                  " ids, fewer than the vocabulary's " + std::to_string(logits.size()));
  }
  const auto is_allowed = [&](size_t id) { return (allowed[id >> 6] >> (id & 63)) & 1; };
  // The sampled token is always an allowed one, so the masked logits need no record of
  // their raw values (raw_logit reads the record only for the sampled token). A grammar's
  // mask is mostly whole words, all allowed (inside a string) or none (between values):
  // those take one pass without a per-bit test.
  bool has_candidate = false;
  float* const row = logits.data();
  for (size_t w = 0; w < allowed.size(); ++w) {
    const size_t first = w * 64;
    if (first >= logits.size()) break;
    const size_t last = std::min(first + 64, logits.size());
    const uint64_t word = allowed[w];
    if (word == 0) {
      std::fill(row + first, row + last, negative_infinity);
      continue;
    }
    for (uint64_t left = word; left != 0 && !has_candidate; left &= left - 1) {
      const size_t id = first + static_cast<size_t>(std::countr_zero(left));
      if (id >= last) break;
      has_candidate = row[id] > negative_infinity;
    }
    for (uint64_t banned = ~word; banned != 0; banned &= banned - 1) {
      const size_t id = first + static_cast<size_t>(std::countr_zero(banned));
      if (id >= last) break;
      row[id] = negative_infinity;
    }
  }
  if (has_candidate) return;
  // The grammar allows only what the request banned (an end token before min_tokens, or
  // under ignore_eos): the grammar wins, with the banned tokens' values before the ban.
  const auto& touched = thread_scratch().raw_logits;
  for (auto it = touched.rbegin(); it != touched.rend(); ++it) {
    if (is_allowed(static_cast<size_t>(it->first))) logits[static_cast<size_t>(it->first)] = it->second;
  }
}

void sampler::check_size(std::span<const float> logits) const {
  if (logits.size() != static_cast<size_t>(vocab_size_)) {
    throw error(error_code::invalid_argument,
                "sampler logits must hold vocab_size = " + std::to_string(vocab_size_) +
                    " values, got " + std::to_string(logits.size()));
  }
}

void sampler::modify(std::span<float> logits, const sampling_params& params, std::span<const int32_t> penalty_tokens,
                     int32_t num_prompt_tokens, uint64_t sample_index) const {
  sampler_scratch& scratch = thread_scratch();
  apply_penalties(logits, params, penalty_tokens, num_prompt_tokens, scratch);
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0 || token >= vocab_size_) reject_token("logit_bias token id", token, vocab_size_);
    set_logit(logits, token, logits[token] + bias, scratch);
  }
  // End tokens a draw may not pick: end-of-generation ids under ignore_eos, and before
  // min_tokens those and the stop tokens (gpu::ban_end_tokens does the same on the device).
  const bool can_end = can_sample_end(sample_index, params.min_tokens);
  if (params.ignore_eos || !can_end) {
    for (int32_t id : eog_ids_) set_logit(logits, id, negative_infinity, scratch);
  }
  if (!can_end) {
    for (int32_t id : params.stop_token_ids) {
      if (id < 0 || id >= vocab_size_) reject_token("stop_token_ids token id", id, vocab_size_);
      set_logit(logits, id, negative_infinity, scratch);
    }
  }
}

}  // namespace troupe
