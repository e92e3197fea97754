// What the actor runtime costs per generated token, counted rather than timed: actor
// messages handled and heap allocations (count and bytes), for B streams decoding T tokens
// each. Every actor runs under CAF's deterministic test scheduler, where one job is one
// message, and the backend answers at once, so the counts are exact and repeatable. The
// backend's own allocations (its step_result) are included; tokenizing and detokenizing
// are too, as in serving.
//
//   usage: bench_hops --model M.gguf [--tokens 64] [--streams 1,8,32,64]
#include <caf/scheduler/test_coordinator.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <sstream>

#include "apps/cli_args.hpp"
#include "troupe/actors/engine.hpp"
#include "troupe/model/gguf.hpp"

namespace {

std::atomic<uint64_t> num_allocations{0};
std::atomic<uint64_t> num_allocated_bytes{0};

}  // namespace

void* operator new(std::size_t n) {
  num_allocations.fetch_add(1, std::memory_order_relaxed);
  num_allocated_bytes.fetch_add(n, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace troupe;

namespace {

// Answers every sampled sequence at once with a token derived from its last fed token.
class instant_backend final : public backend {
 public:
  explicit instant_backend(model_config config) : config_(std::move(config)) {}
  const model_config& config() const override { return config_; }
  kv_cache_shape kv_shape() const override { return {4096, 16, 0}; }
  step_result step(const batch_plan& plan) override {
    step_result r;
    r.outputs.reserve(plan.sequences.size());
    for (const auto& s : plan.sequences) {
      sequence_output o;
      o.seq_id = s.seq_id;
      if (s.wants_sample) o.token = 100 + static_cast<int32_t>((7919u * static_cast<uint32_t>(s.tokens.back())) % 20000u);
      r.outputs.push_back(std::move(o));
    }
    return r;
  }
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>&) override {}
  int32_t num_swap_blocks() const override { return 0; }
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>&) override {}
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>&) override {}

 private:
  model_config config_;
};

struct counting_sink : event_sink {
  void on_event(const std::string&, const request_event& e) override {
    if (auto d = std::get_if<delta_event>(&e)) num_tokens += static_cast<int64_t>(d->token_ids.size());
    if (std::holds_alternative<done_event>(e) || std::holds_alternative<error_event>(e)) ++num_ended;
  }
  int64_t num_tokens = 0;
  int64_t num_ended = 0;
};

struct counts {
  double messages_per_token = 0;
  double allocations_per_token = 0;
  double bytes_per_token = 0;
  int64_t num_tokens = 0;
};

counts measure(const std::shared_ptr<const model_bundle>& model, int32_t num_streams, int32_t num_tokens) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  caf::actor_system sys{cfg};
  auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  engine_options o;
  o.detached_worker = false;
  o.scheduling.max_num_seqs = std::max(num_streams, 1);
  o.scheduling.max_num_batched_tokens = std::max(2048, num_streams * 64);
  o.scheduling.max_model_len = 1024;
  auto b = std::make_shared<instant_backend>(model->config);
  counts out;
  {
    engine eng(sys, model, b, o);
    sched.run();
    auto sink = std::make_shared<counting_sink>();
    const uint64_t allocations_before = num_allocations.load();
    const uint64_t bytes_before = num_allocated_bytes.load();
    size_t num_messages = 0;
    for (int32_t i = 0; i < num_streams; ++i) {
      request r;
      // Appended, not "literal" + std::to_string(i): GCC 12 warns on that (-Wrestrict, a
      // false positive).
      r.id = "s";
      r.id += std::to_string(i);
      r.prompt = "Stream ";
      r.prompt += std::to_string(i);
      r.prompt += ": please continue the story.";
      r.params.temperature = 0.0f;
      r.params.max_tokens = num_tokens;
      r.params.ignore_eos = true;
      eng.submit(std::move(r), sink);
    }
    while (sink->num_ended < num_streams) {
      const size_t n = sched.run();
      num_messages += n;
      if (n == 0 && sink->num_ended < num_streams) {
        std::fprintf(stderr, "bench_hops: the engine went idle with %lld of %d requests open\n",
                     static_cast<long long>(num_streams - sink->num_ended), num_streams);
        std::exit(1);
      }
    }
    const double tokens = static_cast<double>(sink->num_tokens);
    out.num_tokens = sink->num_tokens;
    out.messages_per_token = static_cast<double>(num_messages) / tokens;
    out.allocations_per_token = static_cast<double>(num_allocations.load() - allocations_before) / tokens;
    out.bytes_per_token = static_cast<double>(num_allocated_bytes.load() - bytes_before) / tokens;
  }
  sched.run();
  return out;
}

std::vector<int32_t> parse_list(const std::string& text) {
  std::vector<int32_t> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const apps::cli_args args(argc, argv, 1, {"--model", "--tokens", "--streams"}, {});
    const auto path = args.get("--model");
    if (!path) {
      std::fprintf(stderr, "usage: bench_hops --model M.gguf [--tokens 64] [--streams 1,8,32,64]\n");
      return 2;
    }
    const int32_t num_tokens = static_cast<int32_t>(args.get_int("--tokens", 64, 1, 1000));
    const auto streams = parse_list(args.get_or("--streams", "1,8,32,64"));
    auto file = std::make_shared<const gguf::file>(gguf::file::open(*path));
    auto model = model_bundle::load(file, 1024);
    std::printf("%8s %10s %14s %16s %14s\n", "streams", "tokens", "messages/tok", "allocations/tok", "bytes/tok");
    for (int32_t b : streams) {
      const auto c = measure(model, b, num_tokens);
      std::printf("%8d %10lld %14.2f %16.2f %14.0f\n", b, static_cast<long long>(c.num_tokens), c.messages_per_token,
                  c.allocations_per_token, c.bytes_per_token);
      std::printf("bench_hops streams=%d tokens=%lld messages_per_token=%.3f allocations_per_token=%.3f "
                  "bytes_per_token=%.1f\n",
                  b, static_cast<long long>(c.num_tokens), c.messages_per_token, c.allocations_per_token,
                  c.bytes_per_token);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_hops: %s\n", e.what());
    return 1;
  }
}
