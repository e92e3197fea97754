// The CUDA backend on a GPU machine.
//
// --check runs the same plans on the CPU backend and the CUDA backend and compares what they
// return: the logits of every fed position (top-1 agreement, largest difference) and the
// sampled tokens. Top-1 agreement is required (--min-agreement) where the CPU's top-2
// margin is at least 0.5 logits: elsewhere the two backends' roundings (fp16 activations
// against 8-bit ones) decide a near-tie either way. The plans cover each path of the CUDA backend: one-token decode steps
// (the fused GEMV), chunks of up to 8 tokens (the GEMV over several tokens), long prefill
// chunks (dequantize + cuBLAS), a batch mixing prefill and decode over scattered block ids,
// copy-on-write block copies, swap out and back in, seeded sampling with every filter, and
// decode steps replayed as CUDA graphs. Sampling is checked exactly: the CPU sampler, run
// on the logits the CUDA backend returned with the same knobs and seed, must draw the token
// the CUDA sampler drew. Each check prints PASS or FAIL with its figures; the exit status
// is 1 when any fails.
//
// Without --check: decode throughput of the backend alone (no actors) at 1/16/64/256
// streams, with and without CUDA graphs, the CPU backend as the peer at 1 and 16 streams.
// Prints a table and one JSON line. --harness-self-test runs the checks with a second CPU
// backend in the CUDA backend's place (every check must pass with agreement 1).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "apps/cli_args.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/sampler.hpp"

using namespace troupe;

namespace {

std::vector<int32_t> token_sequence(int n, int32_t vocab, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (int32_t)(((int64_t)i * 7919 + (int64_t)salt * 104729 + 17) % (vocab - 1)) + 1;
  return t;
}

// Agreement between two backends' answers to the same plans.
constexpr double clear_margin = 0.5;

struct tally {
  int64_t positions = 0, top1_agree = 0, tokens = 0, tokens_agree = 0, clear = 0, clear_agree = 0;
  double max_abs_diff = 0.0, max_logit = 0.0;
  void add_logits(const std::vector<float>& a, const std::vector<float>& b, int64_t vocab) {
    if (a.size() != b.size()) throw error(error_code::internal, "logit counts differ: " + std::to_string(a.size()) +
                                                                  " vs " + std::to_string(b.size()));
    for (size_t row = 0; row * vocab < a.size(); ++row) {
      const float* x = a.data() + row * vocab;
      const float* y = b.data() + row * vocab;
      int64_t ba = 0, bb = 0;
      float second = -INFINITY;
      for (int64_t v = 0; v < vocab; ++v) {
        if (x[v] > x[ba]) second = x[ba], ba = v;
        else if (v != ba && x[v] > second) second = x[v];
        if (y[v] > y[bb]) bb = v;
        const double d = std::fabs((double)x[v] - (double)y[v]);
        if (!(d <= max_abs_diff)) max_abs_diff = std::isnan(d) ? INFINITY : d;
        max_logit = std::max(max_logit, (double)std::fabs(x[v]));
      }
      ++positions;
      top1_agree += ba == bb;
      if (x[ba] - second >= clear_margin) ++clear, clear_agree += ba == bb;
    }
  }
  void add(const step_result& a, const step_result& b, int64_t vocab) {
    if (a.outputs.size() != b.outputs.size()) throw error(error_code::internal, "output counts differ");
    for (size_t i = 0; i < a.outputs.size(); ++i) {
      add_logits(a.outputs[i].logits, b.outputs[i].logits, vocab);
      if (a.outputs[i].token >= 0 || b.outputs[i].token >= 0) {
        ++tokens;
        tokens_agree += a.outputs[i].token == b.outputs[i].token;
      }
    }
  }
  double agreement() const { return positions == 0 ? 1.0 : (double)top1_agree / (double)positions; }
  double clear_agreement() const { return clear == 0 ? 1.0 : (double)clear_agree / (double)clear; }
};

struct checker {
  backend& cpu;
  backend& cuda;
  double min_agreement;
  int failures = 0;
  std::string json;

  step_result both(const batch_plan& plan, tally& t) {
    const auto a = cpu.step(plan);
    const auto b = cuda.step(plan);
    t.add(a, b, cpu.config().vocab_size);
    return a;
  }

  void run(const char* name, const std::function<void(tally&)>& body, double min_token_agreement = 0.0) {
    tally t;
    std::string verdict = "PASS", why;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      body(t);
      if (t.clear_agreement() < min_agreement) verdict = "FAIL", why = " (top-1 agreement below the minimum)";
      const double token_rate = t.tokens == 0 ? 1.0 : (double)t.tokens_agree / (double)t.tokens;
      if (token_rate < min_token_agreement) verdict = "FAIL", why = " (sampled tokens disagree too often)";
    } catch (const std::exception& e) {
      verdict = "FAIL";
      why = std::string(" (error: ") + e.what() + ")";
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    failures += verdict == "FAIL";
    std::printf("%s %-28s positions %5lld top-1 %.4f (margin >= %.1f: %.4f of %lld) max|diff| %7.4f (max|logit| %6.2f) "
                "tokens %lld/%lld  %.0f ms%s\n",
                verdict.c_str(), name, (long long)t.positions, t.agreement(), clear_margin, t.clear_agreement(),
                (long long)t.clear, t.max_abs_diff, t.max_logit,
                (long long)t.tokens_agree, (long long)t.tokens, ms, why.c_str());
    std::fflush(stdout);
    char row[320];
    std::snprintf(row, sizeof row,
                  "%s{\"check\":\"%s\",\"pass\":%s,\"positions\":%lld,\"top1\":%.4f,\"top1_clear\":%.4f,"
                  "\"max_abs_diff\":%.4f,\"tokens\":%lld,\"tokens_agree\":%lld}",
                  json.empty() ? "" : ",", name, verdict == "PASS" ? "true" : "false", (long long)t.positions,
                  t.agreement(), t.clear_agreement(), std::isfinite(t.max_abs_diff) ? t.max_abs_diff : -1.0, (long long)t.tokens,
                  (long long)t.tokens_agree);
    json += row;
  }
};

sequence_step teacher_step(uint64_t id, const std::vector<int32_t>& all, int32_t from, int32_t count,
                           const std::vector<int32_t>& blocks) {
  sequence_step s;
  s.seq_id = id;
  s.tokens.assign(all.begin() + from, all.begin() + from + count);
  s.start_pos = from;
  s.wants_all_logits = true;
  s.params.temperature = 0.0f;
  s.block_table = blocks;
  return s;
}

// Block ids for `n` positions: ids first, first+stride, ... (scattered when stride > 1).
std::vector<int32_t> blocks_for(int32_t n, int32_t block_size, int32_t first, int32_t stride) {
  std::vector<int32_t> b;
  for (int32_t i = 0; i * block_size < n; ++i) b.push_back(first + i * stride);
  return b;
}

int run_checks(backend& cpu, backend& cuda, backend& cuda_graphs, double min_agreement, int tokens) {
  const int32_t vocab = cpu.config().vocab_size, bs = cpu.kv_shape().block_size;
  checker c{cpu, cuda, min_agreement};
  const auto seq = token_sequence(tokens, vocab, 0);
  const auto table = blocks_for(tokens, bs, 0, 1);
  int64_t cpu_draws = 0, cpu_draws_agree = 0;

  c.run("decode one token per step", [&](tally& t) {  // positions 0..63 fed one at a time
    for (int32_t p = 0; p < std::min(64, tokens); ++p) {
      batch_plan plan;
      plan.sequences.push_back(teacher_step(1, seq, p, 1, table));
      c.both(plan, t);
    }
  });
  c.run("chunks of 2..8 tokens", [&](tally& t) {  // the multi-token GEMV, ragged chunk sizes
    int32_t p = 0, k = 2;
    while (p + k <= std::min(96, tokens)) {
      batch_plan plan;
      plan.sequences.push_back(teacher_step(2, seq, p, k, table));
      c.both(plan, t);
      p += k;
      k = k == 8 ? 2 : k + 1;
    }
  });
  c.run("prefill in one chunk", [&](tally& t) {  // dequantize + cuBLAS
    batch_plan plan;
    plan.sequences.push_back(teacher_step(3, seq, 0, tokens, table));
    c.both(plan, t);
  });
  c.run("prefill in chunks of 100", [&](tally& t) {
    for (int32_t p = 0; p < tokens; p += 100) {
      batch_plan plan;
      plan.sequences.push_back(teacher_step(4, seq, p, std::min(100, tokens - p), table));
      c.both(plan, t);
    }
  });
  // 12 sequences over interleaved block ids; each step mixes prefill chunks and decode tokens.
  const int nseq = 12, len = 80;
  std::vector<std::vector<int32_t>> seqs, tables;
  for (int i = 0; i < nseq; ++i) {
    seqs.push_back(token_sequence(len, vocab, i + 1));
    tables.push_back(blocks_for(len + bs, bs, 200 + i, nseq));
  }
  c.run("mixed batch, 12 sequences", [&](tally& t) {
    std::vector<int32_t> pos(nseq, 0);
    for (int step = 0; step < 24; ++step) {
      batch_plan plan;
      for (int i = 0; i < nseq; ++i) {
        const int32_t want = (i + step) % 4 == 0 ? 13 : 1;  // some chunks, mostly decode
        const int32_t k = std::min(want, len - pos[i]);
        if (k <= 0) continue;
        plan.sequences.push_back(teacher_step(100 + i, seqs[i], pos[i], k, tables[i]));
        pos[i] += k;
      }
      c.both(plan, t);
    }
  });
  c.run("copy-on-write fork", [&](tally& t) {  // seq 100's first blocks copied, then decoded on
    const int32_t keep = 2 * bs;
    batch_plan plan;
    plan.sequences.push_back(teacher_step(500, seqs[0], 0, keep, blocks_for(keep, bs, 600, 1)));
    c.both(plan, t);
    std::vector<std::pair<int32_t, int32_t>> pairs{{600, 610}, {601, 611}};
    cpu.copy_blocks(pairs);
    cuda.copy_blocks(pairs);
    for (int32_t p = keep; p < keep + 8; ++p) {
      batch_plan next;
      next.sequences.push_back(teacher_step(501, seqs[0], p, 1, {610, 611, 612}));
      c.both(next, t);
    }
  });
  if (cpu.num_swap_blocks() >= 4 && cuda.num_swap_blocks() >= 4) {
    c.run("swap out and back in", [&](tally& t) {
      const int32_t n = 3 * bs;
      batch_plan plan;
      plan.sequences.push_back(teacher_step(700, seqs[1], 0, n, {620, 621, 622, 623}));
      c.both(plan, t);
      std::vector<std::pair<int32_t, int32_t>> out{{620, 0}, {621, 1}, {622, 2}}, in{{0, 630}, {1, 631}, {2, 632}};
      cpu.swap_out(out);
      cuda.swap_out(out);
      batch_plan clobber;  // overwrite the device blocks swapped out
      clobber.sequences.push_back(teacher_step(701, seqs[2], 0, n, {620, 621, 622}));
      c.both(clobber, t);
      cpu.swap_in(in);
      cuda.swap_in(in);
      for (int32_t p = n; p < n + 8; ++p) {
        batch_plan next;
        next.sequences.push_back(teacher_step(702, seqs[1], p, 1, {630, 631, 632, 633}));
        c.both(next, t);
      }
    });
  }
  c.run("seeded sampling, all filters", [&](tally& t) {
    // 12 sequences x 16 steps of sampled decode with different knobs, teacher forced. The
    // CUDA backend returns its logits with its draw; the CPU sampler, given those logits
    // and the same knobs and seed, must draw the same token (it is the reference the GPU
    // sampler's searches were written against). The CPU backend's own draws are counted
    // too but not required to agree: its logits round differently, which moves draws.
    const sampler reference(vocab, {});  // the backends here have no end-of-generation ids either
    for (int step = 0; step < 16; ++step) {
      batch_plan plan;
      for (int i = 0; i < nseq; ++i) {
        auto s = step == 0 ? teacher_step(800 + i, seqs[i], 0, 16, tables[i])
                           : teacher_step(800 + i, seqs[i], 15 + step, 1, tables[i]);
        s.params.temperature = 0.6f + 0.1f * (float)(i % 5);
        s.params.top_k = i % 3 == 0 ? 40 : 0;
        s.params.top_p = i % 2 == 0 ? 0.9f : 1.0f;
        s.params.min_p = i % 4 == 1 ? 0.05f : 0.0f;
        s.params.repetition_penalty = i % 5 == 2 ? 1.1f : 1.0f;
        s.params.frequency_penalty = i % 6 == 3 ? 0.5f : 0.0f;
        s.params.seed = 1234 + (uint64_t)i;
        s.params.num_logprobs = i % 4 == 0 ? 5 : 0;
        s.penalty_tokens.assign(seqs[i].begin(), seqs[i].begin() + 16 + step);
        s.num_prompt_penalty_tokens = 16;
        s.sample_index = (uint64_t)step;
        plan.sequences.push_back(s);
      }
      const auto a = cpu.step(plan);
      const auto b = cuda.step(plan);
      for (size_t k = 0; k < plan.sequences.size(); ++k) {
        const auto& q = plan.sequences[k];
        const auto& logits = b.outputs[k].logits;
        std::vector<float> last(logits.end() - vocab, logits.end());
        const auto want = reference.sample(last, q.params, q.penalty_tokens, q.num_prompt_penalty_tokens,
                                           q.sample_index);
        ++t.tokens;
        t.tokens_agree += want.token == b.outputs[k].token;
        cpu_draws_agree += a.outputs[k].token == b.outputs[k].token;
        ++cpu_draws;
      }
    }
  }, 0.99);
  std::printf("     (the CPU backend's own draws matched the CUDA backend's %lld of %lld times)\n",
              (long long)cpu_draws_agree, (long long)cpu_draws);
  if (&cuda_graphs != &cuda) {
    // Decode steps replayed as CUDA graphs: the same plans as the mixed batch's decode.
    checker g{cuda, cuda_graphs, min_agreement};
    g.run("decode as CUDA graphs (vs no graphs)", [&](tally& t) {
      for (int i = 0; i < nseq; ++i) {
        batch_plan plan;
        plan.sequences.push_back(teacher_step(900 + i, seqs[i], 0, 32, tables[i]));
        g.both(plan, t);
      }
      for (int32_t p = 32; p < 48; ++p) {
        batch_plan plan;
        for (int i = 0; i < nseq; ++i) {
          auto s = teacher_step(900 + i, seqs[i], p, 1, tables[i]);
          s.wants_all_logits = false;  // graphs take greedy decode steps; compare the tokens
          plan.sequences.push_back(s);
        }
        g.both(plan, t);
      }
    }, 0.99);
    c.failures += g.failures;
    c.json += "," + g.json;
  }
  std::printf("{\"bench\":\"gpu_check\",\"checks\":[%s],\"failures\":%d}\n", c.json.c_str(), c.failures);
  return c.failures == 0 ? 0 : 1;
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
    const apps::cli_args args(argc, argv, 1,
                              {"--model", "--threads", "--tokens", "--min-agreement", "--steps", "--kv-blocks",
                               "--fp16-weight-share"},
                              {"--check", "--no-cpu", "--harness-self-test"});
    const auto path = args.get_or("--model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    auto file = std::make_shared<const gguf::file>(gguf::file::open(path));
    cpu::cpu_backend_options co;
    co.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
    co.num_blocks = 1200;
    co.num_swap_blocks = 16;
    cpu::cpu_backend cpu(file, co);
    if (args.has("--harness-self-test")) {  // the checks with a second CPU backend in the CUDA backend's place
      cpu::cpu_backend other(file, co);
      return run_checks(cpu, other, other, args.get_float("--min-agreement", 0.99),
                        (int)args.get_int("--tokens", 512, 128, 4096));
    }
    // Two CUDA backends share the device (plain and with CUDA graphs): each gets a capped pool.
    gpu::cuda_backend_options go;
    go.max_model_len = 4096;
    go.num_blocks = (int32_t)args.get_int("--kv-blocks", 8192, 1200, 1 << 20);
    go.num_swap_blocks = 16;
    go.fp16_weight_share = args.get_float("--fp16-weight-share", go.fp16_weight_share);
    auto cuda = gpu::make_cuda_backend(file, go);
    go.cuda_graphs = true;
    auto cuda_graphs = gpu::make_cuda_backend(file, go);
    std::printf("device: cuda:0 %s; KV blocks %d; model %s\n", gpu::cuda_device_description(0).c_str(),
                cuda->kv_shape().num_blocks, path.c_str());
    std::fflush(stdout);
    if (args.has("--check")) {
      const int n = (int)args.get_int("--tokens", 512, 128, 4096);
      return run_checks(cpu, *cuda, *cuda_graphs, args.get_float("--min-agreement", 0.99), n);
    }
    const int steps = (int)args.get_int("--steps", 64, 4, 4096);
    const bool with_cpu = !args.has("--no-cpu");
    std::printf("%8s %16s %20s %16s\n", "streams", "cuda tok/s", "cuda+graphs tok/s", "cpu tok/s");
    std::string json = "{\"bench\":\"gpu_throughput\",\"model\":\"" + path + "\",\"rows\":[";
    for (int streams : {1, 16, 64, 256}) {
      const double g = decode_tokens_per_s(*cuda, streams, steps);
      const double gg = decode_tokens_per_s(*cuda_graphs, streams, steps);
      const double c = with_cpu && streams <= 16 ? decode_tokens_per_s(cpu, streams, 16) : -1.0;
      std::printf("%8d %16.1f %20.1f %16s\n", streams, g, gg, c < 0 ? "-" : std::to_string((int)c).c_str());
      std::fflush(stdout);
      char row[160];
      std::snprintf(row, sizeof row, "%s{\"streams\":%d,\"cuda_tok_s\":%.1f,\"cuda_graphs_tok_s\":%.1f,\"cpu_tok_s\":%.1f}",
                    streams == 1 ? "" : ",", streams, g, gg, c);
      json += row;
    }
    std::printf("%s]}\n", json.c_str());
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "bench_gpu_throughput: %s\n", e.what());
    return 2;
  }
}
