// The CPU backend with a q8_0 KV cache on the real default model: against llama.cpp run
// with the same cache (-ctk q8_0 -ctv q8_0, flash attention on; golden_*_kv_q8_0.json from
// tests/data/make_golden_logits.py --kv-type q8_0), and greedy text against troupe's own
// fp16 cache.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "llama_cpp_goldens.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/engine/single_sequence.hpp"
#include "util/require_model.hpp"

using namespace troupe;

namespace {

// Top-2 margins below this count as near-ties, as in the llama.cpp greedy goldens.
constexpr float near_tie_logits = 0.1f;

// One model per dtype, each loaded on first use (16 sequences of up to 1152 positions); the
// quantized ones under the Hadamard rotation unless `rotated` is false.
test::loaded_model* model(kv_cache_dtype dtype, bool rotated = true) {
  switch (dtype) {
    case kv_cache_dtype::q8_0: {
      static const auto m = test::load_model_if_present(TROUPE_TEST_MODEL, 16 * 72, kv_cache_dtype::q8_0);
      return m.get();
    }
    case kv_cache_dtype::q4_0: {
      static const auto m = test::load_model_if_present(TROUPE_TEST_MODEL, 16 * 72, kv_cache_dtype::q4_0);
      static const auto plain =
          test::load_model_if_present(TROUPE_TEST_MODEL, 16 * 72, kv_cache_dtype::q4_0, /*kv_rotation=*/false);
      return rotated ? m.get() : plain.get();
    }
    default: {
      static const auto m = test::load_model_if_present(TROUPE_TEST_MODEL, 16 * 72, kv_cache_dtype::f16);
      return m.get();
    }
  }
}

simdjson::dom::element load_json(simdjson::dom::parser& parser, const std::string& name) {
  return parser.load(std::string(TROUPE_TEST_DATA_DIR) + "/" + name);
}

}  // namespace

TEST_CASE("llama.cpp agreement: q8_0 KV cache: perplexity of GPL-3's first 1024 tokens is within 1% of llama.cpp's with -ctk/-ctv q8_0") {
  TROUPE_REQUIRE_MODEL();
  REQUIRE(model(kv_cache_dtype::q8_0) != nullptr);
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_ppl_gpl3_kv_q8_0.json");
  const auto tokens = test::json_ints(golden["tokens"].get_array());
  const double want = double(golden["ppl"]);
  auto& m = *model(kv_cache_dtype::q8_0);
  single_sequence seq(*m.backend, m.eog_ids);
  const double ppl = test::perplexity(seq, m.backend->config().vocab_size, tokens);
  MESSAGE("troupe q8_0 KV ppl " << ppl << ", llama.cpp q8_0 KV ppl " << want);
  CHECK(tokens.size() == 1024);
  CHECK(std::fabs(ppl / want - 1.0) < 0.01);
}

// Both engines rotate Q, K and V by a Walsh-Hadamard matrix before a quantized cache
// (kv_quant.hpp), which spreads outliers over the block. At 16 levels a K or V value near a
// rounding edge lands on another level for the engines' last-bit differences, so the bar is
// 2%, not 1% (measured: 20.22 against 20.55, -1.6%).
TEST_CASE("llama.cpp agreement: q4_0 KV cache: perplexity is within 2% of llama.cpp's q4_0 cache") {
  TROUPE_REQUIRE_MODEL();
  REQUIRE(model(kv_cache_dtype::q4_0) != nullptr);
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_ppl_gpl3_kv_q4_0.json");
  const auto tokens = test::json_ints(golden["tokens"].get_array());
  const double want = double(golden["ppl"]);
  auto& m = *model(kv_cache_dtype::q4_0);
  single_sequence seq(*m.backend, m.eog_ids);
  const double ppl = test::perplexity(seq, m.backend->config().vocab_size, tokens);
  MESSAGE("troupe q4_0 KV ppl " << ppl << ", llama.cpp q4_0 KV ppl " << want);
  CHECK(tokens.size() == 1024);
  CHECK(std::fabs(ppl / want - 1.0) < 0.02);
}

// The plain block quantization (the rotation off in both engines: kv_rotation = false,
// llama.cpp's LLAMA_ATTN_ROT_DISABLE=1), the same algorithm again. Measured 23.62 against
// 23.32 (+1.3%); the rotation is worth 14% of perplexity at q4_0 on this model.
TEST_CASE("llama.cpp agreement: q4_0 KV cache without the rotation: perplexity is within 2% of llama.cpp's q4_0 cache without it") {
  TROUPE_REQUIRE_MODEL();
  REQUIRE(model(kv_cache_dtype::q4_0, false) != nullptr);
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_ppl_gpl3_kv_q4_0_norot.json");
  const auto tokens = test::json_ints(golden["tokens"].get_array());
  const double want = double(golden["ppl"]);
  auto& m = *model(kv_cache_dtype::q4_0, false);
  single_sequence seq(*m.backend, m.eog_ids);
  const double ppl = test::perplexity(seq, m.backend->config().vocab_size, tokens);
  MESSAGE("troupe q4_0 KV (no rotation) ppl " << ppl << ", llama.cpp q4_0 KV (no rotation) ppl " << want);
  CHECK(tokens.size() == 1024);
  CHECK(std::fabs(ppl / want - 1.0) < 0.02);
}

// The bar of the fp16 cache's test (test_llama_cpp_agreement.cpp): as well as llama.cpp's
// two attention paths agree with each other overall, 99% where llama.cpp's margin >= 0.2.
TEST_CASE("llama.cpp agreement: q8_0 KV cache: teacher-forced top-1 agrees with llama.cpp's as well as with fp16") {
  TROUPE_REQUIRE_MODEL();
  REQUIRE(model(kv_cache_dtype::q8_0) != nullptr);
  simdjson::dom::parser parser, self_parser;
  const auto golden = load_json(parser, "golden_teacher_forced_kv_q8_0.json");
  const auto self = load_json(self_parser, "golden_self_agreement.json");
  auto& m = *model(kv_cache_dtype::q8_0);
  single_sequence seq(*m.backend, m.eog_ids);
  const auto a = test::teacher_forced_agreement(seq, m.backend->config().vocab_size, golden);
  const double llama_self = double(self["overall"]);
  MESSAGE("q8_0 KV top-1 agreement " << a.num_agree << "/" << a.num_positions << " = " << a.overall()
                                     << " (llama.cpp flash-attention on vs off: " << llama_self
                                     << "); where llama.cpp's margin >= 0.2: " << a.num_agree_clear << "/"
                                     << a.num_clear << " = " << a.clear());
  CHECK(a.num_positions >= 1000);
  CHECK(a.overall() >= llama_self - 0.005);
  CHECK(a.clear() >= 0.99);
}

TEST_CASE("llama.cpp agreement: q8_0 KV cache: greedy text equals the fp16 cache's up to its first near-tie") {
  TROUPE_REQUIRE_MODEL();
  REQUIRE(model(kv_cache_dtype::f16) != nullptr);
  REQUIRE(model(kv_cache_dtype::q8_0) != nullptr);
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_greedy.json");
  const int num_compared = test::check_greedy_runs_agree(*model(kv_cache_dtype::f16), *model(kv_cache_dtype::q8_0),
                                                        golden, 48, near_tie_logits);
  // Not vacuous: this model is often undecided (64 of the 384 tokens fall before a near-tie
  // when measured).
  CHECK(num_compared >= 48);
}
