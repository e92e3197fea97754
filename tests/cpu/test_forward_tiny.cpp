// The CPU forward pass on tiny random llama, qwen2 and qwen3 models: agreement with a plain
// fp32 reference, paging, chunking and batching invariance, plan validation and block copies.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/error.hpp"
#include "reference_llama.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

std::shared_ptr<const gguf::file> tiny_file(const test::tiny_model_options& o = {}) {
  return std::make_shared<const gguf::file>(gguf::file::parse(test::make_tiny_llama(o)));
}

cpu::cpu_backend make_backend(std::shared_ptr<const gguf::file> f, int32_t num_blocks = 64, int32_t block_size = 16,
                              int threads = 2) {
  cpu::cpu_backend_options o;
  o.num_blocks = num_blocks;
  o.block_size = block_size;
  o.num_threads = threads;
  return cpu::cpu_backend(std::move(f), o);
}

std::vector<int32_t> some_tokens(int n, int32_t vocab, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (int32_t)((i * 131 + salt * 71 + 7) % vocab);
  return t;
}

sequence_step step_of(uint64_t id, std::vector<int32_t> tokens, int32_t start, std::vector<int32_t> table,
                      bool all_logits = true) {
  sequence_step s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.block_table = std::move(table);
  s.wants_all_logits = all_logits;
  s.wants_sample = true;
  s.params.temperature = 0.0f;
  return s;
}

std::vector<int32_t> iota_table(int n, int first = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

double cosine(const float* a, const float* b, int n) {
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < n; ++i) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}

// max |a - b| over the spread of b around its mean: how far off the logits are, relative to
// how much they vary from token to token.
double relative_error(const float* a, const float* b, int n) {
  double mean = 0;
  for (int i = 0; i < n; ++i) mean += b[i];
  mean /= n;
  double spread = 0, diff = 0;
  for (int i = 0; i < n; ++i) {
    spread = std::max(spread, std::fabs(b[i] - mean));
    diff = std::max(diff, (double)std::fabs(a[i] - b[i]));
  }
  return diff / spread;
}

constexpr double reference_tolerance = 0.02;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (double)std::fabs(a[i] - b[i]));
  return m;
}

void check_against_reference(const test::tiny_model_options& o) {
  auto f = tiny_file(o);
  auto b = make_backend(f);
  const int32_t vocab = b.config().vocab_size;
  const auto tokens = some_tokens(40, vocab, 3);
  batch_plan plan;
  plan.sequences.push_back(step_of(1, tokens, 0, iota_table(3)));
  const auto got = b.step(plan).outputs[0].logits;
  const auto want = test::reference_logits(*f, tokens);
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t p = 0; p < tokens.size(); ++p) {
    CHECK(cosine(&got[p * vocab], &want[p * vocab], vocab) > 0.995);
    worst = std::max(worst, relative_error(&got[p * vocab], &want[p * vocab], vocab));
  }
  MESSAGE("worst relative error " << worst);
  CHECK(worst < reference_tolerance);
}

}  // namespace

TEST_CASE("forward: logits agree with the fp32 reference for Q4_1 weights and a tied Q8_0 head") {
  check_against_reference({});
}

TEST_CASE("forward: logits agree with the fp32 reference for every weight type") {
  for (auto type : {ggml_type::f32, ggml_type::f16, ggml_type::bf16, ggml_type::q8_0, ggml_type::q4_0,
                    ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1}) {
    CAPTURE(traits_of(type).name);
    test::tiny_model_options o;
    o.weight_type = type;
    check_against_reference(o);
  }
}

TEST_CASE("forward: logits agree with the fp32 reference for K-quants on 256-wide rows") {
  for (auto type : {ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k}) {
    CAPTURE(traits_of(type).name);
    test::tiny_model_options o;
    o.weight_type = type;
    o.embedding_dim = 256;
    o.ffn_dim = 512;
    check_against_reference(o);
  }
}

TEST_CASE("forward: multi-head, multi-query and an untied output head agree with the reference") {
  test::tiny_model_options mha;
  mha.num_kv_heads = mha.num_heads;
  check_against_reference(mha);
  test::tiny_model_options mqa;
  mqa.num_kv_heads = 1;
  check_against_reference(mqa);
  test::tiny_model_options untied;
  untied.tied_output = false;
  check_against_reference(untied);
}

TEST_CASE("forward: a qwen2 model (q/k/v biases, NEOX rotation, untied head) agrees with the reference") {
  test::tiny_model_options o;
  o.architecture = "qwen2";
  o.tied_output = false;
  o.weight_type = ggml_type::q5_0;
  o.rope_freq_base = 1e6f;
  o.rms_eps = 1e-6f;
  check_against_reference(o);
}

TEST_CASE("forward: a qwen2 model with a GQA ratio of 7, like Qwen2.5-0.5B, agrees with the reference") {
  test::tiny_model_options o;
  o.architecture = "qwen2";
  o.embedding_dim = 448;  // 7 heads of 64
  o.num_heads = 7;
  o.num_kv_heads = 1;
  o.num_layers = 1;
  check_against_reference(o);
}

TEST_CASE("forward: a qwen3 model (per-head q/k norms, heads x head_dim wider than the model) agrees with the reference") {
  test::tiny_model_options o;
  o.architecture = "qwen3";
  o.head_dim = 32;  // 4 heads x 32 = 128 > 64 wide
  check_against_reference(o);
}

TEST_CASE("forward: rope_freqs factors change the logits and are applied as the reference applies them") {
  test::tiny_model_options o;
  o.has_rope_freq_factors = true;
  check_against_reference(o);
  const auto tokens = some_tokens(40, make_backend(tiny_file()).config().vocab_size, 3);
  auto logits_of = [&](const test::tiny_model_options& options) {
    auto b = make_backend(tiny_file(options));
    batch_plan plan;
    plan.sequences.push_back(step_of(1, tokens, 0, iota_table(3)));
    return b.step(plan).outputs[0].logits;
  };
  const auto with = logits_of(o);
  const auto without = logits_of({});  // the same weights: the factors draw no random numbers
  CHECK(max_abs_diff(with, without) > 0.05);
}

TEST_CASE("forward: chunked prefill and one-token decode give the logits of a single step") {
  auto f = tiny_file();
  auto b = make_backend(f);
  const int32_t vocab = b.config().vocab_size;
  const auto tokens = some_tokens(50, vocab, 5);
  batch_plan whole;
  whole.sequences.push_back(step_of(1, tokens, 0, iota_table(4)));
  const auto want = b.step(whole).outputs[0].logits;

  std::vector<float> got;
  for (int start : {0, 17, 33, 48, 49}) {
    const int end = start == 0 ? 17 : (start == 17 ? 33 : (start == 33 ? 48 : start + 1));
    batch_plan p;
    // A different physical layout: blocks in reverse order.
    p.sequences.push_back(step_of(2, std::vector<int32_t>(tokens.begin() + start, tokens.begin() + end), start,
                                  {40, 30, 20, 10}));
    const auto l = b.step(p).outputs[0].logits;
    got.insert(got.end(), l.begin(), l.end());
  }
  REQUIRE(got.size() == want.size());
  CHECK(max_abs_diff(got, want) < 1e-3);
}

TEST_CASE("forward: a sequence's result does not depend on what else is in the batch") {
  auto f = tiny_file();
  auto b = make_backend(f);
  const int32_t vocab = b.config().vocab_size;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 6; ++i) prompts.push_back(some_tokens(5 + 9 * i, vocab, i));
  std::vector<std::vector<float>> alone;
  for (size_t i = 0; i < prompts.size(); ++i) {
    batch_plan p;
    p.sequences.push_back(step_of(i, prompts[i], 0, iota_table(4, 4 * (int)i)));
    alone.push_back(b.step(p).outputs[0].logits);
  }
  batch_plan together;
  for (size_t i = 0; i < prompts.size(); ++i) together.sequences.push_back(step_of(i, prompts[i], 0, iota_table(4, 32 + 4 * (int)i)));
  const auto r = b.step(together);
  for (size_t i = 0; i < prompts.size(); ++i) {
    CAPTURE(i);
    CHECK(r.outputs[i].seq_id == i);
    CHECK(max_abs_diff(r.outputs[i].logits, alone[i]) < 1e-3);
  }
}

TEST_CASE("forward: a malformed plan is rejected and the backend stays usable") {
  auto f = tiny_file();
  auto b = make_backend(f, 8);
  const int32_t vocab = b.config().vocab_size;
  auto expect_error = [&](sequence_step s, error_code code) {
    batch_plan p;
    p.sequences.push_back(std::move(s));
    try {
      b.step(p);
      FAIL("no error");
    } catch (const error& e) {
      CHECK(e.code() == code);
    }
  };
  expect_error(step_of(1, {1, 2, 3}, 0, {99}), error_code::bad_plan);           // block out of range
  expect_error(step_of(1, some_tokens(20, vocab, 1), 0, {0}), error_code::bad_plan);  // table too short
  expect_error(step_of(1, {vocab}, 0, {0}), error_code::bad_plan);              // token out of range
  expect_error(step_of(1, {}, 0, {0}), error_code::bad_plan);                   // nothing to feed
  expect_error(step_of(1, {1}, 256, iota_table(8)), error_code::context_overflow);      // past the context
  auto bad_params = step_of(1, {1}, 0, {0});
  bad_params.params.top_p = 2.0f;
  expect_error(bad_params, error_code::invalid_argument);
  batch_plan twice;
  twice.sequences.push_back(step_of(1, {1}, 0, {0}));
  twice.sequences.push_back(step_of(1, {2}, 0, {1}));
  CHECK_THROWS_AS(b.step(twice), error);

  batch_plan ok;
  ok.sequences.push_back(step_of(1, {1, 2, 3}, 0, {0}));
  CHECK(b.step(ok).outputs[0].token >= 0);
}

TEST_CASE("forward: copied blocks let a forked sequence continue like the original") {
  auto f = tiny_file();
  auto b = make_backend(f);
  const int32_t vocab = b.config().vocab_size;
  const auto prompt = some_tokens(20, vocab, 9);  // fills block 0 and part of block 1
  batch_plan p;
  p.sequences.push_back(step_of(1, prompt, 0, {0, 1}, false));
  b.step(p);
  b.copy_blocks({{0, 5}, {1, 6}});
  batch_plan next;
  next.sequences.push_back(step_of(1, {7}, 20, {0, 1}));
  next.sequences.push_back(step_of(2, {7}, 20, {5, 6}));
  const auto r = b.step(next);
  CHECK(max_abs_diff(r.outputs[0].logits, r.outputs[1].logits) < 1e-6);
  CHECK(r.outputs[0].token == r.outputs[1].token);
  CHECK_THROWS_AS(b.copy_blocks({{0, 1000}}), error);
}

TEST_CASE("forward: block sizes other than 16 page correctly") {
  auto f = tiny_file();
  const auto tokens = some_tokens(37, 300, 2);
  std::vector<float> first;
  for (int32_t bs : {16, 1, 5, 32}) {
    CAPTURE(bs);
    auto b = make_backend(f, 64, bs);
    const int n = (37 + bs - 1) / bs;
    std::vector<int32_t> table(n);
    for (int i = 0; i < n; ++i) table[i] = (i * 7) % 64;  // scattered, no repeats for n <= 64
    batch_plan p;
    p.sequences.push_back(step_of(1, tokens, 0, table));
    const auto l = b.step(p).outputs[0].logits;
    if (first.empty()) first = l;
    CHECK(max_abs_diff(l, first) < 1e-4);
  }
}

TEST_CASE("forward: blocks swapped out to host memory and back continue like the original") {
  auto f = tiny_file();
  cpu::cpu_backend_options o;
  o.num_blocks = 16;
  o.num_swap_blocks = 4;
  o.num_threads = 2;
  cpu::cpu_backend b(f, o);
  CHECK(b.num_swap_blocks() == 4);
  const auto prompt = some_tokens(20, b.config().vocab_size, 4);
  batch_plan p;
  p.sequences.push_back(step_of(1, prompt, 0, {0, 1}, false));
  b.step(p);
  batch_plan next;
  next.sequences.push_back(step_of(1, {9}, 20, {0, 1}));
  const auto want = b.step(next).outputs[0].logits;
  // Out to host blocks 3 and 2, device blocks overwritten by another sequence, back into 7, 8.
  b.swap_out({{0, 3}, {1, 2}});
  batch_plan other;
  other.sequences.push_back(step_of(2, some_tokens(30, b.config().vocab_size, 8), 0, {0, 1}, false));
  b.step(other);
  b.swap_in({{3, 7}, {2, 8}});
  batch_plan resumed;
  resumed.sequences.push_back(step_of(1, {9}, 20, {7, 8}));
  CHECK(max_abs_diff(b.step(resumed).outputs[0].logits, want) < 1e-6);
  CHECK_THROWS_AS(b.swap_out({{0, 4}}), error);
  CHECK_THROWS_AS(b.swap_in({{4, 0}}), error);
}
