// Serving throughput of the actor runtime in-process: N concurrent streams (prompt
// --prompt-tokens, output --gen-tokens, ignore_eos) through engine::submit, for each N in
// --streams. Prints output tokens/s, time to first token p50/p99, KV waste and the share of
// step time the scheduler spends around the worker's compute (actor/scheduling overhead).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <vector>

#include "troupe/actors/engine.hpp"
#include "apps/cli_args.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/gpu/cuda_backend.hpp"

using namespace troupe;
using clock_type = std::chrono::steady_clock;

namespace {

// prefix + n; written out because GCC 12 warns (-Wrestrict, a false positive) on
// "literal" + std::to_string(n).
inline std::string numbered(const char* prefix, long long n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}


class timing_sink : public event_sink {
 public:
  explicit timing_sink(clock_type::time_point start) : start_(start) {}
  void on_event(const std::string& id, const request_event& e) override {
    std::lock_guard lock(mutex_);
    if (auto d = std::get_if<delta_event>(&e)) {
      if (!d->token_ids.empty() && !first_.count(id)) {
        first_[id] = std::chrono::duration<double, std::milli>(clock_type::now() - start_).count();
      }
      num_tokens_ += (int64_t)d->token_ids.size();
    } else if (std::holds_alternative<done_event>(e) || std::holds_alternative<error_event>(e)) {
      if (std::holds_alternative<error_event>(e)) ++num_errors_;
      ++num_ended_;
      cv_.notify_all();
    }
  }
  void wait(size_t n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return num_ended_ >= n; });
  }
  std::vector<double> ttft() {
    std::lock_guard lock(mutex_);
    std::vector<double> v;
    for (auto& [id, ms] : first_) v.push_back(ms);
    std::sort(v.begin(), v.end());
    return v;
  }
  int64_t num_tokens() const { return num_tokens_; }
  int64_t num_errors() const { return num_errors_; }

 private:
  clock_type::time_point start_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, double> first_;
  int64_t num_tokens_ = 0;
  int64_t num_errors_ = 0;
  size_t num_ended_ = 0;
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, (size_t)(p * (double)(sorted.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const apps::cli_args args(argc, argv, 1, {"--model", "--threads", "--prompt-tokens", "--gen-tokens", "--streams", "--async-scheduling", "--device"},
                              {"--cuda-graphs", "--no-steady-decodes"});
    const auto path = args.get("--model");
    if (!path) throw error(error_code::invalid_argument, "--model is required");
    const int prompt_tokens = (int)args.get_int("--prompt-tokens", 128, 1, 4096);
    const int gen_tokens = (int)args.get_int("--gen-tokens", 128, 1, 4096);
    std::vector<int> streams;
    std::stringstream list(args.get_or("--streams", "1,4,16,32,64"));
    for (std::string s; std::getline(list, s, ',');) streams.push_back(std::stoi(s));
    const int max_streams = *std::max_element(streams.begin(), streams.end());

    auto file = std::make_shared<const gguf::file>(gguf::file::open(*path));
    auto model = model_bundle::load(file, prompt_tokens + gen_tokens + 16);
    cpu::cpu_backend_options o;
    o.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
    o.num_blocks = max_streams * ((prompt_tokens + gen_tokens + 15) / 16 + 1) + 16;
    const std::string device = args.get_or("--device", "cpu");
    std::shared_ptr<troupe::backend> backend;
    std::string threads = std::to_string(o.num_threads);
    if (device == "cuda") {  // the CUDA backend (a GPU machine): the runtime over a GPU-speed step
      gpu::cuda_backend_options g;
      g.num_blocks = o.num_blocks;
      g.max_model_len = prompt_tokens + gen_tokens + 16;
      g.max_num_batched_tokens = std::max(2048, max_streams);
      g.cuda_graphs = args.has("--cuda-graphs");
      g.eog_ids = model->tok.eog_ids();
      backend = gpu::make_cuda_backend(file, g);
      threads = "cuda:0 " + gpu::cuda_device_description(0) + (g.cuda_graphs ? ", CUDA graphs" : "");
    } else if (device == "cpu") {
      auto c = std::make_shared<cpu::cpu_backend>(file, o);
      threads = std::to_string(c->num_threads()) + " threads";
      backend = c;
    } else {
      throw error(error_code::invalid_argument, "--device takes cpu or cuda");
    }
    engine_options eo;
    eo.scheduling.max_num_seqs = max_streams;
    eo.scheduling.max_num_batched_tokens = std::max(512, max_streams);
    eo.scheduling.max_model_len = prompt_tokens + gen_tokens + 16;
    eo.enable_prefix_caching = false;  // distinct prompts anyway; measure the plain path
    const std::string async_mode = args.get_or("--async-scheduling", "off");
    if (async_mode != "on" && async_mode != "off") throw error(error_code::invalid_argument, "--async-scheduling takes on or off");
    eo.scheduling.async_scheduling = async_mode == "on";
    eo.scheduling.steady_decodes = !args.has("--no-steady-decodes");  // one-by-one planning, for comparison
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    engine eng(sys, model, backend, eo);

    std::printf("troupe serving, %s, prompt %d, output %d tokens per stream, %s scheduling, steady decode lane %s\n",
                threads.c_str(), prompt_tokens, gen_tokens, eo.scheduling.async_scheduling ? "asynchronous" : "synchronous",
                eo.scheduling.steady_decodes ? "on" : "off");
    std::printf("%8s %12s %12s %12s %10s %10s\n", "streams", "output tok/s", "TTFT p50 ms", "TTFT p99 ms",
                "KV waste", "overhead");
    for (int n : streams) {
      const auto before = eng.stats();
      const auto start = clock_type::now();
      auto sink = std::make_shared<timing_sink>(start);
      for (int i = 0; i < n; ++i) {
        request r;
        r.id = numbered("s", i);
        std::vector<int32_t> ids(prompt_tokens);
        for (int t = 0; t < prompt_tokens; ++t) ids[t] = (int32_t)((7919LL * (t + 1) * (i + 3)) % 40000 + 100);
        r.prompt = model->tok.decode(ids, false);
        r.params.temperature = 0.0f;
        r.params.max_tokens = gen_tokens;
        r.params.ignore_eos = true;
        eng.submit(r, sink);
      }
      sink->wait((size_t)n);
      const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
      const auto after = eng.stats();
      const auto ttft = sink->ttft();
      const double busy = after.step_busy_seconds - before.step_busy_seconds;
      const double overhead = after.step_overhead_seconds - before.step_overhead_seconds;
      std::printf("%8d %12.1f %12.1f %12.1f %9.2f%% %9.2f%%\n", n, (double)sink->num_tokens() / seconds,
                  percentile(ttft, 0.5), percentile(ttft, 0.99), 100.0 * after.blocks.waste_ratio(),
                  100.0 * overhead / std::max(1e-9, busy + overhead));
      std::printf("RESULT {\"streams\": %d, \"output_tok_s\": %.2f, \"ttft_p50_ms\": %.2f, \"ttft_p99_ms\": %.2f, "
                  "\"errors\": %lld, \"overhead_share\": %.5f}\n",
                  n, (double)sink->num_tokens() / seconds, percentile(ttft, 0.5), percentile(ttft, 0.99),
                  (long long)sink->num_errors(), overhead / std::max(1e-9, busy + overhead));
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_serving: %s\n", e.what());
    return 1;
  }
}
