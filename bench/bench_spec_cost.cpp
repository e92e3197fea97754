// What verifying proposals costs on this machine: the step time of B sequences decoding one
// token each (a plain decode step) against B sequences feeding 1 + k tokens each (a step
// verifying k proposals per sequence), at a given context depth. Speculation pays while the
// tokens it saves per sequence-step (its accepted proposals) exceed the extra step time in
// plain steps: with cost ratio r = t(spec) / t(plain), a sequence must accept more than
// r - 1 proposals per step on average to come out ahead. Prints that ratio per batch size,
// from which scheduler_config::speculative_max_batch is chosen (docs/speculative.md).
//
// Usage: bench_spec_cost --model M [--threads T] [--k 4] [--depth 256] [--batches 1,2,4,8,16,32]
//        [--repeat 8]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli_args.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const apps::cli_args args(argc, argv, 1, {"--model", "--threads", "--k", "--depth", "--batches", "--repeat"}, {});
    const auto path = args.get("--model");
    if (!path) throw error(error_code::invalid_argument, "--model is required");
    const int k = (int)args.get_int("--k", 4, 1, 16);
    const int depth = (int)args.get_int("--depth", 256, 1, 8192);
    const int repeat = (int)args.get_int("--repeat", 8, 1, 1000);
    const auto batches = parse_list(args.get_or("--batches", "1,2,4,8,16,32"));
    const int max_batch = *std::max_element(batches.begin(), batches.end());

    auto file = std::make_shared<const gguf::file>(gguf::file::open(*path));
    cpu::cpu_backend_options options;
    options.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
    const int32_t block_size = 16;
    const int32_t blocks_per_seq = (depth + k + 1 + block_size - 1) / block_size;
    options.num_blocks = blocks_per_seq * max_batch;
    cpu::cpu_backend backend(file, options);
    const int32_t vocab = backend.config().vocab_size;

    auto step_of = [&](int seq, int32_t start, int32_t num_tokens, int32_t num_drafts) {
      sequence_step s;
      s.seq_id = (uint64_t)seq;
      s.start_pos = start;
      for (int i = 0; i < num_tokens; ++i) s.tokens.push_back((int32_t)((7919LL * (seq * 977 + start + i) + 3) % vocab));
      s.block_table.resize(blocks_per_seq);
      std::iota(s.block_table.begin(), s.block_table.end(), seq * blocks_per_seq);
      s.params.temperature = 0.0f;
      s.num_draft_tokens = num_drafts;
      return s;
    };
    for (int seq = 0; seq < max_batch; ++seq) {  // the context, untimed
      batch_plan plan;
      plan.sequences.push_back(step_of(seq, 0, depth, 0));
      backend.step(plan);
    }
    std::printf("verification cost, %d threads, k = %d proposals, context %d\n", backend.num_threads(), k, depth);
    std::printf("%6s | %10s %10s | %6s | %s\n", "batch", "plain ms", "verify ms", "ratio",
                "accepted proposals per sequence-step to break even");
    for (int b : batches) {
      std::vector<double> plain, spec;
      for (int r = 0; r < repeat + 1; ++r) {
        batch_plan p1, pk;
        for (int seq = 0; seq < b; ++seq) {
          p1.sequences.push_back(step_of(seq, depth, 1, 0));
          pk.sequences.push_back(step_of(seq, depth, k + 1, k));
        }
        const auto t0 = std::chrono::steady_clock::now();
        backend.step(p1);
        const auto t1 = std::chrono::steady_clock::now();
        backend.step(pk);
        const auto t2 = std::chrono::steady_clock::now();
        if (r == 0) continue;
        plain.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        spec.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      }
      const double tp = median(plain), ts = median(spec);
      std::printf("%6d | %10.2f %10.2f | %6.2f | %.2f\n", b, tp, ts, ts / tp, ts / tp - 1.0);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_spec_cost: %s\n", e.what());
    return 1;
  }
}
