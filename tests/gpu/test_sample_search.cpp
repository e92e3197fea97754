// The device sampler's search algorithms (gpu/math/sample_search.hpp) run with a serial
// reducer and checked against the CPU sampler: same tokens from the same seeds, same
// logprobs, same top-logprob sets, with penalties, bias and the end-token bans (ignore_eos,
// min_tokens) applied as the CPU does.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "troupe/gpu/math/sample_search.hpp"
#include "troupe/model/sampler.hpp"

using namespace troupe;

namespace {

struct serial_reducer {
  const std::vector<float>& logits;
  uint64_t max_key() {
    uint64_t best = 0;
    for (int32_t i = 0; i < (int32_t)logits.size(); ++i) best = std::max(best, gpu::rank_key(logits[i], i));
    return best;
  }
  int64_t count_at_least(uint64_t key) {
    int64_t n = 0;
    for (int32_t i = 0; i < (int32_t)logits.size(); ++i) n += gpu::rank_key(logits[i], i) >= key;
    return n;
  }
  double weight_at_least(uint64_t key, float max_logit, float inv_t) {
    double s = 0.0;
    for (int32_t i = 0; i < (int32_t)logits.size(); ++i) {
      if (gpu::rank_key(logits[i], i) >= key) s += tempered_weight(logits[i], max_logit, inv_t);
    }
    return s;
  }
  double kept_weight_before(int32_t end, const gpu::sample_filter& f) {
    double s = 0.0;
    for (int32_t i = 0; i < end; ++i) s += gpu::kept_weight(logits[i], i, f);
    return s;
  }
};

// What the sampling kernel does for one sequence, serially.
struct device_style_result {
  int32_t token;
  float logprob;
  std::set<int32_t> top;
};

device_style_result device_style_sample(const std::vector<float>& raw, const sampling_params& p,
                                        const std::vector<int32_t>& penalty, int32_t num_prompt, uint64_t index,
                                        const std::vector<int32_t>& eog) {
  auto raw_copy = raw;
  serial_reducer raw_r{raw_copy};
  const float lse = gpu::raw_log_sum_exp(raw_r);
  device_style_result out{};
  if (p.num_logprobs > 0) {
    const uint64_t boundary = gpu::kth_best_key(raw_r, p.num_logprobs, raw_r.max_key());
    for (int32_t i = 0; i < (int32_t)raw.size(); ++i) {
      if (gpu::rank_key(raw[i], i) >= boundary) out.top.insert(i);
    }
  }
  auto work = raw;
  gpu::apply_penalty_window(work.data(), penalty.data(), (int32_t)penalty.size(), num_prompt, p.penalty_last_n,
                            p.repetition_penalty, p.presence_penalty, p.frequency_penalty);
  for (const auto& [t, b] : p.logit_bias) work[t] += b;
  gpu::ban_end_tokens(work.data(), eog.data(), (int32_t)eog.size(), p.stop_token_ids.data(),
                      (int32_t)p.stop_token_ids.size(), p.ignore_eos, can_sample_end(index, p.min_tokens));
  serial_reducer r{work};
  out.token = gpu::sample_token(r, {p.temperature, p.top_p, p.min_p, p.top_k}, (int32_t)raw.size(),
                                sample_uniform(p.seed, index));
  out.logprob = raw[out.token] - lse;
  return out;
}

}  // namespace

TEST_CASE("sample search: rank keys order logits like ranks_before, ties to the lower id") {
  const float values[] = {-INFINITY, -3.5f, -0.0f, 0.0f, 1e-30f, 2.0f, INFINITY};
  for (float a : values) {
    for (float b : values) {
      for (int32_t ta : {0, 5}) {
        for (int32_t tb : {0, 7}) {
          if (ta == tb && a != b) continue;
          const bool before = ranks_before({a, ta}, {b, tb});
          CHECK(before == (gpu::rank_key(a, ta) > gpu::rank_key(b, tb)));
        }
      }
    }
    CHECK(gpu::key_logit(gpu::rank_key(a, 3)) == a);
    CHECK(gpu::key_token(gpu::rank_key(a, 3)) == 3);
  }
  CHECK(gpu::rank_key(NAN, 0) < gpu::rank_key(-INFINITY, 100));
}

TEST_CASE("sample search: the device filters draw the CPU sampler's tokens from the same seeds") {
  const int32_t vocab = 700;
  const std::vector<int32_t> eog = {0, 2};
  sampler cpu(vocab, eog);
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 2.5f);
  int cases = 0, token_mismatches = 0;
  for (int c = 0; c < 400; ++c) {
    std::vector<float> logits(vocab);
    for (auto& l : logits) l = dist(rng);
    for (int i = 0; i < 20; ++i) logits[rng() % vocab] = logits[rng() % vocab];  // some exact ties
    sampling_params p;
    p.seed = rng();
    p.temperature = (c % 5 == 0) ? 0.0f : 0.3f + (float)(c % 7) * 0.2f;
    p.top_k = (c % 3 == 0) ? 0 : (int32_t)(1 + c % 60);
    p.top_p = (c % 4 == 0) ? 1.0f : 0.5f + 0.1f * (float)(c % 5);
    p.min_p = (c % 6 < 2) ? 0.0f : 0.02f * (float)(c % 6);
    if (c % 8 == 1) {
      p.repetition_penalty = 1.3f;
      p.presence_penalty = 0.5f;
      p.frequency_penalty = 0.25f;
      p.penalty_last_n = (c % 16 == 1) ? -1 : 12;
    }
    if (c % 9 == 2) p.logit_bias = {{5, 4.0f}, {6, -100.0f}, {5, 1.0f}};
    p.ignore_eos = c % 10 == 3;
    if (c % 11 == 4) {  // min_tokens reached at this draw, or not yet
      p.min_tokens = c + (c % 2);
      p.stop_token_ids = {9, 10};
    }
    p.num_logprobs = c % 4 == 1 ? 5 : 0;
    std::vector<int32_t> penalty;
    for (int i = 0; i < 30; ++i) penalty.push_back((int32_t)(rng() % 40));
    const int32_t num_prompt = 10;
    const uint64_t index = (uint64_t)c;
    auto cpu_logits = logits;
    const auto expected = cpu.sample(std::span<float>(cpu_logits), p, penalty, num_prompt, index);
    const auto got = device_style_sample(logits, p, penalty, num_prompt, index, eog);
    ++cases;
    token_mismatches += got.token != expected.token;
    if (got.token == expected.token) CHECK(got.logprob == doctest::Approx(expected.logprob).epsilon(1e-5));
    std::set<int32_t> expected_top;
    for (const auto& t : expected.top_logprobs) expected_top.insert(t.token);
    CHECK(got.top == expected_top);
  }
  // Only the order of floating-point sums differs from the CPU; a draw landing exactly on
  // a boundary between two tokens is the only way to disagree.
  CHECK(token_mismatches * 100 <= cases);
}

TEST_CASE("sample search: before min_tokens the device bans end-of-generation and stop ids as the CPU does") {
  const int32_t vocab = 64;
  const std::vector<int32_t> eog = {0, 2};
  sampler cpu(vocab, eog);
  std::vector<float> logits(vocab, 0.0f);
  logits[0] = logits[2] = logits[9] = 8.0f;  // the ends are by far the likeliest
  sampling_params p;
  p.min_tokens = 4;
  p.stop_token_ids = {9};
  for (uint64_t index = 0; index < 6; ++index) {
    for (uint64_t seed = 0; seed < 50; ++seed) {
      CAPTURE(index);
      CAPTURE(seed);
      p.seed = seed;
      auto cpu_logits = logits;
      const auto expected = cpu.sample(std::span<float>(cpu_logits), p, {}, 0, index);
      const auto got = device_style_sample(logits, p, {}, 0, index, eog);
      CHECK(got.token == expected.token);
      const bool is_end = got.token == 0 || got.token == 2 || got.token == 9;
      if (index < 4) CHECK_FALSE(is_end);
    }
  }
  // Greedy: the best end before min_tokens is banned, from min_tokens on it is taken.
  p.temperature = 0.0f;
  CHECK(device_style_sample(logits, p, {}, 0, 3, eog).token == 1);
  CHECK(device_style_sample(logits, p, {}, 0, 4, eog).token == 0);
}

TEST_CASE("sample search: greedy takes the lowest id among tied best logits and never a banned token") {
  std::vector<float> logits(50, -1.0f);
  logits[7] = logits[3] = 5.0f;
  serial_reducer r{logits};
  CHECK(gpu::sample_token(r, {0.0f, 1.0f, 0.0f, 0}, 50, 0.5) == 3);
  logits[3] = -INFINITY;
  logits[7] = -INFINITY;
  serial_reducer r2{logits};
  for (double u : {0.0, 0.3, 0.999999}) {
    const int32_t t = gpu::sample_token(r2, {1.0f, 0.9f, 0.0f, 10}, 50, u);
    CHECK(t != 3);
    CHECK(t != 7);
  }
}
