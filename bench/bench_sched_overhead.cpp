// The scheduling-overhead benchmark: the real actor graph (request actors,
// batcher, scheduler, worker) drives a stand-in backend whose every step takes a fixed
// time, with 1 to 1,024 streams each sending short requests back to back. Whatever a step
// costs beyond the backend's own time is the runtime's: planning, messages, fan-out,
// detokenizing. The peer in the same run is a plain loop over the same scheduler_policy,
// the worker's plan_state and the backend on one thread, with no actors and no
// request-side work. --async sync|async|both: the scheduler plans each step after the
// last is back, or while it runs (both: one table each, in one run). --speculative ngram:
// the requests may speculate by prompt lookup, as on a server run with it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "troupe/actors/engine.hpp"
#include "apps/cli_args.hpp"
#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/proposer.hpp"
#include "troupe/engine/request_state.hpp"
#include "troupe/engine/scheduler_policy.hpp"
#include "troupe/engine/serving_metrics.hpp"
#include "troupe/engine/step_plan.hpp"
#include "troupe/engine/trace.hpp"
#include "troupe/model/stand_in_backend.hpp"

using namespace troupe;
using clock_type = std::chrono::steady_clock;

namespace {

std::string prompt_for(int stream, int64_t n) {
  std::string s = "Stream ";
  s += std::to_string(stream);
  s += ", request ";
  s += std::to_string(n);
  s += ": please continue the story.";
  return s;
}

// N streams, each submitting its next request when the last one ends, until told to stop.
class closed_loop_sink : public event_sink, public std::enable_shared_from_this<closed_loop_sink> {
 public:
  closed_loop_sink(engine& eng, int32_t gen_tokens) : eng_(eng), gen_tokens_(gen_tokens) {}

  void start(int num_streams) {
    {
      std::lock_guard lock(mutex_);
      num_active_ = num_streams;
    }
    for (int i = 0; i < num_streams; ++i) submit(i);
  }
  void on_event(const std::string& id, const request_event& e) override {
    const auto* done = std::get_if<done_event>(&e);
    const auto* err = std::get_if<error_event>(&e);
    if (!done && !err) return;
    if (done) {
      num_requests_ += 1;
      num_tokens_ += done->usage.completion_tokens;
    } else {
      num_errors_ += 1;
    }
    const int stream = std::stoi(id.substr(0, id.find('/')));
    if (is_running_) return submit(stream);
    std::lock_guard lock(mutex_);
    if (--num_active_ == 0) cv_.notify_all();
  }
  void stop_and_wait() {
    is_running_ = false;
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return num_active_ == 0; });
  }
  int64_t num_requests() const { return num_requests_; }
  int64_t num_tokens() const { return num_tokens_; }
  int64_t num_errors() const { return num_errors_; }

 private:
  void submit(int stream) {
    const int64_t n = next_request_++;
    request r;
    r.id = std::to_string(stream) + "/" + std::to_string(n);
    r.prompt = prompt_for(stream, n);
    r.params.temperature = 0.0f;
    r.params.max_tokens = gen_tokens_;
    r.params.ignore_eos = true;
    eng_.submit(std::move(r), shared_from_this());
  }

  engine& eng_;
  int32_t gen_tokens_;
  std::atomic<bool> is_running_{true};
  std::atomic<int64_t> next_request_{0};
  std::atomic<int64_t> num_requests_{0};
  std::atomic<int64_t> num_tokens_{0};
  std::atomic<int64_t> num_errors_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  int num_active_ = 0;
};

// What the plain loop spends per step outside the backend, in seconds, and in which part.
struct loop_cost {
  double total = 0;    // wall time per step not spent in the backend
  double plan = 0;     // scheduler_policy::schedule: the next step's plan and KV
  double worker = 0;   // plan_state: the delta turned into the backend's batch, samples recorded
  double results = 0;  // scheduler_policy::on_step_done and the refills: tokens appended, stop rules
  int64_t num_steps = 0;
  double lane = 0;        // sequences per step planned in the steady decode lane
  double one_by_one = 0;  // sequences per step planned one by one (what changed: admissions, prompt chunks, ...)
};

// The peer: scheduler_policy and the same stand-in backend in a loop on this thread, the
// streams refilled as sequences finish.
loop_cost plain_loop_overhead(const model_bundle& model, const scheduler_config& config, int32_t num_blocks,
                              std::chrono::microseconds step_time, int num_streams, int32_t gen_tokens, double seconds) {
  block_manager blocks({num_blocks, 16, 0, false});
  scheduler_policy policy(config, blocks, model.tok.eog_ids());
  plan_state plans(model.tok.eog_ids());
  stand_in_backend backend(model.config, num_blocks, 16, step_time);
  uint64_t next_id = 1;
  // Tokenizing is request-side work, which the loop leaves out: each stream's prompt is
  // tokenized once, and its requests reuse it.
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < num_streams; ++i) {
    request r;
    r.prompt = prompt_for(i, 0);
    prompts.push_back(prompt_tokens(r, model.tok, model.tmpl, model.max_model_len));
  }
  auto add = [&](int stream) {
    sequence_request s;
    s.id = next_id++;
    s.prompt_tokens = prompts[static_cast<size_t>(stream)];
    s.params.temperature = 0.0f;
    s.params.max_tokens = gen_tokens;
    s.params.ignore_eos = true;
    policy.add(std::move(s), 0);
  };
  for (int i = 0; i < num_streams; ++i) add(i);
  loop_cost cost;
  using seconds_type = std::chrono::duration<double>;
  const int64_t lane_before = policy.stats().num_steady_tokens;
  int64_t num_planned = 0;
  const auto start = clock_type::now();
  const auto end = start + seconds_type(seconds);
  for (auto t0 = start; t0 < end;) {
    auto step = policy.schedule(0);
    if (step.is_empty()) break;  // cannot happen while every stream has a request
    const auto t1 = clock_type::now();
    num_planned += static_cast<int64_t>(step.plan.full.size() + step.plan.next.size());
    const auto& batch = plans.apply(std::move(step.plan));
    const auto t2 = clock_type::now();
    const auto result = backend.step(batch);
    const auto t3 = clock_type::now();
    plans.on_result(result);
    const auto t4 = clock_type::now();
    for (const auto& e : policy.on_step_done(result)) {
      if (e.state != sequence_state::running) add(static_cast<int>(e.seq_id % static_cast<uint64_t>(num_streams)));
    }
    const auto t5 = clock_type::now();
    cost.plan += seconds_type(t1 - t0).count();
    cost.worker += seconds_type((t2 - t1) + (t4 - t3)).count();
    cost.results += seconds_type(t5 - t4).count();
    ++cost.num_steps;
    t0 = t5;
  }
  const double wall = seconds_type(clock_type::now() - start).count();
  const double n = static_cast<double>(std::max<int64_t>(1, cost.num_steps));
  cost.total = (wall - backend.busy_seconds()) / n;
  cost.plan /= n;
  cost.worker /= n;
  cost.results /= n;
  cost.lane = static_cast<double>(policy.stats().num_steady_tokens - lane_before) / n;
  cost.one_by_one = static_cast<double>(num_planned) / n - cost.lane;
  return cost;
}

// What the scheduler's metric updates cost per step (on_step, on_queues and the overhead
// counter, as the step handler calls them), in seconds, on a registry of its own.
double metrics_cost_per_step() {
  serving_metrics metrics(std::make_shared<metrics_registry>());
  scheduler_stats queues;
  constexpr int num_steps = 1000000;
  const auto start = clock_type::now();
  for (int i = 0; i < num_steps; ++i) {
    metrics.on_step({i * 0.002, i * 0.002 + 0.0019, 64, 64 + i % 128, 2048});
    queues.num_running = i % 64;
    metrics.on_queues(queues);
    metrics.on_scheduler_overhead(1e-5);
  }
  return std::chrono::duration<double>(clock_type::now() - start).count() / num_steps;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const apps::cli_args args(argc, argv, 1, {"--model", "--streams", "--step-us", "--gen-tokens", "--seconds", "--async", "--trace", "--trace-streams", "--speculative"}, {"--loop-only", "--no-steady-decodes"});
    const auto path = args.get_or("--model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    const auto step_time = std::chrono::microseconds(args.get_int("--step-us", 2000, 0, 1000000));
    const int32_t gen_tokens = static_cast<int32_t>(args.get_int("--gen-tokens", 32, 1, 4096));
    const double seconds = args.get_float("--seconds", 3.0);
    const std::string async_mode = args.get_or("--async", "both");
    if (async_mode != "sync" && async_mode != "async" && async_mode != "both") {
      throw std::runtime_error("--async must be sync, async or both, not '" + async_mode + "'");
    }
    // --trace PREFIX: after each mode's table, one second at --trace-streams streams is
    // recorded (when each actor ran) to PREFIX-sync.csv / PREFIX-async.csv.
    const std::string trace_prefix = args.get_or("--trace", "");
    const int trace_streams = static_cast<int>(args.get_int("--trace-streams", 256, 1, 100000));
    std::vector<bool> modes;
    if (async_mode != "async") modes.push_back(false);
    if (async_mode != "sync") modes.push_back(true);
    std::vector<int> streams;
    std::stringstream list(args.get_or("--streams", "1,4,16,64,256,1024"));
    for (std::string s; std::getline(list, s, ',');) streams.push_back(std::stoi(s));
    const int max_streams = std::max(*std::max_element(streams.begin(), streams.end()),
                                     trace_prefix.empty() ? 0 : trace_streams);

    // Only the tokenizer and template are used: the stand-in backend replaces the weights.
    auto file = std::make_shared<const gguf::file>(gguf::file::open(path));
    auto model = model_bundle::load(file, 256);
    const int32_t num_blocks = max_streams * ((48 + gen_tokens) / 16 + 1) + 64;
    engine_options eo;
    eo.scheduling.max_num_seqs = max_streams;
    eo.scheduling.max_num_batched_tokens = std::max(2048, 2 * max_streams);
    eo.scheduling.max_queue_len = 4 * max_streams + 64;
    eo.enable_prefix_caching = false;
    eo.scheduling.steady_decodes = !args.has("--no-steady-decodes");  // the old one-by-one planning, for comparison
    // --speculative ngram: requests may propose by prompt lookup (a server run with
    // --speculative ngram); past speculative_max_batch streams they cannot, and plan as plain
    // decodes. The stand-in verifies what is proposed against its own rule.
    eo.scheduling.speculative = parse_speculative_method(args.get_or("--speculative", "off"));
    if (eo.scheduling.speculative == speculative_method::draft) throw std::runtime_error("--speculative draft needs a draft model");
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};

    // --loop-only: the plain loop alone (no actors), its cost split by part, per stream count.
    if (args.has("--loop-only")) {
      std::printf("plain loop (scheduler_policy + plan_state + stand-in backend of %lld us), %d output tokens per "
                  "request, %.1f s per point, speculative %s\n",
                  static_cast<long long>(step_time.count()), gen_tokens, seconds, to_string(eo.scheduling.speculative));
      std::printf("%7s %8s %10s %10s %10s %10s %12s %10s %12s\n", "streams", "steps", "loop us", "plan us", "worker us",
                  "results us", "ns/stream", "lane/step", "others/step");
      for (int n : streams) {
        const auto c = plain_loop_overhead(*model, eo.scheduling, num_blocks, step_time, n, gen_tokens, seconds);
        std::printf("%7d %8lld %10.1f %10.1f %10.1f %10.1f %12.1f %10.1f %12.1f\n", n, static_cast<long long>(c.num_steps),
                    c.total * 1e6, c.plan * 1e6, c.worker * 1e6, c.results * 1e6, c.total * 1e9 / n, c.lane,
                    c.one_by_one);
        std::printf("RESULT {\"loop_only\": true, \"streams\": %d, \"steps\": %lld, \"loop_overhead_us\": %.2f, "
                    "\"loop_plan_us\": %.2f, \"loop_worker_us\": %.2f, \"loop_results_us\": %.2f, "
                    "\"lane_per_step\": %.1f, \"one_by_one_per_step\": %.1f}\n",
                    n, static_cast<long long>(c.num_steps), c.total * 1e6, c.plan * 1e6, c.worker * 1e6,
                    c.results * 1e6, c.lane, c.one_by_one);
        std::fflush(stdout);
      }
      return 0;
    }
    std::printf("scheduling overhead: stand-in backend of %lld us per step, %d output tokens per request, %.1f s "
                "per point, %u hardware threads, speculative %s\n",
                static_cast<long long>(step_time.count()), gen_tokens, seconds, std::thread::hardware_concurrency(),
                to_string(eo.scheduling.speculative));
    const double metrics_cost = metrics_cost_per_step();
    std::printf("metric updates: %.0f ns per step (on_step + on_queues + overhead counter, alone on one thread)\n",
                metrics_cost * 1e9);
    std::printf("RESULT {\"metrics_ns_per_step\": %.1f}\n", metrics_cost * 1e9);
    for (const bool is_async : modes) {
    eo.scheduling.async_scheduling = is_async;
    auto backend = std::make_shared<stand_in_backend>(model->config, num_blocks, 16, step_time);
    engine eng(sys, model, backend, eo);
    std::printf("\n%s scheduling\n", is_async ? "asynchronous (step N+1 planned while step N runs)" : "synchronous");
    std::printf("%7s %7s %9s %10s %10s %10s %10s %9s %9s %9s %8s %8s\n", "streams", "steps", "req/s", "tok/s", "step us",
                "backend us", "overhead", "overhead", "sched us", "loop us", "gap us", "gap us");
    std::printf("%7s %7s %9s %10s %10s %10s %10s %9s %9s %9s %8s %8s\n", "", "", "", "", "(wall)", "(in step)", "us/step",
                "% of step", "per step", "overhead", "p50", "p90");
    for (int n : streams) {
      const auto before = eng.stats();
      const double backend_before = backend->busy_seconds();
      auto sink = std::make_shared<closed_loop_sink>(eng, gen_tokens);
      const auto start = clock_type::now();
      backend->take_gap_percentiles();
      sink->start(n);
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      sink->stop_and_wait();
      const double wall = std::chrono::duration<double>(clock_type::now() - start).count();
      const auto after = eng.stats();
      const double num_steps = static_cast<double>(std::max<int64_t>(1, after.scheduling.num_steps - before.scheduling.num_steps));
      const double step_wall = wall / num_steps;
      const double in_step = (backend->busy_seconds() - backend_before) / num_steps;
      const double overhead = step_wall - in_step;
      const double scheduler = (after.step_overhead_seconds - before.step_overhead_seconds) / num_steps;
      const auto [gap_p50, gap_p90] = backend->take_gap_percentiles();
      const auto loop_parts = plain_loop_overhead(*model, eo.scheduling, num_blocks, step_time, n, gen_tokens,
                                                  std::min(1.0, seconds));
      const double loop = loop_parts.total;
      std::printf("%7d %7.0f %9.1f %10.0f %10.1f %10.1f %10.1f %8.1f%% %9.1f %9.1f %8.1f %8.1f\n", n, num_steps,
                  static_cast<double>(sink->num_requests()) / wall, static_cast<double>(sink->num_tokens()) / wall,
                  step_wall * 1e6, in_step * 1e6, overhead * 1e6, 100.0 * overhead / std::max(1e-12, in_step),
                  scheduler * 1e6, loop * 1e6, gap_p50, gap_p90);
      std::printf("RESULT {\"async\": %s, \"streams\": %d, \"steps\": %.0f, \"requests_per_s\": %.2f, \"tokens_per_s\": %.1f, "
                  "\"step_wall_us\": %.1f, \"backend_step_us\": %.1f, \"overhead_us\": %.1f, \"overhead_pct\": %.2f, "
                  "\"scheduler_us\": %.1f, \"loop_overhead_us\": %.1f, \"loop_plan_us\": %.1f, \"loop_worker_us\": %.1f, "
                  "\"loop_results_us\": %.1f, \"gap_p50_us\": %.1f, \"gap_p90_us\": %.1f, \"errors\": %lld}\n",
                  is_async ? "true" : "false", n, num_steps, static_cast<double>(sink->num_requests()) / wall,
                  static_cast<double>(sink->num_tokens()) / wall, step_wall * 1e6, in_step * 1e6, overhead * 1e6,
                  100.0 * overhead / std::max(1e-12, in_step), scheduler * 1e6, loop * 1e6, loop_parts.plan * 1e6,
                  loop_parts.worker * 1e6, loop_parts.results * 1e6, gap_p50, gap_p90,
                  static_cast<long long>(sink->num_errors()));
      std::fflush(stdout);
    }
    if (!trace_prefix.empty()) {
      const std::string path = trace_prefix + (is_async ? "-async.csv" : "-sync.csv");
      auto sink = std::make_shared<closed_loop_sink>(eng, gen_tokens);
      sink->start(trace_streams);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // past the first admissions
      trace::start();
      std::this_thread::sleep_for(std::chrono::seconds(1));
      const auto spans = trace::stop();
      sink->stop_and_wait();
      FILE* out = std::fopen(path.c_str(), "w");
      if (!out) throw std::runtime_error("cannot write " + path);
      std::fprintf(out, "lane,thread,begin_us,end_us\n");
      const int64_t origin = spans.empty() ? 0 : spans.front().begin_ns;
      for (const auto& sp : spans) {
        std::fprintf(out, "%s,%u,%.3f,%.3f\n", trace::name_of(sp.what), sp.thread, (sp.begin_ns - origin) * 1e-3,
                     (sp.end_ns - origin) * 1e-3);
      }
      std::fclose(out);
      std::printf("trace: %zu spans over 1 s at %d streams in %s\n", spans.size(), trace_streams, path.c_str());
    }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sched_overhead: %s\n", e.what());
    return 1;
  }
}
