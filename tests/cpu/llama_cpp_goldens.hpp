// Test helper: measures a backend against the llama.cpp goldens that
// tests/data/make_golden_logits.py writes for one model (a folder of golden_*.json):
// teacher-forced top-1 agreement, perplexity, greedy continuations. The test cases assert
// on what these return.
#pragma once
#include <doctest/doctest.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/engine/single_sequence.hpp"
#include "troupe/model/tokenizer.hpp"

namespace troupe::test {

// A GGUF file on the CPU backend, with its end-of-generation ids.
struct loaded_model {
  std::shared_ptr<const gguf::file> file;
  std::unique_ptr<cpu::cpu_backend> backend;
  std::vector<int32_t> eog_ids;
};

// The model at `path` with a KV pool of num_blocks blocks stored as kv_dtype (a quantized
// one under the Hadamard rotation unless kv_rotation is false); nullptr when the file is
// absent.
inline std::unique_ptr<loaded_model> load_model_if_present(const std::string& path, int32_t num_blocks,
                                                           kv_cache_dtype kv_dtype = kv_cache_dtype::f16,
                                                           bool kv_rotation = true) {
  std::unique_ptr<loaded_model> r;
  if (!std::filesystem::exists(path)) return r;
  r = std::make_unique<loaded_model>();
  r->file = std::make_shared<const gguf::file>(gguf::file::open(path));
  r->eog_ids = tokenizer::from_gguf(*r->file).eog_ids();
  cpu::cpu_backend_options o;
  o.num_blocks = num_blocks;
  o.kv_dtype = kv_dtype;
  o.kv_rotation = kv_rotation;
  o.eog_ids = r->eog_ids;
  r->backend = std::make_unique<cpu::cpu_backend>(r->file, o);
  return r;
}

// The greedy tokens after `prompt` (end-of-generation ids ignored), with the top-2 margin
// of each choice from the same model teacher-forced over prompt + output.
struct greedy_run {
  std::vector<int32_t> tokens;
  std::vector<float> margins;
};

inline greedy_run greedy_with_margins(loaded_model& m, const std::vector<int32_t>& prompt, int32_t num_tokens) {
  single_sequence seq(*m.backend, m.eog_ids);
  sampling_params params;
  params.temperature = 0.0f;
  params.ignore_eos = true;
  params.max_tokens = num_tokens;
  greedy_run r;
  generation_stats stats;
  seq.generate(prompt, params, [&](int32_t t) { r.tokens.push_back(t); return true; }, stats);
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), r.tokens.begin(), r.tokens.end());
  seq.reset();
  const auto logits = seq.score(all);
  const int32_t vocab = m.backend->config().vocab_size;
  for (size_t j = 0; j < r.tokens.size(); ++j) {
    std::vector<float> row(&logits[(prompt.size() - 1 + j) * vocab], &logits[(prompt.size() + j) * vocab]);
    // The run ignores end of generation: its choice is among the other tokens, and so is
    // its margin (past an end the model was sure of, the next best may be a near-tie).
    for (int32_t id : m.eog_ids) row[static_cast<size_t>(id)] = -INFINITY;
    std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<>());
    r.margins.push_back(row[0] - row[1]);
  }
  return r;
}

inline size_t num_equal_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// How many of a's tokens must equal b's: up to the token after their common prefix (where
// both runs still saw the same context, so their margins are comparable), stopping at the
// first near-tie (either run's top-2 within near_tie: past it either pick is right). A run
// that parts from the other before that is a real divergence: check
// num_equal_prefix(a, b) >= this.
inline size_t tokens_before_first_near_tie(const greedy_run& a, const greedy_run& b, float near_tie) {
  const size_t same = num_equal_prefix(a.tokens, b.tokens);
  const size_t compare = std::min(same + 1, a.tokens.size());
  for (size_t j = 0; j < compare; ++j) {
    if (std::min(a.margins[j], b.margins[j]) < near_tie) return j;
  }
  return compare;
}

inline std::vector<int32_t> json_ints(simdjson::dom::array a) {
  std::vector<int32_t> out;
  for (auto v : a) out.push_back((int32_t)int64_t(v));
  return out;
}

inline std::vector<double> json_doubles(simdjson::dom::array a) {
  std::vector<double> out;
  for (auto v : a) out.push_back(double(v));
  return out;
}

inline int32_t argmax(const float* row, int32_t n) { return (int32_t)(std::max_element(row, row + n) - row); }

struct top1_agreement {
  int64_t num_positions = 0, num_agree = 0;
  int64_t num_clear = 0, num_agree_clear = 0;  // where llama.cpp's top-2 margin >= min_margin
  double overall() const { return (double)num_agree / (double)num_positions; }
  double clear() const { return (double)num_agree_clear / (double)num_clear; }
};

// Feeds each text of golden_teacher_forced.json and compares the argmax at every position.
inline top1_agreement teacher_forced_agreement(single_sequence& seq, int32_t vocab,
                                               simdjson::dom::element golden, double min_margin = 0.2) {
  top1_agreement a;
  for (auto text : golden["texts"].get_array()) {
    const auto tokens = json_ints(text["tokens"].get_array());
    const auto top1 = json_ints(text["top1"].get_array());
    const auto l1 = json_doubles(text["top1_logit"].get_array());
    const auto l2 = json_doubles(text["top2_logit"].get_array());
    const auto logits = seq.score(tokens);
    int64_t text_agree = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool same = argmax(&logits[i * vocab], vocab) == top1[i];
      text_agree += same;
      if (l1[i] - l2[i] >= min_margin) {
        ++a.num_clear;
        a.num_agree_clear += same;
      }
    }
    MESSAGE(std::string(text["name"].get_string().value()) << ": " << text_agree << "/" << tokens.size());
    a.num_positions += (int64_t)tokens.size();
    a.num_agree += text_agree;
  }
  return a;
}

// exp(mean NLL) of tokens[1..] given the preceding ones, fed as one sequence; the
// definition of golden_ppl_gpl3.json.
inline double perplexity(single_sequence& seq, int32_t vocab, const std::vector<int32_t>& tokens) {
  const auto logits = seq.score(tokens);
  double nll = 0;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const float* row = &logits[(i - 1) * vocab];
    const float m = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int32_t t = 0; t < vocab; ++t) sum += std::exp((double)row[t] - m);
    nll += -(((double)row[tokens[i]] - m) - std::log(sum));
  }
  return std::exp(nll / (double)(tokens.size() - 1));
}

// Greedy text of `a` and `b` (two caches of one model, say) after each prompt of
// golden_greedy.json, num_tokens each: where both runs are clear (up to the first near-tie,
// see tokens_before_first_near_tie) they must pick the same tokens. Returns the number of
// tokens so compared, for the caller to check the comparison was not vacuous.
inline int check_greedy_runs_agree(loaded_model& a, loaded_model& b, simdjson::dom::element golden,
                                   int32_t num_tokens, float near_tie) {
  int num_compared = 0;
  for (auto p : golden["prompts"].get_array()) {
    const std::string name(p["name"].get_string().value());
    CAPTURE(name);
    const auto prompt = json_ints(p["prompt_tokens"].get_array());
    const auto run_a = greedy_with_margins(a, prompt, num_tokens);
    const auto run_b = greedy_with_margins(b, prompt, num_tokens);
    const size_t same = num_equal_prefix(run_a.tokens, run_b.tokens);
    const size_t compare = tokens_before_first_near_tie(run_a, run_b, near_tie);
    MESSAGE(name << ": equal for " << same << " of " << num_tokens << " tokens, first near-tie at " << compare
                 << "; margins where they part: " << (same < run_a.margins.size() ? run_a.margins[same] : -1.0f)
                 << " and " << (same < run_b.margins.size() ? run_b.margins[same] : -1.0f));
    CHECK(same >= compare);
    num_compared += static_cast<int>(compare);
  }
  return num_compared;
}

// How often two llama.cpp runs over the same texts (two golden_teacher_forced*.json files,
// say an f16 and a q8_0 cache) pick the same top-1: the noise one change makes in
// llama.cpp itself.
inline double golden_top1_agreement(simdjson::dom::element a, simdjson::dom::element b) {
  int64_t num = 0, same = 0;
  auto texts_b = b["texts"].get_array();
  auto it_b = texts_b.begin();
  for (auto text_a : a["texts"].get_array()) {
    REQUIRE(it_b != texts_b.end());
    const auto top1_a = json_ints(text_a["top1"].get_array());
    const auto top1_b = json_ints((*it_b)["top1"].get_array());
    REQUIRE(top1_a.size() == top1_b.size());
    for (size_t i = 0; i < top1_a.size(); ++i) same += top1_a[i] == top1_b[i] ? 1 : 0;
    num += static_cast<int64_t>(top1_a.size());
    ++it_b;
  }
  return num > 0 ? static_cast<double>(same) / static_cast<double>(num) : 0.0;
}

// The bar every backend's teacher-forced agreement is held to (golden_teacher_forced.json
// and golden_self_agreement.json of one model): at least llama.cpp's own flash-attention
// on/off agreement minus 0.5% overall, and 99% where llama.cpp's top-2 margin is >= 0.2.
inline void check_teacher_forced_bar(single_sequence& seq, int32_t vocab, simdjson::dom::element golden,
                                     simdjson::dom::element self) {
  const auto a = teacher_forced_agreement(seq, vocab, golden);
  const double llama_self = double(self["overall"]);
  MESSAGE("top-1 agreement " << a.num_agree << "/" << a.num_positions << " = " << a.overall()
                             << " (llama.cpp flash-attention on vs off: " << llama_self
                             << "); where llama.cpp's margin >= 0.2: " << a.num_agree_clear << "/" << a.num_clear
                             << " = " << a.clear());
  CHECK(a.num_positions >= 1000);
  CHECK(a.overall() >= llama_self - 0.005);
  CHECK(a.clear() >= 0.99);
}

// Perplexity of golden_ppl_gpl3.json's 1,024 tokens within 1% of llama.cpp's.
inline void check_perplexity_bar(single_sequence& seq, int32_t vocab, simdjson::dom::element golden) {
  const auto tokens = json_ints(golden["tokens"].get_array());
  const double want = double(golden["ppl"]);
  const double ppl = perplexity(seq, vocab, tokens);
  MESSAGE("troupe ppl " << ppl << ", llama.cpp ppl " << want);
  CHECK(tokens.size() == 1024);
  CHECK(std::fabs(ppl / want - 1.0) < 0.01);
}

// Generates greedily after each prompt of golden_greedy.json, stopping at end-of-generation
// ids as a server does, and checks the tokens against llama.cpp's up to its first near-tie
// (llama.cpp's top-2 margin below `near_tie`); where llama.cpp's first end-of-generation id
// comes before that, troupe must stop right there. Returns the number of prompts.
inline int check_greedy_continuations(single_sequence& seq, simdjson::dom::element golden, double near_tie = 0.1) {
  int num_prompts = 0;
  for (auto p : golden["prompts"].get_array()) {
    const std::string name(p["name"].get_string().value());
    const auto prompt = json_ints(p["prompt_tokens"].get_array());
    const auto want = json_ints(p["generated"].get_array());
    const auto margins = json_doubles(p["margin"].get_array());
    size_t compare = want.size();
    for (size_t j = 0; j < margins.size() && j < want.size(); ++j) {
      if (margins[j] < near_tie) {
        compare = j;
        break;
      }
    }
    bool is_stop_expected = false;
    if (auto eog = p["first_eog_index"]; !eog.is_null() && (size_t)int64_t(eog) < compare) {
      compare = (size_t)int64_t(eog);
      is_stop_expected = true;
    }
    sampling_params params;
    params.temperature = 0.0f;
    params.max_tokens = (int32_t)want.size();
    std::vector<int32_t> got;
    generation_stats stats;
    seq.reset();
    const auto reason = seq.generate(prompt, params, [&](int32_t t) { got.push_back(t); return true; }, stats);
    CAPTURE(name);
    CAPTURE(compare);
    for (size_t j = 0; j < std::min(compare, got.size()); ++j) {
      if (got[j] == want[j]) continue;
      MESSAGE(name << ": first difference at generated token " << j << " (llama.cpp's top-2 margin there "
                   << margins[j] << ", llama.cpp " << want[j] << ", troupe " << got[j] << ")");
      break;
    }
    if (is_stop_expected) {
      CHECK(reason == finish_reason::stop);
      CHECK(got == std::vector<int32_t>(want.begin(), want.begin() + (ptrdiff_t)compare));
    } else {
      REQUIRE(got.size() >= compare);
      CHECK(std::vector<int32_t>(got.begin(), got.begin() + (ptrdiff_t)compare) ==
            std::vector<int32_t>(want.begin(), want.begin() + (ptrdiff_t)compare));
    }
    ++num_prompts;
  }
  return num_prompts;
}

}  // namespace troupe::test
