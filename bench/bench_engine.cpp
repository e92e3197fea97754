// Engine throughput on one sequence, measured the way llama-bench measures llama.cpp:
// prefill = one step of --prompt-tokens tokens from an empty cache; decode = --gen-tokens
// single-token steps from an empty cache. --depth D first fills D positions (untimed), so
// that both run with D tokens of context already cached, as llama-bench's -d does. Prints a
// table, or one JSON line with --json. --kv-cache-dtype f16 | q8_0 | q4_0 picks how the KV
// cache is stored (llama-bench's -ctk/-ctv).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "apps/cli_args.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/cpu/matmul.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

double seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The process's resident memory (VmRSS) in bytes, 0 where /proc is not available.
int64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  long long kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "VmRSS: %lld kB", &kb) == 1) break;
  std::fclose(f);
  return kb * 1024;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

sequence_step make_step(int32_t start, std::vector<int32_t> tokens, int32_t block_size) {
  sequence_step s;
  s.start_pos = start;
  const int32_t blocks = (start + (int32_t)tokens.size() + block_size - 1) / block_size;
  s.block_table.resize(blocks);
  std::iota(s.block_table.begin(), s.block_table.end(), 0);
  s.tokens = std::move(tokens);
  s.params.temperature = 0.0f;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const apps::cli_args args(argc, argv, 1, {"--model", "--threads", "--prompt-tokens", "--gen-tokens", "--repeat",
                                                           "--depth", "--kv-cache-dtype"},
                              {"--json"});
    const auto path = args.get("--model");
    if (!path) throw error(error_code::invalid_argument, "--model is required");
    const int prompt_tokens = (int)args.get_int("--prompt-tokens", 512, 1, 8192);
    const int gen_tokens = (int)args.get_int("--gen-tokens", 128, 1, 8192);
    const int repeat = (int)args.get_int("--repeat", 1, 1, 100);
    const int depth = (int)args.get_int("--depth", 0, 0, 65536);

    auto file = std::make_shared<const gguf::file>(gguf::file::open(*path));
    cpu::cpu_backend_options options;
    options.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
    options.num_blocks = (depth + std::max(prompt_tokens, gen_tokens) + 15) / 16 + 1;
    const std::string dtype = args.get_or("--kv-cache-dtype", "f16");
    if (!parse_kv_cache_dtype(dtype)) {
      throw error(error_code::invalid_argument,
                  "--kv-cache-dtype must be " + std::string(kv_cache_dtype_choices) + ", got '" + dtype + "'");
    }
    options.kv_dtype = *parse_kv_cache_dtype(dtype);
    cpu::cpu_backend backend(file, options);
    const int32_t vocab = backend.config().vocab_size;
    const int32_t bs = backend.kv_shape().block_size;

    std::vector<int32_t> prompt(prompt_tokens);
    for (int i = 0; i < prompt_tokens; ++i) prompt[i] = (int32_t)((1009LL * i + 17) % vocab);

    for (int filled = 0; filled < depth;) {
      const int n = std::min(2048, depth - filled);
      batch_plan plan;
      std::vector<int32_t> fill(n);
      for (int i = 0; i < n; ++i) fill[i] = (int32_t)((7919LL * (filled + i) + 3) % vocab);
      plan.sequences.push_back(make_step(filled, std::move(fill), bs));
      backend.step(plan);
      filled += n;
    }

    std::vector<double> prefill, decode;
    for (int r = 0; r < repeat + 1; ++r) {  // the first round warms caches and pages
      batch_plan plan;
      plan.sequences.push_back(make_step(depth, prompt, bs));
      const auto t0 = std::chrono::steady_clock::now();
      backend.step(plan);
      const auto t1 = std::chrono::steady_clock::now();
      int32_t token = 1;
      for (int i = 0; i < gen_tokens; ++i) {
        batch_plan p;
        p.sequences.push_back(make_step(depth + i, {token}, bs));
        token = backend.step(p).outputs[0].token;
      }
      const auto t2 = std::chrono::steady_clock::now();
      if (r == 0) continue;
      prefill.push_back(prompt_tokens / seconds(t0, t1));
      decode.push_back(gen_tokens / seconds(t1, t2));
    }
    const double pp = median(prefill), tg = median(decode);
    // What a decode step streams: the packed matrices plus the norms (weight_bytes_per_token
    // counts the file's bytes instead).
    const int64_t packed_bytes = backend.packed_weight_bytes();
    const auto& config = backend.config();
    const int64_t norm_bytes = (2LL * config.num_layers + 1) * config.embedding_dim * 4;
    const int64_t read_bytes = packed_bytes + norm_bytes;
    if (args.has("--json")) {
      std::printf("{\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, \"weight_bytes_per_token\": %lld, "
                  "\"packed_bytes_per_token\": %lld, \"packed_weight_bytes\": %lld, \"resident_bytes\": %lld, "
                  "\"threads\": %d, \"prompt_tokens\": %d, \"gen_tokens\": %d, \"depth\": %d, \"kv_cache_dtype\": \"%s\", \"kernel_path\": \"%s\"}\n",
                  pp, tg, (long long)backend.weight_bytes_per_token(), (long long)read_bytes, (long long)packed_bytes,
                  (long long)resident_bytes(), backend.num_threads(), prompt_tokens, gen_tokens, depth,
                  dtype.c_str(), std::string(cpu::kernel_path()).c_str());
    } else {
      std::printf("troupe engine, %d threads, kernels %s, KV cache %s\n", backend.num_threads(),
                  std::string(cpu::kernel_path()).c_str(), dtype.c_str());
      std::printf("  prefill pp%-5d @ d%-5d %10.1f tok/s\n", prompt_tokens, depth, pp);
      std::printf("  decode  tg%-5d @ d%-5d %10.1f tok/s\n", gen_tokens, depth, tg);
      std::printf("  weights read per decode token: %.1f MB as stored, %.1f MB as packed\n",
                  backend.weight_bytes_per_token() / 1e6, read_bytes / 1e6);
      std::printf("  packed matrices %.1f MB, resident %.1f MB\n", packed_bytes / 1e6, resident_bytes() / 1e6);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 1;
  }
}
