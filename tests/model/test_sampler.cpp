// Specification of the sampler and of sampling_params::validate: each test names one behaviour.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <limits>
#include <vector>

#include "troupe/model/error.hpp"
#include "troupe/model/sampler.hpp"
#include "troupe/model/sampler_math.hpp"
#include "troupe/model/sampling_params.hpp"

namespace troupe {
namespace {

// Samples from a copy so that one logits vector serves many draws.
sample_result sample_once(const sampler& s, const std::vector<float>& logits,
                          const sampling_params& params, uint64_t sample_index = 0,
                          const std::vector<int32_t>& penalty_tokens = {},
                          int32_t num_prompt_tokens = 0) {
  std::vector<float> scratch = logits;
  return s.sample(scratch, params, penalty_tokens, num_prompt_tokens, sample_index);
}

std::vector<int32_t> draw_many(const sampler& s, const std::vector<float>& logits,
                               const sampling_params& params, int num_draws) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < num_draws; ++i) {
    tokens.push_back(sample_once(s, logits, params, static_cast<uint64_t>(i)).token);
  }
  return tokens;
}

std::set<int32_t> support_of(const std::vector<int32_t>& tokens) {
  return {tokens.begin(), tokens.end()};
}

sampling_params greedy() {
  sampling_params params;
  params.temperature = 0.0f;
  return params;
}

// Logits whose softmax is exactly probs (up to rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// A deterministic, LLM-like spread of logits over a large vocabulary.
std::vector<float> pseudo_random_logits(size_t vocab_size, uint64_t seed) {
  std::vector<float> logits(vocab_size);
  for (size_t i = 0; i < vocab_size; ++i) {
    const double u = sample_uniform(seed, i);
    logits[i] = static_cast<float>(12.0 * u * u * u - 4.0);
  }
  return logits;
}

std::vector<double> log_softmax(const std::vector<float>& logits) {
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - max_logit);
  std::vector<double> out;
  for (float x : logits) out.push_back(x - max_logit - std::log(sum));
  return out;
}

// The filters done the slow, obvious way (a full sort), then a draw with the same uniform
// over the kept tokens in id order, as the sampler scans them: the two must agree token for
// token.
int32_t reference_draw(const std::vector<float>& logits, const sampling_params& params,
                       uint64_t sample_index) {
  std::vector<sampler_candidate> sorted;
  for (size_t i = 0; i < logits.size(); ++i) sorted.push_back({logits[i], static_cast<int32_t>(i)});
  std::sort(sorted.begin(), sorted.end(), ranks_before);
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < sorted.size()) {
    sorted.resize(static_cast<size_t>(params.top_k));
  }
  const float max_logit = sorted.front().logit;
  const float inv_temperature = 1.0f / params.temperature;
  double total = 0.0;
  for (const auto& c : sorted) total += tempered_weight(c.logit, max_logit, inv_temperature);
  double cumulative = 0.0;
  size_t num_kept = 0;
  while (num_kept < sorted.size()) {
    cumulative += tempered_weight(sorted[num_kept].logit, max_logit, inv_temperature);
    ++num_kept;
    if (params.top_p < 1.0f && cumulative >= params.top_p * total) break;
  }
  const float cutoff = min_p_cutoff_logit(max_logit, params.min_p, params.temperature);
  std::vector<float> weights(logits.size(), 0.0f);
  double kept_total = 0.0;
  for (size_t i = 0; i < num_kept && sorted[i].logit >= cutoff; ++i) {
    const float weight = tempered_weight(sorted[i].logit, max_logit, inv_temperature);
    weights[static_cast<size_t>(sorted[i].token)] = weight;
    kept_total += weight;
  }
  const double target = sample_uniform(params.seed, sample_index) * kept_total;
  cumulative = 0.0;
  for (size_t i = 0; i < weights.size(); ++i) {
    cumulative += weights[i];
    if (weights[i] > 0.0f && cumulative > target) return static_cast<int32_t>(i);
  }
  return sorted.front().token;
}

}  // namespace

TEST_CASE("sampler greedy picks the argmax") {
  const sampler s(6, {});
  const auto result = sample_once(s, {0.1f, 2.0f, -1.0f, 3.5f, 3.4f, 0.0f}, greedy());
  CHECK(result.token == 3);
}

TEST_CASE("sampler greedy breaks ties toward the lowest token id") {
  const sampler s(5, {});
  CHECK(sample_once(s, {1.0f, 4.0f, 2.0f, 4.0f, 4.0f}, greedy()).token == 1);
}

TEST_CASE("sampler with the same seed draws the same tokens") {
  const sampler s(8, {});
  const std::vector<float> logits{0.5f, 0.1f, 0.3f, 0.0f, 0.2f, 0.4f, 0.1f, 0.0f};
  sampling_params params;
  params.seed = 42;
  CHECK(draw_many(s, logits, params, 300) == draw_many(s, logits, params, 300));
}

TEST_CASE("sampler with different seeds draws different tokens") {
  const sampler s(8, {});
  const std::vector<float> logits(8, 0.0f);
  sampling_params first;
  first.seed = 1;
  sampling_params second;
  second.seed = 2;
  const auto a = draw_many(s, logits, first, 400);
  const auto b = draw_many(s, logits, second, 400);
  int num_different = 0;
  for (size_t i = 0; i < a.size(); ++i) num_different += a[i] != b[i];
  CHECK(num_different > 300);  // 7/8 of 400 = 350 expected for independent draws
}

TEST_CASE("sampler sample_index changes the draw for one seed") {
  const sampler s(8, {});
  sampling_params params;
  params.seed = 7;
  const auto tokens = draw_many(s, std::vector<float>(8, 0.0f), params, 200);
  CHECK(support_of(tokens).size() == 8);
  CHECK(sample_once(s, std::vector<float>(8, 0.0f), params, 3).token == tokens[3]);
}

TEST_CASE("sampler draw does not depend on earlier calls on the same thread") {
  const sampler s(50000, {});
  const auto logits = pseudo_random_logits(50000, 3);
  sampling_params params;
  params.seed = 9;
  params.top_p = 0.9f;
  const int32_t first = sample_once(s, logits, params, 17).token;
  sampling_params other = params;
  other.top_k = 5;
  other.num_logprobs = 20;
  for (uint64_t i = 0; i < 5; ++i) sample_once(s, logits, other, i);
  CHECK(sample_once(s, logits, params, 17).token == first);
}

TEST_CASE("sampler draws follow softmax(logits / temperature)") {
  const std::vector<float> logits{1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f};
  const sampler s(6, {});
  for (float temperature : {0.7f, 1.0f, 2.0f}) {
    CAPTURE(temperature);
    sampling_params params;
    params.temperature = temperature;
    params.seed = 1234;
    const int num_draws = 20000;
    std::vector<int> counts(6, 0);
    for (int32_t token : draw_many(s, logits, params, num_draws)) ++counts[token];
    std::vector<float> scaled;
    for (float x : logits) scaled.push_back(x / temperature);
    const auto expected_log = log_softmax(scaled);
    double chi_square = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double expected = num_draws * std::exp(expected_log[i]);
      chi_square += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    CHECK(chi_square < 20.5);  // 5 degrees of freedom, p = 0.001
  }
}

TEST_CASE("sampler top_k = 1 equals greedy") {
  const sampler s(2000, {});
  const auto logits = pseudo_random_logits(2000, 11);
  sampling_params params;
  params.top_k = 1;
  params.temperature = 1.5f;
  const int32_t argmax = sample_once(s, logits, greedy()).token;
  for (int32_t token : draw_many(s, logits, params, 100)) CHECK(token == argmax);
}

TEST_CASE("sampler top_k restricts the draws to the k best tokens") {
  std::vector<float> logits(100, 0.0f);
  const std::set<int32_t> best{4, 17, 50, 63, 99};
  for (int32_t token : best) logits[static_cast<size_t>(token)] = 1.0f;
  const sampler s(100, {});
  sampling_params params;
  params.top_k = 5;
  params.temperature = 5.0f;  // flat enough that every other token would show up
  CHECK(support_of(draw_many(s, logits, params, 2000)) == best);
}

TEST_CASE("sampler top_k ties at the k-th token keep the lower ids") {
  const sampler s(1000, {});
  sampling_params params;
  params.top_k = 3;
  const auto tokens = draw_many(s, std::vector<float>(1000, 0.0f), params, 500);
  CHECK(support_of(tokens) == std::set<int32_t>{0, 1, 2});
}

TEST_CASE("sampler top_p keeps exactly the nucleus") {
  const sampler s(4, {});
  const auto logits = logits_of({0.1, 0.4, 0.2, 0.3});
  sampling_params params;
  params.top_p = 0.65f;  // 0.4 + 0.3 = 0.7 is the smallest prefix reaching 0.65
  CHECK(support_of(draw_many(s, logits, params, 3000)) == std::set<int32_t>{1, 3});
  params.top_p = 0.8f;
  CHECK(support_of(draw_many(s, logits, params, 3000)) == std::set<int32_t>{1, 2, 3});
  params.top_p = 0.3f;
  CHECK(support_of(draw_many(s, logits, params, 500)) == std::set<int32_t>{1});
}

TEST_CASE("sampler top_p over a large vocabulary ignores the tail") {
  std::vector<float> logits(49152, -30.0f);
  const auto head = logits_of({0.5, 0.3, 0.2});
  std::copy(head.begin(), head.end(), logits.begin() + 1000);
  const sampler s(49152, {});
  sampling_params params;
  params.top_p = 0.75f;
  CHECK(support_of(draw_many(s, logits, params, 2000)) == std::set<int32_t>{1000, 1001});
}

TEST_CASE("sampler top_p on a flat distribution keeps the lowest ids up to the mass") {
  // 1000 tokens take the compact draw, 10000 the whole-vocabulary one with tie handling.
  for (const int32_t vocab_size : {1000, 10000}) {
    CAPTURE(vocab_size);
    const sampler s(vocab_size, {});
    sampling_params params;
    params.top_p = 0.5f;
    const auto support = support_of(draw_many(
        s, std::vector<float>(static_cast<size_t>(vocab_size), 0.0f), params, 20000));
    CHECK(*support.rbegin() < vocab_size / 2);
    CHECK(static_cast<int32_t>(support.size()) > vocab_size / 2 * 8 / 10);
  }
}

TEST_CASE("sampler min_p drops tokens below min_p times the best probability") {
  const sampler s(5, {});
  const auto logits = logits_of({0.5, 0.05, 0.3, 0.12, 0.03});
  sampling_params params;
  params.min_p = 0.2f;  // keeps p >= 0.1
  CHECK(support_of(draw_many(s, logits, params, 3000)) == std::set<int32_t>{0, 2, 3});
}

TEST_CASE("sampler filters agree with a full-sort reference on a 49k vocabulary") {
  const size_t vocab_size = 49152;
  const sampler s(static_cast<int32_t>(vocab_size), {});
  const auto logits = pseudo_random_logits(vocab_size, 5);
  struct filter { int32_t top_k; float top_p; float min_p; float temperature; };
  for (const filter f : {filter{0, 1.0f, 0.0f, 1.0f}, filter{40, 1.0f, 0.0f, 0.8f},
                         filter{0, 0.9f, 0.0f, 1.0f}, filter{0, 0.95f, 0.05f, 1.3f},
                         filter{50, 0.9f, 0.0f, 1.0f}, filter{1000, 0.5f, 0.1f, 2.0f},
                         filter{0, 1.0f, 0.3f, 0.5f}, filter{0, 0.999f, 0.0f, 10.0f}}) {
    CAPTURE(f.top_k);
    CAPTURE(f.top_p);
    CAPTURE(f.min_p);
    sampling_params params;
    params.top_k = f.top_k;
    params.top_p = f.top_p;
    params.min_p = f.min_p;
    params.temperature = f.temperature;
    params.seed = 99;
    for (uint64_t i = 0; i < 40; ++i) {
      CHECK(sample_once(s, logits, params, i).token == reference_draw(logits, params, i));
    }
  }
}

TEST_CASE("sampler repetition penalty divides positive and multiplies negative logits") {
  const sampler s(3, {});
  sampling_params params = greedy();
  params.repetition_penalty = 1.5f;
  // 2.0 / 1.5 = 1.33 falls below 1.8; the prompt token counts.
  CHECK(sample_once(s, {2.0f, 1.8f, 0.0f}, params, 0, {0}, 1).token == 1);
  // -1.0 * 1.5 = -1.5 falls below -1.2.
  CHECK(sample_once(s, {-1.0f, -1.2f, -5.0f}, params, 0, {0}, 0).token == 1);
  CHECK(sample_once(s, {2.0f, 1.8f, 0.0f}, greedy(), 0, {0}, 1).token == 0);
}

TEST_CASE("sampler presence penalty applies to output tokens only") {
  const sampler s(2, {});
  sampling_params params = greedy();
  params.presence_penalty = 1.0f;
  const std::vector<float> logits{2.0f, 1.5f};
  CHECK(sample_once(s, logits, params, 0, {0}, 1).token == 0);  // only in the prompt
  CHECK(sample_once(s, logits, params, 0, {0}, 0).token == 1);  // 2 - 1 < 1.5
  CHECK(sample_once(s, logits, params, 0, {0, 0, 0}, 0).token == 1);  // once, not per count
}

TEST_CASE("sampler frequency penalty scales with the output count") {
  const sampler s(2, {});
  sampling_params params = greedy();
  params.frequency_penalty = 0.2f;
  const std::vector<float> logits{2.0f, 1.5f};
  CHECK(sample_once(s, logits, params, 0, {0, 0}, 0).token == 0);     // 2 - 0.4 > 1.5
  CHECK(sample_once(s, logits, params, 0, {0, 0, 0}, 0).token == 1);  // 2 - 0.6 < 1.5
  CHECK(sample_once(s, logits, params, 0, {0, 0, 0}, 2).token == 0);  // one of them output
}

TEST_CASE("sampler penalty_last_n limits the penalty window to the most recent tokens") {
  const sampler s(3, {});
  sampling_params params = greedy();
  params.presence_penalty = 1.0f;
  params.penalty_last_n = 1;
  const std::vector<float> logits{2.0f, 1.5f, 0.0f};
  CHECK(sample_once(s, logits, params, 0, {0, 2}, 0).token == 0);
  params.penalty_last_n = 2;
  CHECK(sample_once(s, logits, params, 0, {0, 2}, 0).token == 1);
  params.penalty_last_n = -1;
  CHECK(sample_once(s, logits, params, 0, {0, 2, 2}, 0).token == 1);
  params.penalty_last_n = 0;
  CHECK(sample_once(s, logits, params, 0, {0, 2}, 0).token == 0);
}

TEST_CASE("sampler logit_bias of -100 bans a token and +100 forces one") {
  const sampler s(4, {});
  const std::vector<float> logits{3.0f, 1.0f, 0.0f, 2.5f};
  sampling_params params;
  params.logit_bias = {{0, -100.0f}};
  const auto without_best = support_of(draw_many(s, logits, params, 1000));
  CHECK(without_best.count(0) == 0);
  params.logit_bias = {{2, 100.0f}};
  CHECK(support_of(draw_many(s, logits, params, 1000)) == std::set<int32_t>{2});
}

TEST_CASE("sampler ignore_eos never returns an end-of-generation token") {
  const sampler s(4, {1, 3});
  const std::vector<float> logits{0.0f, 5.0f, 0.5f, 5.0f};
  sampling_params params;
  params.ignore_eos = true;
  CHECK(support_of(draw_many(s, logits, params, 2000)) == std::set<int32_t>{0, 2});
  sampling_params greedy_params = greedy();
  greedy_params.ignore_eos = true;
  CHECK(sample_once(s, logits, greedy_params).token == 2);
}

TEST_CASE("sampler min_tokens bans end-of-generation and stop tokens before that many outputs, not after") {
  const sampler s(5, {1, 3});
  const std::vector<float> logits{0.0f, 5.0f, 0.5f, 5.0f, 4.0f};
  sampling_params params;
  params.min_tokens = 3;
  params.stop_token_ids = {4};
  for (uint64_t index = 0; index < 3; ++index) {
    CAPTURE(index);
    std::set<int32_t> support;
    for (uint64_t seed = 0; seed < 500; ++seed) {
      params.seed = seed;
      support.insert(sample_once(s, logits, params, index).token);
    }
    CHECK(support == std::set<int32_t>{0, 2});
  }
  sampling_params greedy_params = greedy();
  greedy_params.min_tokens = 3;
  greedy_params.stop_token_ids = {4};
  CHECK(sample_once(s, logits, greedy_params, 2).token == 2);
  // From the min_tokens-th output on, the ends are drawable again.
  CHECK(sample_once(s, logits, greedy_params, 3).token == 1);
  std::set<int32_t> support;
  for (uint64_t seed = 0; seed < 500; ++seed) {
    params.seed = seed;
    support.insert(sample_once(s, logits, params, 3).token);
  }
  CHECK(support.count(1) == 1);
  CHECK(support.count(3) == 1);
  CHECK(support.count(4) == 1);
}

TEST_CASE("sampler min_tokens reports the banned token's logprob from the raw logits") {
  const sampler s(3, {0});
  sampling_params params = greedy();
  params.min_tokens = 1;
  params.num_logprobs = 3;
  const auto result = sample_once(s, {4.0f, 1.0f, 0.0f}, params);
  CHECK(result.token == 1);
  REQUIRE(result.top_logprobs.size() == 3);
  CHECK(result.top_logprobs[0].token == 0);  // alternatives are unfiltered, as OpenAI's are
  CHECK(result.logprob == doctest::Approx(result.top_logprobs[1].logprob));
}

TEST_CASE("sampler logprobs of every token sum to one") {
  const sampler s(10, {});
  const std::vector<float> logits{0.3f, -2.0f, 4.0f, 1.0f, 1.0f, 0.0f, -7.0f, 2.5f, 3.0f, -0.5f};
  sampling_params params;
  params.num_logprobs = 10;
  const auto result = sample_once(s, logits, params);
  REQUIRE(result.top_logprobs.size() == 10);
  double total = 0.0;
  for (const auto& entry : result.top_logprobs) total += std::exp(entry.logprob);
  CHECK(total == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("sampler top_logprobs are sorted and match a hand-computed log-softmax") {
  const sampler s(8, {});
  const std::vector<float> logits{0.3f, -2.0f, 4.0f, 1.0f, 3.5f, 0.0f, 2.5f, 3.0f};
  const auto expected = log_softmax(logits);
  sampling_params params;
  params.num_logprobs = 3;
  const auto result = sample_once(s, logits, params, 5);
  REQUIRE(result.top_logprobs.size() == 3);
  const int32_t expected_tokens[] = {2, 4, 7};
  for (size_t i = 0; i < 3; ++i) {
    CHECK(result.top_logprobs[i].token == expected_tokens[i]);
    CHECK(result.top_logprobs[i].logprob ==
          doctest::Approx(expected[static_cast<size_t>(expected_tokens[i])]).epsilon(1e-5));
  }
  CHECK(result.logprob ==
        doctest::Approx(expected[static_cast<size_t>(result.token)]).epsilon(1e-5));
}

TEST_CASE("sampler logprobs come from the raw logits, before penalties and bias") {
  const sampler s(4, {});
  const std::vector<float> logits{3.0f, 1.0f, 0.0f, 2.5f};
  const auto expected = log_softmax(logits);
  sampling_params params = greedy();
  params.logit_bias = {{2, 100.0f}};
  params.repetition_penalty = 2.0f;
  params.num_logprobs = 2;
  const auto result = sample_once(s, logits, params, 0, {0, 3}, 1);
  CHECK(result.token == 2);
  CHECK(result.logprob == doctest::Approx(expected[2]).epsilon(1e-5));
  REQUIRE(result.top_logprobs.size() == 2);
  CHECK(result.top_logprobs[0].token == 0);
  CHECK(result.top_logprobs[1].token == 3);
  CHECK(result.top_logprobs[0].logprob == doctest::Approx(expected[0]).epsilon(1e-5));
}

TEST_CASE("sampler rejects logits that do not match the vocabulary size") {
  const sampler s(4, {});
  std::vector<float> logits(3, 0.0f);
  CHECK_THROWS_AS(s.sample(logits, sampling_params{}, {}, 0, 0), error);
}

TEST_CASE("sampler sample_uniform stays in the unit interval and is a pure function of seed and index") {
  double sum = 0.0;
  for (uint64_t i = 0; i < 10000; ++i) {
    const double u = sample_uniform(77, i);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
  }
  CHECK(sum / 10000 == doctest::Approx(0.5).epsilon(0.02));
  CHECK(sample_uniform(77, 5) == sample_uniform(77, 5));
  CHECK(sample_uniform(77, 5) != sample_uniform(78, 5));
}

TEST_CASE("sampler params validate accepts defaults and the edges of each range") {
  sampling_params params;
  CHECK_NOTHROW(params.validate(100));
  params.temperature = 0.0f;
  params.top_k = 1000;  // larger than the vocabulary means off
  params.top_p = 1.0f;
  params.min_p = 1.0f;
  params.repetition_penalty = 10.0f;
  params.presence_penalty = -2.0f;
  params.frequency_penalty = 2.0f;
  params.penalty_last_n = -1;
  params.logit_bias = {{0, -100.0f}, {99, 100.0f}};
  params.num_logprobs = 20;
  params.max_tokens = 1;
  params.min_tokens = 1;
  params.stop_token_ids = {0, 99};
  CHECK_NOTHROW(params.validate(100));
}

TEST_CASE("sampler params validate rejects each bad field with a message naming it") {
  struct bad_case {
    const char* field;
    std::function<void(sampling_params&)> spoil;
  };
  const bad_case cases[] = {
      {"temperature", [](sampling_params& p) { p.temperature = -0.1f; }},
      {"temperature", [](sampling_params& p) { p.temperature = 101.0f; }},
      {"temperature", [](sampling_params& p) { p.temperature = NAN; }},
      {"temperature", [](sampling_params& p) { p.temperature = INFINITY; }},
      {"top_k", [](sampling_params& p) { p.top_k = -1; }},
      {"top_p", [](sampling_params& p) { p.top_p = 0.0f; }},
      {"top_p", [](sampling_params& p) { p.top_p = 1.5f; }},
      {"min_p", [](sampling_params& p) { p.min_p = -0.1f; }},
      {"min_p", [](sampling_params& p) { p.min_p = 1.1f; }},
      {"repetition_penalty", [](sampling_params& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](sampling_params& p) { p.repetition_penalty = 10.5f; }},
      {"presence_penalty", [](sampling_params& p) { p.presence_penalty = -2.5f; }},
      {"frequency_penalty", [](sampling_params& p) { p.frequency_penalty = 2.5f; }},
      {"penalty_last_n", [](sampling_params& p) { p.penalty_last_n = -2; }},
      {"logit_bias", [](sampling_params& p) { p.logit_bias = {{100, 1.0f}}; }},
      {"logit_bias", [](sampling_params& p) { p.logit_bias = {{-1, 1.0f}}; }},
      {"logit_bias", [](sampling_params& p) { p.logit_bias = {{3, 150.0f}}; }},
      {"logit_bias", [](sampling_params& p) { p.logit_bias = {{3, NAN}}; }},
      {"num_logprobs", [](sampling_params& p) { p.num_logprobs = 21; }},
      {"num_logprobs", [](sampling_params& p) { p.num_logprobs = -1; }},
      {"max_tokens", [](sampling_params& p) { p.max_tokens = 0; }},
      {"stop_token_ids", [](sampling_params& p) { p.stop_token_ids = {100}; }},
      {"min_tokens", [](sampling_params& p) { p.min_tokens = -1; }},
      {"min_tokens", [](sampling_params& p) { p.min_tokens = p.max_tokens + 1; }},
  };
  for (const auto& bad : cases) {
    CAPTURE(bad.field);
    sampling_params params;
    bad.spoil(params);
    try {
      params.validate(100);
      FAIL("validate accepted a bad ", bad.field);
    } catch (const error& e) {
      CHECK(e.code() == error_code::invalid_argument);
      CHECK(std::string(e.what()).find(bad.field) != std::string::npos);
    }
  }
}

TEST_CASE("sampler params validate message states the allowed range and the value") {
  sampling_params params;
  params.top_p = 1.5f;
  CHECK_THROWS_WITH_AS(params.validate(100), "top_p must be in (0, 1], got 1.5", error);
  sampling_params short_output;
  short_output.max_tokens = 8;
  short_output.min_tokens = 9;
  CHECK_THROWS_WITH_AS(short_output.validate(100), "min_tokens must be in [0, 8] (at most max_tokens), got 9", error);
}

TEST_CASE("an allowed-token mask confines every draw, and reports the raw logprob") {
  const sampler s(8, {2});
  const std::vector<float> logits = {5.0f, 4.0f, 0.0f, 1.0f, 3.0f, 2.0f, 0.5f, 0.25f};
  const std::vector<uint64_t> allowed = {(1u << 3) | (1u << 5) | (1u << 6)};
  sampling_params greedy;
  greedy.temperature = 0.0f;
  std::vector<float> scratch = logits;
  const auto r = s.sample(scratch, greedy, {}, 0, 0, &allowed);
  CHECK(r.token == 5);  // the best allowed one, not 0
  // The logprob is under the model's own distribution, as without the mask.
  std::vector<float> plain = logits;
  double sum = 0.0;
  for (float l : plain) sum += std::exp(l);
  CHECK(r.logprob == doctest::Approx(2.0 - std::log(sum)).epsilon(1e-5));
  sampling_params hot;
  hot.temperature = 5.0f;
  for (uint64_t i = 0; i < 400; ++i) {
    scratch = logits;
    const int32_t t = s.sample(scratch, hot, {}, 0, i, &allowed).token;
    CHECK((t == 3 || t == 5 || t == 6));
  }
}

TEST_CASE("a mask that leaves only a banned end token lets the grammar win") {
  const sampler s(8, {2});
  const std::vector<float> logits = {5.0f, 4.0f, 0.0f, 1.0f, 3.0f, 2.0f, 0.5f, 0.25f};
  const std::vector<uint64_t> only_end = {1u << 2};
  sampling_params p;
  p.temperature = 0.0f;
  p.ignore_eos = true;
  std::vector<float> scratch = logits;
  CHECK(s.sample(scratch, p, {}, 0, 0, &only_end).token == 2);
  p.ignore_eos = false;
  p.min_tokens = 5;
  p.max_tokens = 10;
  scratch = logits;
  CHECK(s.sample(scratch, p, {}, 0, 0, &only_end).token == 2);
}

TEST_CASE("masks of whole, empty and mixed words over a partial last word: the greedy pick is the best allowed id") {
  constexpr int32_t vocab = 200;  // three whole 64-bit words and 8 ids of a fourth
  const sampler s(vocab, {vocab - 1});
  std::vector<float> logits(vocab);
  for (int32_t i = 0; i < vocab; ++i) logits[static_cast<size_t>(i)] = static_cast<float>((i * 37) % 101) / 10.0f;
  sampling_params greedy;
  greedy.temperature = 0.0f;
  uint64_t state = 0x9e3779b97f4a7c15ull;
  const auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (int round = 0; round < 500; ++round) {
    std::vector<uint64_t> allowed(4);
    for (auto& w : allowed) {
      const uint64_t kind = next() % 4;
      w = kind == 0 ? 0 : kind == 1 ? ~uint64_t{0} : next() & next();
    }
    allowed[3] |= uint64_t{1} << (next() % 8);  // at least one id allowed
    int32_t best = -1;
    for (int32_t i = 0; i < vocab; ++i) {
      const bool is_allowed = (allowed[static_cast<size_t>(i) >> 6] >> (i & 63)) & 1;
      if (is_allowed && (best < 0 || logits[static_cast<size_t>(i)] > logits[static_cast<size_t>(best)])) best = i;
    }
    std::vector<float> scratch = logits;
    CAPTURE(round);
    CHECK(s.sample(scratch, greedy, {}, 0, 0, &allowed).token == best);
  }
}

}  // namespace troupe
