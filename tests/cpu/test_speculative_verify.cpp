// Verification of proposed tokens on the CPU backend (tiny random model): a speculative step
// emits exactly the tokens plain one-token steps would, greedy and seeded, with rejected
// proposals' positions harmless to later steps; and the statistics of the rejection rule:
// chi-square tests over 100,000 draws that the emitted tokens follow the target
// distribution, for one-hot proposals (prompt lookup) and for a proposal distribution
// (accept_or_resample).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/sampler_math.hpp"
#include "troupe/model/speculative.hpp"
#include "util/chi_square.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

std::shared_ptr<const gguf::file> tiny_file() {
  return std::make_shared<const gguf::file>(gguf::file::parse(test::make_tiny_llama({})));
}

std::unique_ptr<cpu::cpu_backend> make_backend(std::shared_ptr<const gguf::file> f) {
  cpu::cpu_backend_options o;
  o.num_blocks = 64;
  o.block_size = 4;  // proposals cross block boundaries
  o.num_threads = 2;
  return std::make_unique<cpu::cpu_backend>(std::move(f), o);
}

sampling_params sampled(uint64_t seed) {
  sampling_params p;
  p.temperature = 1.5f;  // flat enough that a random tiny model's draws vary
  p.seed = seed;
  p.repetition_penalty = 1.3f;
  p.penalty_last_n = 8;
  return p;
}

sequence_step plain_step(uint64_t id, std::vector<int32_t> tokens, int32_t start, const sampling_params& params,
                         uint64_t sample_index, std::vector<int32_t> penalty_tokens) {
  sequence_step s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.block_table.resize(16);
  std::iota(s.block_table.begin(), s.block_table.end(), static_cast<int32_t>(id) * 16);
  s.params = params;
  s.sample_index = sample_index;
  s.num_prompt_penalty_tokens = 0;
  s.penalty_tokens = std::move(penalty_tokens);
  return s;
}

std::vector<int32_t> last_n(const std::vector<int32_t>& v, size_t n) {
  return {v.end() - static_cast<ptrdiff_t>(std::min(n, v.size())), v.end()};
}

// The prompt fed whole, then n one-token steps: the tokens a plain run samples.
std::vector<int32_t> plain_run(cpu::cpu_backend& b, uint64_t id, const std::vector<int32_t>& prompt,
                               const sampling_params& params, int n) {
  std::vector<int32_t> seq = prompt, out;
  batch_plan p;
  p.sequences.push_back(plain_step(id, prompt, 0, params, 0, last_n(seq, 8)));
  for (int i = 0; i < n; ++i) {
    const auto r = b.step(p);
    out.push_back(r.outputs[0].token);
    seq.push_back(out.back());
    p.sequences[0] = plain_step(id, {out.back()}, static_cast<int32_t>(seq.size()) - 1, params, out.size(),
                                last_n(seq, 8));
  }
  return out;
}

using test::chi_square;
using test::chi_square_limit;

std::vector<double> softmax(const float* logits, int32_t vocab, float temperature) {
  std::vector<double> p(static_cast<size_t>(vocab));
  const float max = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int32_t i = 0; i < vocab; ++i) sum += p[i] = std::exp((logits[i] - max) / temperature);
  for (auto& x : p) x /= sum;
  return p;
}

}  // namespace

TEST_CASE("speculative verify: a step with proposals emits the tokens of plain one-token steps") {
  auto f = tiny_file();
  for (bool greedy : {true, false}) {
    CAPTURE(greedy);
    auto b = make_backend(f);
    const int32_t vocab = b->config().vocab_size;
    auto params = sampled(7);
    if (greedy) params.temperature = 0.0f;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 9; ++i) prompt.push_back((i * 37 + 5) % vocab);
    const auto want = plain_run(*b, 1, prompt, params, 12);

    // Prefill, then steps of [last, proposals...]: the right continuation with a wrong
    // token planted at varying places, so runs of 0..4 accepted proposals occur.
    std::vector<int32_t> seq = prompt, got;
    batch_plan p;
    p.sequences.push_back(plain_step(2, prompt, 0, params, 0, last_n(seq, 8)));
    got.push_back(b->step(p).outputs[0].token);
    seq.push_back(got.back());
    int num_rejections = 0, num_accepted = 0;
    for (int round = 0; got.size() < want.size(); ++round) {
      const size_t k = std::min<size_t>(4, want.size() - got.size());
      std::vector<int32_t> drafts(want.begin() + static_cast<ptrdiff_t>(got.size()),
                                  want.begin() + static_cast<ptrdiff_t>(got.size() + k));
      const size_t wrong = static_cast<size_t>(round) % (k + 1);  // k: none wrong
      if (wrong < k) drafts[wrong] = (drafts[wrong] + 1) % vocab;
      std::vector<int32_t> fed = {seq.back()};
      fed.insert(fed.end(), drafts.begin(), drafts.end());
      auto s = plain_step(2, fed, static_cast<int32_t>(seq.size()) - 1, params, got.size(), last_n(seq, 8));
      s.num_draft_tokens = static_cast<int32_t>(drafts.size());
      p.sequences[0] = s;
      const auto out = b->step(p).outputs[0];
      REQUIRE(out.accepted.size() <= drafts.size());
      CHECK(out.accepted.size() == std::min(wrong, k));
      num_accepted += static_cast<int>(out.accepted.size());
      num_rejections += out.accepted.size() < drafts.size() ? 1 : 0;
      for (const auto& a : out.accepted) got.push_back(a.token);
      got.push_back(out.token);
      seq.insert(seq.end(), got.end() - static_cast<ptrdiff_t>(out.accepted.size() + 1), got.end());
    }
    got.resize(want.size());
    CHECK(got == want);
    CHECK(num_accepted > 0);
    CHECK(num_rejections > 0);
  }
}

TEST_CASE("speculative verify: a malformed speculative step is refused") {
  auto b = make_backend(tiny_file());
  batch_plan p;
  p.sequences.push_back(plain_step(1, {3, 4, 5}, 0, sampled(1), 0, {}));
  p.sequences[0].num_draft_tokens = 3;  // every token a proposal: nothing known to start from
  CHECK_THROWS_AS(b->step(p), error);
  p.sequences[0].num_draft_tokens = 2;
  p.sequences[0].wants_sample = false;  // proposals need a sample
  CHECK_THROWS_AS(b->step(p), error);
  p.sequences[0].wants_sample = true;
  CHECK(b->supports_speculation());
  CHECK(b->step(p).outputs[0].token >= 0);
}

TEST_CASE("speculative verify: emitted tokens follow the target distribution (chi-square, 100,000 draws)") {
  auto b = make_backend(tiny_file());
  const int32_t vocab = b->config().vocab_size;
  batch_plan p;
  auto params = sampled(0);
  params.repetition_penalty = 1.0f;
  params.temperature = 4.0f;  // the tiny model's rows are peaked; this spreads them over many tokens
  p.sequences.push_back(plain_step(1, {5, 9, 17, 3, 11, 8}, 0, params, 0, {}));
  p.sequences[0].wants_all_logits = true;
  const auto logits = b->step(p).outputs[0].logits;  // rows for positions 0..5
  const float* row0 = &logits[4 * static_cast<size_t>(vocab)];
  const float* row1 = &logits[5 * static_cast<size_t>(vocab)];
  const auto p0 = softmax(row0, vocab, params.temperature);
  const auto p1 = softmax(row1, vocab, params.temperature);
  const auto likely = static_cast<int32_t>(std::max_element(p0.begin(), p0.end()) - p0.begin());
  MESSAGE("vocab " << vocab << ", the likeliest first token has p = " << p0[likely]);

  const sampler s(vocab, {});
  constexpr int64_t num_draws = 100000;
  // Proposals [likely, 8]: the first is accepted with probability p0(likely); the second
  // position then draws from p1.
  sequence_step step = plain_step(1, {11, likely, 8}, 4, params, 0, {});
  step.num_draft_tokens = 2;
  std::vector<int64_t> first(static_cast<size_t>(vocab)), second(static_cast<size_t>(vocab)),
      plain(static_cast<size_t>(vocab));
  int64_t num_second = 0;
  std::vector<float> rows, window;
  std::vector<int32_t> scratch;
  for (int64_t i = 0; i < num_draws; ++i) {
    step.params.seed = static_cast<uint64_t>(i) + 1;
    // Rows after the known token and after each proposal (the third is never reached unless
    // both are accepted, and then only its draw is counted as the second token's successor).
    rows.assign(row0, row0 + vocab);
    rows.insert(rows.end(), row1, row1 + vocab);
    rows.insert(rows.end(), row1, row1 + vocab);
    sequence_output out;
    verify_drafts(s, rows, step, out, scratch);
    const int32_t t0 = out.accepted.empty() ? out.token : out.accepted[0].token;
    ++first[static_cast<size_t>(t0)];
    if (!out.accepted.empty()) {
      ++num_second;
      ++second[static_cast<size_t>(out.accepted.size() > 1 ? out.accepted[1].token : out.token)];
    }
    // The plain sampler with other seeds: an independent sample of the same distribution.
    window.assign(row0, row0 + vocab);
    auto plain_params = params;
    plain_params.seed = static_cast<uint64_t>(i) + 1 + num_draws;
    ++plain[static_cast<size_t>(s.sample(window, plain_params, {}, 0, 0).token)];
  }
  const auto [stat0, df0] = chi_square(first, p0, num_draws);
  const auto [stat1, df1] = chi_square(second, p1, num_second);
  const auto [stat_plain, df_plain] = chi_square(plain, p0, num_draws);
  MESSAGE("first token: chi2 " << stat0 << " (df " << df0 << ", limit " << chi_square_limit(df0) << "); after "
                               << num_second << " acceptances: chi2 " << stat1 << " (df " << df1 << ")"
                               << "; plain sampler: chi2 " << stat_plain);
  CHECK(std::abs(static_cast<double>(num_second) / num_draws - p0[likely]) < 0.01);
  CHECK(df0 > 5);
  CHECK(stat0 < chi_square_limit(df0));
  CHECK(stat1 < chi_square_limit(df1));
  CHECK(stat_plain < chi_square_limit(df_plain));
  // With the same seed the speculative first token is the plain sampler's token.
  window.assign(row0, row0 + vocab);
  params.seed = 1;
  rows.assign(row0, row0 + vocab);
  rows.insert(rows.end(), row1, row1 + vocab);
  rows.insert(rows.end(), row1, row1 + vocab);
  step.params.seed = 1;
  sequence_output out;
  verify_drafts(s, rows, step, out, scratch);
  CHECK((out.accepted.empty() ? out.token : out.accepted[0].token) == s.sample(window, params, {}, 0, 0).token);
}

TEST_CASE("speculative verify: the general acceptance rule draws from the target for any proposal distribution") {
  // p and q over 12 tokens, q far from p (and zero where p is not).
  const std::vector<float> p = {0.02f, 0.2f, 0.05f, 0.13f, 0.0f, 0.1f, 0.08f, 0.12f, 0.03f, 0.07f, 0.15f, 0.05f};
  const std::vector<float> q = {0.3f, 0.05f, 0.05f, 0.0f, 0.1f, 0.2f, 0.02f, 0.08f, 0.1f, 0.05f, 0.0f, 0.05f};
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::discrete_distribution<int32_t> draw_q(q.begin(), q.end());
  constexpr int64_t num_draws = 100000;
  std::vector<int64_t> counts(p.size());
  int64_t num_accepted = 0;
  for (int64_t i = 0; i < num_draws; ++i) {
    const int32_t d = draw_q(rng);
    const int32_t t = accept_or_resample(p, q, d, u(rng), u(rng));
    num_accepted += t == d ? 1 : 0;
    ++counts[static_cast<size_t>(t)];
  }
  const std::vector<double> expected(p.begin(), p.end());
  const auto [stat, df] = chi_square(counts, expected, num_draws);
  MESSAGE("chi2 " << stat << " (df " << df << ", limit " << chi_square_limit(df) << "), acceptance "
                  << static_cast<double>(num_accepted) / num_draws);
  CHECK(counts[4] == 0);  // p(4) = 0: never emitted, though q proposes it
  CHECK(stat < chi_square_limit(df));
  // The acceptance rate is sum(min(p, q)).
  double overlap = 0;
  for (size_t i = 0; i < p.size(); ++i) overlap += std::min(p[i], q[i]);
  CHECK(std::abs(static_cast<double>(num_accepted) / num_draws - overlap) < 0.01);
  CHECK_THROWS_AS(accept_or_resample(p, std::vector<float>(3, 0.3f), 0, 0.5, 0.5), error);
}

TEST_CASE("speculative verify: a draft distribution on the tiny model, drawn and verified, gives the target's") {
  // The target's distribution after one context and a draft's after another (a stand-in for
  // a second, smaller model), both as the sampler would draw them (sampler::distribution);
  // proposals drawn from the draft, verified by the general rule: the emitted tokens follow
  // the target (chi-square, 100,000 draws).
  auto b = make_backend(tiny_file());
  const int32_t vocab = b->config().vocab_size;
  batch_plan plan;
  auto params = sampled(0);
  params.repetition_penalty = 1.0f;
  params.temperature = 2.5f;
  params.top_k = 60;
  plan.sequences.push_back(plain_step(1, {5, 9, 17, 3, 11, 8}, 0, params, 0, {}));
  plan.sequences[0].wants_all_logits = true;
  const auto logits = b->step(plan).outputs[0].logits;
  const sampler s(vocab, {});
  std::vector<float> target_row(logits.end() - vocab, logits.end()), draft_row(logits.begin(), logits.begin() + vocab);
  std::vector<float> p, q, scratch;
  scratch = target_row;
  s.distribution(scratch, params, {}, 0, 0, p);
  auto draft_params = params;
  draft_params.temperature = 3.0f;
  scratch = draft_row;
  s.distribution(scratch, draft_params, {}, 0, 0, q);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  constexpr int64_t num_draws = 100000;
  std::vector<int64_t> counts(static_cast<size_t>(vocab));
  int64_t num_accepted = 0;
  for (int64_t i = 0; i < num_draws; ++i) {
    draft_params.seed = static_cast<uint64_t>(i) + 1;
    scratch = draft_row;
    const int32_t d = s.sample(scratch, draft_params, {}, 0, 0).token;
    const int32_t t = accept_or_resample(p, q, d, u(rng), u(rng));
    num_accepted += t == d;
    ++counts[static_cast<size_t>(t)];
  }
  const auto [stat, df] = chi_square(counts, std::vector<double>(p.begin(), p.end()), num_draws);
  double overlap = 0;
  for (int32_t i = 0; i < vocab; ++i) overlap += std::min(p[i], q[i]);
  MESSAGE("chi2 " << stat << " (df " << df << ", limit " << chi_square_limit(df) << "), acceptance "
                  << double(num_accepted) / num_draws << " (expected " << overlap << ")");
  CHECK(df > 10);
  CHECK(stat < chi_square_limit(df));
  CHECK(std::abs(double(num_accepted) / num_draws - overlap) < 0.01);
}
