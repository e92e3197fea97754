// The CPU backend on the real default model against golden data from llama.cpp
// (tests/data/make_golden_logits.py): teacher-forced top-1 agreement, perplexity, greedy
// continuations, full logit rows, and batch invariance of greedy decoding.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/engine/single_sequence.hpp"
#include "troupe/model/tokenizer.hpp"
#include "llama_cpp_goldens.hpp"
#include "util/require_model.hpp"

using namespace troupe;

namespace {

// Loaded once for all tests in this file (16 sequences of up to 1152 positions); nullptr when the file is absent.
test::loaded_model* model() {
  static const auto m = test::load_model_if_present(TROUPE_TEST_MODEL, 16 * 72);
  return m.get();
}

simdjson::dom::element load_json(simdjson::dom::parser& parser, const std::string& name) {
  return parser.load(std::string(TROUPE_TEST_DATA_DIR) + "/" + name);
}

using test::argmax;

std::vector<int32_t> ints(simdjson::dom::array a) { return test::json_ints(a); }

#define REQUIRE_MODEL() \
  TROUPE_REQUIRE_MODEL();  \
  REQUIRE(model() != nullptr)

}  // namespace

// This model carries activations of ~25,000 in its residual stream, so the last bits of any
// rounding change move its logits by ~0.1: llama.cpp's own two attention paths (flash
// attention on and off) agree on only ~96.7% of top-1 predictions over these texts
// (tests/data/golden_self_agreement.json). troupe is held to at least that overall, and to
// 99% wherever llama.cpp's top-2 margin is at least 0.2, where it is not a coin toss.
TEST_CASE("llama.cpp agreement: teacher-forced next-token top-1 agrees as well as llama.cpp agrees with itself") {
  REQUIRE_MODEL();
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_teacher_forced.json");
  simdjson::dom::parser self_parser;
  const auto self = load_json(self_parser, "golden_self_agreement.json");
  single_sequence seq(*model()->backend, model()->eog_ids);
  test::check_teacher_forced_bar(seq, model()->backend->config().vocab_size, golden, self);
}

TEST_CASE("llama.cpp agreement: perplexity of the first 1024 tokens of GPL-3 is within 1%") {
  REQUIRE_MODEL();
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_ppl_gpl3.json");
  single_sequence seq(*model()->backend, model()->eog_ids);
  test::check_perplexity_bar(seq, model()->backend->config().vocab_size, golden);
}

TEST_CASE("llama.cpp agreement: greedy continuations match up to llama.cpp's first near-tie") {
  REQUIRE_MODEL();
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_greedy.json");
  single_sequence seq(*model()->backend, model()->eog_ids);
  const int num_prompts = test::check_greedy_continuations(seq, golden);
  CHECK(num_prompts >= 5);
}

TEST_CASE("llama.cpp agreement: full logit rows are close to llama.cpp's") {
  REQUIRE_MODEL();
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_full_logits.json");
  const auto tokens = ints(golden["prompt_tokens"].get_array());
  const auto rows = ints(golden["positions"].get_array());
  const int32_t vocab = (int32_t)int64_t(golden["n_vocab"]);
  std::ifstream in(std::string(TROUPE_TEST_DATA_DIR) + "/golden_full_logits.f16", std::ios::binary);
  std::vector<uint16_t> want((size_t)vocab * rows.size());
  in.read(reinterpret_cast<char*>(want.data()), (std::streamsize)(want.size() * 2));
  REQUIRE(in.good());
  single_sequence seq(*model()->backend, model()->eog_ids);
  const auto logits = seq.score(tokens);
  for (size_t r = 0; r < rows.size(); ++r) {
    const float* got = &logits[(size_t)rows[r] * vocab];
    double ab = 0, aa = 0, bb = 0, max_diff = 0;
    for (int32_t t = 0; t < vocab; ++t) {
      const double w = fp16_to_fp32(want[r * vocab + t]);
      ab += w * got[t], aa += (double)got[t] * got[t], bb += w * w;
      max_diff = std::max(max_diff, std::fabs(w - got[t]));
    }
    const double cosine = ab / std::sqrt(aa * bb);
    const auto top1 = ints(golden["top1"].get_array());
    CHECK(argmax(got, vocab) == top1[r]);
    MESSAGE("position " << rows[r] << ": cosine " << cosine << ", max |diff| " << max_diff);
    CHECK(cosine > 0.999);
  }
}

TEST_CASE("llama.cpp agreement: 16 sequences batched decode the same greedy tokens as alone") {
  REQUIRE_MODEL();
  simdjson::dom::parser parser;
  const auto golden = load_json(parser, "golden_greedy.json");
  std::vector<std::vector<int32_t>> prompts;
  for (auto p : golden["prompts"].get_array()) prompts.push_back(ints(p["prompt_tokens"].get_array()));
  for (size_t i = 0; prompts.size() < 16; ++i) {  // 16 distinct prompts: variations of the golden ones
    auto p = prompts[i];
    p.insert(p.begin(), prompts[(i + 3) % 8].begin(), prompts[(i + 3) % 8].begin() + 3);
    prompts.push_back(p);
  }
  auto& b = *model()->backend;
  const int32_t bs = b.kv_shape().block_size;
  constexpr int num_steps = 24;
  auto run = [&](const std::vector<size_t>& which) {
    std::vector<std::vector<int32_t>> out(prompts.size());
    std::vector<int32_t> pos(prompts.size(), 0);
    for (int step = 0; step <= num_steps; ++step) {
      batch_plan plan;
      for (size_t i : which) {
        sequence_step s;
        s.seq_id = i;
        s.tokens = step == 0 ? prompts[i] : std::vector<int32_t>{out[i].back()};
        s.start_pos = pos[i];
        const int32_t end = pos[i] + (int32_t)s.tokens.size();
        for (int32_t blk = 0; blk < (end + bs - 1) / bs; ++blk) s.block_table.push_back((int32_t)i * 72 + blk);
        s.params.temperature = 0.0f;
        pos[i] = end;
        plan.sequences.push_back(std::move(s));
      }
      const auto r = b.step(plan);
      for (size_t k = 0; k < which.size(); ++k) out[which[k]].push_back(r.outputs[k].token);
    }
    return out;
  };
  std::vector<size_t> all(prompts.size());
  std::iota(all.begin(), all.end(), 0);
  const auto batched = run(all);
  for (size_t i = 0; i < prompts.size(); ++i) {
    CAPTURE(i);
    CHECK(run({i})[i] == batched[i]);
  }
}
