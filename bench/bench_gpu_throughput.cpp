// The CUDA backend on a GPU machine: --check compares its logits with the CPU backend's on
// a teacher-forced token sequence (top-1 agreement, exit 1 below --min-agreement); without
// it, decode throughput of the backend alone (no actors) at several stream counts, with
// the CPU backend as the peer at the small counts. Prints a table and one JSON line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/cli_args.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

std::vector<int32_t> token_sequence(int n, int32_t vocab, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (int32_t)((i * 7919 + salt * 104729 + 17) % (vocab - 1)) + 1;
  return t;
}

std::vector<float> teacher_forced_logits(backend& b, const std::vector<int32_t>& tokens) {
  batch_plan plan;
  sequence_step s;
  s.seq_id = 1;
  s.tokens = tokens;
  s.wants_all_logits = true;
  s.params.temperature = 0.0f;
  const int32_t bs = b.kv_shape().block_size;
  for (int32_t i = 0; i * bs < (int32_t)tokens.size(); ++i) s.block_table.push_back(i);
  plan.sequences.push_back(s);
  return b.step(plan).outputs.front().logits;
}

// Decode tokens per second of `streams` greedy sequences, each with a 32-token prompt.
double decode_tokens_per_s(backend& b, int streams, int steps) {
  const int32_t prompt = 32, bs = b.kv_shape().block_size;
  const int32_t blocks_per = (prompt + steps + bs) / bs;
  if ((int64_t)blocks_per * streams > b.kv_shape().num_blocks) return -1.0;
  std::vector<sequence_step> seqs(streams);
  for (int i = 0; i < streams; ++i) {
    auto& s = seqs[i];
    s.seq_id = (uint64_t)i + 1;
    s.tokens = token_sequence(prompt, b.config().vocab_size, i);
    s.params.temperature = 0.0f;
    for (int32_t k = 0; k < blocks_per; ++k) s.block_table.push_back(i * blocks_per + k);
  }
  batch_plan prefill;
  for (int i = 0; i < streams; i += 16) {  // prefill in batches of 16 prompts
    prefill.sequences.assign(seqs.begin() + i, seqs.begin() + std::min(streams, i + 16));
    const auto r = b.step(prefill);
    for (size_t k = 0; k < r.outputs.size(); ++k) {
      seqs[i + k].start_pos = prompt;
      seqs[i + k].tokens = {r.outputs[k].token};
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < steps; ++step) {
    batch_plan plan;
    plan.sequences = seqs;
    const auto r = b.step(plan);
    for (int i = 0; i < streams; ++i) {
      seqs[i].start_pos += 1;
      seqs[i].tokens = {r.outputs[i].token};
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return (double)streams * steps / s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const apps::cli_args args(argc, argv, 1, {"--model", "--threads", "--tokens", "--min-agreement", "--steps"},
                              {"--check"});
    const auto path = args.get_or("--model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    auto file = std::make_shared<const gguf::file>(gguf::file::open(path));
    cpu::cpu_backend_options co;
    co.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
    co.num_blocks = 1200;
    cpu::cpu_backend cpu(file, co);
    gpu::cuda_backend_options go;
    go.max_model_len = 4096;
    auto cuda = gpu::make_cuda_backend(file, go);
    std::printf("device: cuda:0 %s; KV blocks %d\n", gpu::cuda_device_description(0).c_str(),
                cuda->kv_shape().num_blocks);
    if (args.has("--check")) {
      const int n = (int)args.get_int("--tokens", 512, 16, 4096);
      const auto tokens = token_sequence(n, cpu.config().vocab_size, 0);
      const auto a = teacher_forced_logits(cpu, tokens), b = teacher_forced_logits(*cuda, tokens);
      const int64_t vocab = cpu.config().vocab_size;
      int agree = 0;
      double worst = 0.0;
      for (int i = 0; i < n; ++i) {
        int64_t ba = 0, bb = 0;
        for (int64_t v = 1; v < vocab; ++v) {
          if (a[i * vocab + v] > a[i * vocab + ba]) ba = v;
          if (b[i * vocab + v] > b[i * vocab + bb]) bb = v;
          worst = std::max(worst, (double)std::fabs(a[i * vocab + v] - b[i * vocab + v]));
        }
        agree += ba == bb;
      }
      const double ratio = (double)agree / n;
      std::printf("logits check: %d positions, top-1 agreement %.4f, max |cpu - cuda| %.4f\n", n, ratio, worst);
      std::printf("{\"bench\":\"gpu_check\",\"positions\":%d,\"top1_agreement\":%.4f,\"max_abs_diff\":%.4f}\n", n, ratio,
                  worst);
      return ratio >= args.get_float("--min-agreement", 0.99) ? 0 : 1;
    }
    const int steps = (int)args.get_int("--steps", 64, 4, 4096);
    std::printf("%8s %16s %16s\n", "streams", "cuda tok/s", "cpu tok/s");
    std::string json = "{\"bench\":\"gpu_throughput\",\"rows\":[";
    for (int streams : {1, 16, 64, 256}) {
      const double g = decode_tokens_per_s(*cuda, streams, steps);
      const double c = streams <= 16 ? decode_tokens_per_s(cpu, streams, 16) : -1.0;
      std::printf("%8d %16.1f %16s\n", streams, g, c < 0 ? "-" : std::to_string((int)c).c_str());
      char row[128];
      std::snprintf(row, sizeof row, "%s{\"streams\":%d,\"cuda_tok_s\":%.1f,\"cpu_tok_s\":%.1f}",
                    streams == 1 ? "" : ",", streams, g, c);
      json += row;
    }
    std::printf("%s]}\n", json.c_str());
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "bench_gpu_throughput: %s\n", e.what());
    return 2;
  }
}
