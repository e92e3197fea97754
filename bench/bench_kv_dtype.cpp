// The KV cache dtypes side by side on one model (--kv-cache-dtype f16 | q8_0 | q4_0): bytes
// a token of context takes, how many full-length sequences a fixed KV budget holds, the
// perplexity of GPL-3's first 1024 tokens (the tests' definition) and how often each
// position's top-1 token equals the fp16 cache's, and single-sequence decode speed deep in a
// context. fp16 is the peer every row is compared with. Prints a table, then one JSON line
// per dtype.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli_args.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/engine/single_sequence.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/tokenizer.hpp"

using namespace troupe;

namespace {

struct row {
  kv_cache_dtype dtype;
  int64_t bytes_per_token = 0;
  int32_t num_budget_blocks = 0;
  int64_t max_sequences = 0;
  double ppl = 0.0;
  double top1_agreement = 0.0;  // with the fp16 cache, over the perplexity positions
  std::vector<double> decode_tok_s;  // per depth
};

sequence_step make_step(int32_t start, std::vector<int32_t> tokens, int32_t block_size) {
  sequence_step s;
  s.start_pos = start;
  s.block_table.resize((start + (int32_t)tokens.size() + block_size - 1) / block_size);
  std::iota(s.block_table.begin(), s.block_table.end(), 0);
  s.tokens = std::move(tokens);
  s.params.temperature = 0.0f;
  return s;
}

// Tokens per second of gen_tokens single-token steps after `depth` cached positions.
double decode_speed(cpu::cpu_backend& backend, int32_t depth, int32_t gen_tokens) {
  const int32_t vocab = backend.config().vocab_size, bs = backend.kv_shape().block_size;
  for (int32_t filled = 0; filled < depth;) {
    const int32_t n = std::min(2048, depth - filled);
    std::vector<int32_t> fill(n);
    for (int32_t i = 0; i < n; ++i) fill[i] = (int32_t)((7919LL * (filled + i) + 3) % vocab);
    batch_plan plan;
    plan.sequences.push_back(make_step(filled, std::move(fill), bs));
    backend.step(plan);
    filled += n;
  }
  int32_t token = 1;
  auto run = [&](int32_t from, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
      batch_plan p;
      p.sequences.push_back(make_step(from + i, {token}, bs));
      token = backend.step(p).outputs[0].token;
    }
  };
  run(depth, 4);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  run(depth + 4, gen_tokens);
  return gen_tokens / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int32_t> argmaxes(const std::vector<float>& logits, int32_t vocab) {
  std::vector<int32_t> out(logits.size() / vocab);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = (int32_t)(std::max_element(&logits[i * vocab], &logits[(i + 1) * vocab]) - &logits[i * vocab]);
  }
  return out;
}

double perplexity(const std::vector<float>& logits, int32_t vocab, const std::vector<int32_t>& tokens) {
  double nll = 0.0;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const float* r = &logits[(i - 1) * vocab];
    const float m = *std::max_element(r, r + vocab);
    double sum = 0.0;
    for (int32_t t = 0; t < vocab; ++t) sum += std::exp((double)r[t] - m);
    nll += std::log(sum) - ((double)r[tokens[i]] - m);
  }
  return std::exp(nll / (double)(tokens.size() - 1));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const apps::cli_args args(argc, argv, 1,
                              {"--model", "--threads", "--budget-mib", "--context", "--depths", "--gen-tokens", "--text"},
                              {});
    const auto path = args.get("--model");
    if (!path) throw error(error_code::invalid_argument, "--model is required");
    const int64_t budget_mib = args.get_int("--budget-mib", 256, 1, 1 << 20);
    const int32_t context = (int32_t)args.get_int("--context", 2048, 1, 1 << 20);
    const int32_t gen_tokens = (int32_t)args.get_int("--gen-tokens", 32, 1, 4096);
    std::vector<int32_t> depths;
    {
      std::stringstream list(args.get_or("--depths", "1024,4096"));
      for (std::string d; std::getline(list, d, ',');) depths.push_back(std::stoi(d));
    }
    const std::string text_path = args.get_or("--text", "/usr/share/common-licenses/GPL-3");
    std::ifstream text_file(text_path);
    if (!text_file) throw error(error_code::invalid_argument, "--text: cannot read " + text_path);
    const std::string text((std::istreambuf_iterator<char>(text_file)), std::istreambuf_iterator<char>());

    auto file = std::make_shared<const gguf::file>(gguf::file::open(*path));
    const auto tok = tokenizer::from_gguf(*file);
    auto tokens = tok.encode(text, false, false);
    tokens.resize(std::min<size_t>(tokens.size(), 1024));

    cpu::cpu_backend_options options;
    options.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
    options.eog_ids = tok.eog_ids();
    std::vector<row> rows;
    std::vector<int32_t> f16_top1;
    int threads = 0;
    for (const kv_cache_dtype dtype : {kv_cache_dtype::f16, kv_cache_dtype::q8_0, kv_cache_dtype::q4_0}) {
      row r{dtype};
      options.kv_dtype = dtype;
      options.num_blocks = 0;
      options.kv_cache_bytes = budget_mib << 20;
      const auto config = model_config::from_gguf(*file);
      r.num_budget_blocks = cpu::kv_pool_num_blocks(config, options);
      r.bytes_per_token = kv_block_bytes(dtype, config.num_layers, options.block_size, config.kv_dim()) / options.block_size;
      r.max_sequences = r.num_budget_blocks / ((context + options.block_size - 1) / options.block_size);

      // The measurements run on a pool just large enough for the deepest one.
      const int32_t deepest = std::max<int32_t>(*std::max_element(depths.begin(), depths.end()) + gen_tokens + 4,
                                                (int32_t)tokens.size());
      options.num_blocks = deepest / options.block_size + 2;
      cpu::cpu_backend backend(file, options);
      threads = backend.num_threads();
      const int32_t vocab = backend.config().vocab_size;
      {
        single_sequence seq(backend, options.eog_ids);
        const auto logits = seq.score(tokens);
        r.ppl = perplexity(logits, vocab, tokens);
        const auto top1 = argmaxes(logits, vocab);
        if (dtype == kv_cache_dtype::f16) f16_top1 = top1;
        size_t same = 0;
        for (size_t i = 0; i + 1 < top1.size(); ++i) same += top1[i] == f16_top1[i];
        r.top1_agreement = (double)same / (double)(top1.size() - 1);
      }
      for (const int32_t depth : depths) r.decode_tok_s.push_back(decode_speed(backend, depth, gen_tokens));
      rows.push_back(r);
    }

    std::printf("KV cache dtypes, %s, %d threads; budget %lld MiB at %d-token sequences; perplexity and top-1 over "
                "%zu tokens of %s\n\n",
                path->c_str(), threads, (long long)budget_mib, context, tokens.size(), text_path.c_str());
    std::printf("| dtype | KV bytes/token | blocks in %lld MiB | max %d-token seqs | ppl | top-1 = f16 |", (long long)budget_mib,
                context);
    for (const int32_t d : depths) std::printf(" decode tok/s @ d%d |", d);
    std::printf("\n|---|---|---|---|---|---|");
    for (size_t i = 0; i < depths.size(); ++i) std::printf("---|");
    std::printf("\n");
    for (const auto& r : rows) {
      std::printf("| %s | %lld (%.2fx) | %d | %lld | %.3f | %.2f%% |", std::string(name_of(r.dtype)).c_str(),
                  (long long)r.bytes_per_token, (double)rows[0].bytes_per_token / r.bytes_per_token, r.num_budget_blocks,
                  (long long)r.max_sequences, r.ppl, 100.0 * r.top1_agreement);
      for (size_t i = 0; i < depths.size(); ++i) {
        std::printf(" %.1f (%.2fx) |", r.decode_tok_s[i], r.decode_tok_s[i] / rows[0].decode_tok_s[i]);
      }
      std::printf("\n");
    }
    for (const auto& r : rows) {
      std::printf("{\"dtype\": \"%s\", \"kv_bytes_per_token\": %lld, \"budget_blocks\": %d, \"max_sequences\": %lld, "
                  "\"ppl\": %.4f, \"top1_agreement_with_f16\": %.4f",
                  std::string(name_of(r.dtype)).c_str(), (long long)r.bytes_per_token, r.num_budget_blocks,
                  (long long)r.max_sequences, r.ppl, r.top1_agreement);
      for (size_t i = 0; i < depths.size(); ++i) std::printf(", \"decode_tok_s_d%d\": %.2f", depths[i], r.decode_tok_s[i]);
      std::printf("}\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kv_dtype: %s\n", e.what());
    return 1;
  }
}
