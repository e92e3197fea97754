// sampler::distribution: the probabilities sample() draws from, checked against sample()
// itself (chi-square over 100,000 seeded draws per setting: temperature, top-k, top-p,
// min-p, penalties, logit bias) and exactly where the answer is known (greedy, bans, the
// size of a top-k set).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <random>
#include <vector>

#include "troupe/model/sampler.hpp"

using namespace troupe;

namespace {

constexpr int32_t vocab = 300;
constexpr int32_t eog = 7;

std::vector<float> random_logits(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 2.0f);
  std::vector<float> l(vocab);
  for (auto& x : l) x = n(rng);
  return l;
}

std::vector<float> distribution_of(const sampler& s, const std::vector<float>& logits, const sampling_params& p,
                                   const std::vector<int32_t>& window, uint64_t sample_index = 5) {
  std::vector<float> scratch = logits, probs;
  s.distribution(scratch, p, window, 0, sample_index, probs);
  return probs;
}

// Pearson's statistic over categories with an expected count of at least 5 (the rest
// pooled), against the Wilson-Hilferty 1e-4 quantile for its degrees of freedom.
bool fits(const std::vector<int64_t>& counts, const std::vector<float>& probs, int64_t n, double& stat, int& df) {
  stat = 0;
  df = -1;
  double pooled_expected = 0;
  int64_t pooled = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double e = probs[i] * static_cast<double>(n);
    if (probs[i] == 0.0f && counts[i] > 0) return false;  // drawn where the distribution says never
    if (e < 5) {
      pooled_expected += e;
      pooled += counts[i];
      continue;
    }
    stat += (counts[i] - e) * (counts[i] - e) / e;
    ++df;
  }
  if (pooled_expected >= 5) {
    stat += (pooled - pooled_expected) * (pooled - pooled_expected) / pooled_expected;
    ++df;
  }
  const double a = 2.0 / (9.0 * df);
  return stat < df * std::pow(1.0 - a + 3.719 * std::sqrt(a), 3.0);
}

}  // namespace

TEST_CASE("sampler distribution: what sample() draws follows it, under every filter and penalty") {
  const sampler s(vocab, {eog});
  const auto logits = random_logits(1);
  const std::vector<int32_t> window = {3, 3, 9, 12, 40, 41, 41, 41};
  struct setting {
    const char* name;
    sampling_params p;
  };
  std::vector<setting> settings;
  auto add = [&](const char* name, auto&& change) {
    sampling_params p;
    p.temperature = 1.3f;
    change(p);
    settings.push_back({name, p});
  };
  add("temperature", [](sampling_params&) {});
  add("top_k", [](sampling_params& p) { p.top_k = 12; });
  add("top_p", [](sampling_params& p) { p.top_p = 0.8f; });
  add("top_k and top_p", [](sampling_params& p) { p.top_k = 40; p.top_p = 0.7f; });
  add("min_p", [](sampling_params& p) { p.min_p = 0.05f; });
  add("penalties and bias", [](sampling_params& p) {
    p.repetition_penalty = 1.5f;
    p.presence_penalty = 0.8f;
    p.frequency_penalty = 0.4f;
    p.logit_bias = {{3, 4.0f}, {100, -100.0f}};
  });
  constexpr int64_t num_draws = 100000;
  for (const auto& st : settings) {
    CAPTURE(st.name);
    const auto probs = distribution_of(s, logits, st.p, window);
    double total = 0;
    for (float x : probs) total += x;
    CHECK(total == doctest::Approx(1.0).epsilon(1e-5));
    std::vector<int64_t> counts(vocab);
    std::vector<float> scratch;
    auto p = st.p;
    for (int64_t i = 0; i < num_draws; ++i) {
      p.seed = static_cast<uint64_t>(i) * 7919 + 1;
      scratch = logits;
      ++counts[static_cast<size_t>(s.sample(scratch, p, window, 0, 5).token)];
    }
    double stat = 0;
    int df = 0;
    CHECK(fits(counts, probs, num_draws, stat, df));
    MESSAGE(std::string(st.name) << ": chi2 " << stat << " over " << df << " degrees of freedom");
    CHECK(df > 5);
  }
}

TEST_CASE("sampler distribution: greedy is one-hot, bans and top-k sets are exact") {
  const sampler s(vocab, {eog});
  auto logits = random_logits(2);
  logits[eog] = 50.0f;  // the end token is the argmax
  sampling_params greedy;
  greedy.temperature = 0.0f;
  auto probs = distribution_of(s, logits, greedy, {});
  CHECK(probs[eog] == 1.0f);
  // Before min_tokens the end token is banned: the next best takes it all.
  greedy.min_tokens = 10;
  probs = distribution_of(s, logits, greedy, {}, 3);
  CHECK(probs[eog] == 0.0f);
  int nonzero = 0;
  for (float x : probs) nonzero += x > 0;
  CHECK(nonzero == 1);
  sampling_params top3;
  top3.top_k = 3;
  top3.ignore_eos = true;
  probs = distribution_of(s, logits, top3, {});
  nonzero = 0;
  for (float x : probs) nonzero += x > 0;
  CHECK(nonzero == 3);
  CHECK(probs[eog] == 0.0f);
  sampling_params biased;
  biased.logit_bias = {{11, -100.0f}};
  probs = distribution_of(s, random_logits(3), biased, {});
  CHECK(probs[11] < 1e-30f);
}
