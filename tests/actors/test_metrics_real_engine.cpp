// The engine's troupe_* metrics on the real actor graph (threaded CAF, the CPU backend on
// the tiny test model): after a batch of requests the counters, histograms and gauges add
// up to what the requests' own events said.
#include <doctest/doctest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "troupe/actors/engine.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

// Keeps every request's last event; wait_for(n) returns once n requests have ended.
class last_event_sink : public event_sink {
 public:
  void on_event(const std::string& id, const request_event& e) override {
    std::lock_guard lock(mutex_);
    if (auto d = std::get_if<done_event>(&e)) done[id] = *d;
    else if (auto x = std::get_if<error_event>(&e)) errors[id] = *x;
    else return;
    cv_.notify_all();
  }
  bool wait_for(size_t n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 120s, [&] { return done.size() + errors.size() >= n; });
  }
  std::map<std::string, done_event> done;
  std::map<std::string, error_event> errors;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
};

struct fixture {
  explicit fixture(bool enable_prefix_caching, std::shared_ptr<metrics_registry> registry = nullptr,
                   int32_t max_batch_size = 0, int64_t max_wait_ms = 0) {
    auto file = std::make_shared<const gguf::file>(gguf::file::parse(test::make_tiny_llama()));
    model = model_bundle::load(file, 256);
    cpu::cpu_backend_options o;
    o.num_threads = 1;
    o.num_blocks = 128;
    o.eog_ids = model->tok.eog_ids();
    auto backend = std::make_shared<cpu::cpu_backend>(file, o);
    cfg.set("scheduler.max-threads", 2);
    sys = std::make_unique<caf::actor_system>(cfg);
    engine_options eo;
    eo.enable_prefix_caching = enable_prefix_caching;
    eo.scheduling.max_num_seqs = 8;  // 12 requests: some wait for a slot
    eo.scheduling.max_num_batched_tokens = 64;
    eo.metrics = std::move(registry);
    if (max_batch_size > 0) {
      eo.scheduling.max_batch_size = max_batch_size;
      eo.scheduling.max_wait_ms = max_wait_ms;
    }
    eng = std::make_unique<engine>(*sys, model, backend, eo);
  }
  ~fixture() {
    eng.reset();
    sys.reset();
  }
  double counter(const std::string& name, const metric_labels& labels = {}) {
    return eng->metrics()->counter(name, "", labels)->value();
  }
  double gauge(const std::string& name, const metric_labels& labels = {}) {
    return eng->metrics()->gauge(name, "", labels)->value();
  }
  // A histogram's _count or _sum as rendered (the test need not know the bounds).
  double rendered(const std::string& series) {
    const auto text = eng->metrics()->render_prometheus();
    const auto at = text.find("\n" + series + " ");
    REQUIRE_MESSAGE(at != std::string::npos, series);
    return std::stod(text.substr(at + series.size() + 2));
  }

  caf::actor_system_config cfg;
  std::shared_ptr<const model_bundle> model;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<engine> eng;
};

request make(const std::string& id, const std::string& prompt, int32_t max_tokens) {
  request r;
  r.id = id;
  r.prompt = prompt;
  r.params.temperature = 0.0f;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  return r;
}

}  // namespace

TEST_CASE("engine metrics: after a batch of requests the counters and histograms add up to their events") {
  fixture f(false);
  auto sink = std::make_shared<last_event_sink>();
  constexpr int num_requests = 12;
  for (int i = 0; i < num_requests; ++i) {
    std::string prompt = "the cat sat on the mat ";
    prompt += std::string(static_cast<size_t>(i), 'a');
    f.eng->submit(make(std::to_string(i), prompt, 3 + i), sink);
    f.eng->metrics()->render_prometheus();  // rendering while the actors update is safe
  }
  REQUIRE(sink->wait_for(num_requests));
  REQUIRE(sink->done.size() == num_requests);

  double prompt_tokens = 0;
  double completion_tokens = 0;
  for (const auto& [id, d] : sink->done) {
    CHECK(d.reason == request_finish_reason::length);
    prompt_tokens += d.usage.prompt_tokens;
    completion_tokens += d.usage.completion_tokens;
  }
  CHECK(completion_tokens == num_requests * 3 + num_requests * (num_requests - 1) / 2);
  CHECK(f.counter("troupe_request_success_total", {{"finished_reason", "length"}}) == num_requests);
  CHECK(f.counter("troupe_request_success_total", {{"finished_reason", "stop"}}) == 0);
  CHECK(f.counter("troupe_prompt_tokens_total") == prompt_tokens);
  CHECK(f.counter("troupe_generation_tokens_total") == completion_tokens);
  CHECK(f.rendered("troupe_time_to_first_token_seconds_count") == num_requests);
  CHECK(f.rendered("troupe_time_per_output_token_seconds_count") == num_requests);
  // One gap per output token after each request's first.
  CHECK(f.rendered("troupe_inter_token_latency_seconds_count") == completion_tokens - num_requests);
  CHECK(f.rendered("troupe_e2e_request_latency_seconds_count") == num_requests);
  CHECK(f.rendered("troupe_request_queue_time_seconds_count") == num_requests);
  CHECK(f.rendered("troupe_request_generation_tokens_sum") == completion_tokens);

  // Without prefix caching or preemption every prompt token and every output token but
  // each request's last is fed exactly once.
  CHECK(f.counter("troupe_num_preemptions_total") == 0);
  CHECK(f.rendered("troupe_batch_size_tokens_sum") == prompt_tokens + completion_tokens - num_requests);
  // The prefill share's numerator: every prompt token, less at most one per request (a
  // prompt whose last chunk is a single token counts it as a decode).
  const double prefill_tokens = f.counter("troupe_step_prefill_tokens_total");
  CHECK(prefill_tokens <= prompt_tokens);
  CHECK(prefill_tokens >= prompt_tokens - num_requests);
  CHECK(f.gauge("troupe_scheduler_max_num_seqs") == 8);
  CHECK(f.gauge("troupe_scheduler_max_num_batched_tokens") == 64);
  const auto stats = f.eng->stats();
  CHECK(f.rendered("troupe_step_duration_seconds_count") == static_cast<double>(stats.scheduling.num_steps));
  CHECK(f.rendered("troupe_batch_size_sequences_count") == static_cast<double>(stats.scheduling.num_steps));
  CHECK(f.rendered("troupe_batch_efficiency_ratio_sum") ==
        doctest::Approx(static_cast<double>(stats.scheduling.num_scheduled_tokens) / 64));
  CHECK(f.counter("troupe_worker_busy_seconds_total") == doctest::Approx(stats.step_busy_seconds));
  CHECK(f.counter("troupe_worker_busy_seconds_total") > 0);
  // The KV slots held during the steps, integrated over their time: some were tails of
  // last blocks, never more than were held.
  const double reserved = f.counter("troupe_kv_cache_reserved_slot_seconds_total");
  const double unused = f.counter("troupe_kv_cache_unused_slot_seconds_total");
  CHECK(reserved > 0);
  CHECK(unused > 0);
  CHECK(unused < reserved);

  // The gauges were brought up to date before the last tokens went out.
  CHECK(f.gauge("troupe_num_requests_running") == 0);
  CHECK(f.gauge("troupe_num_requests_waiting") == 0);
  CHECK(f.gauge("troupe_kv_cache_blocks", {{"state", "used"}}) == 0);
  CHECK(f.gauge("troupe_kv_cache_blocks", {{"state", "free"}}) == 128);
  CHECK(f.gauge("troupe_kv_cache_capacity_blocks") == 128);
}

TEST_CASE("engine metrics: the KV pool's make-up as an info gauge") {
  fixture f(false);
  const auto text = f.eng->metrics()->render_prometheus();
  const auto at = text.find("\ntroupe_cache_config_info{");
  REQUIRE(at != std::string::npos);
  const auto line = text.substr(at + 1, text.find('\n', at + 1) - at - 1);
  CAPTURE(line);
  CHECK(line.find("kv_cache_dtype=\"f16\"") != std::string::npos);
  CHECK(line.find("block_size=\"16\"") != std::string::npos);
  CHECK(line.find("num_blocks=\"128\"") != std::string::npos);
  CHECK(line.find("bytes_per_block=\"") != std::string::npos);
  CHECK(line.substr(line.size() - 2) == " 1");
}

TEST_CASE("engine metrics: refused requests count as rejections by reason") {
  fixture f(false);
  auto sink = std::make_shared<last_event_sink>();
  f.eng->submit(make("long", std::string(2000, 'x'), 4), sink);  // past the 256-token context
  auto bad = make("bad", "hello", 4);
  bad.params.temperature = -1.0f;
  f.eng->submit(bad, sink);
  f.eng->submit(make("fine", "hello", 2), sink);
  REQUIRE(sink->wait_for(3));
  REQUIRE(sink->errors.size() == 2);
  CHECK(sink->errors["long"].code == request_error_code::context_overflow);
  CHECK(f.counter("troupe_request_rejected_total", {{"reason", "context_overflow"}}) == 1);
  CHECK(f.counter("troupe_request_rejected_total", {{"reason", "invalid_request"}}) == 1);
  CHECK(f.counter("troupe_request_success_total", {{"finished_reason", "length"}}) == 1);
}

TEST_CASE("engine metrics: a repeated prompt shows as prefix-cache hits and cached blocks once the engine drains") {
  fixture f(true);
  const std::string prompt = "the cat sat on the mat and the dog sat on the log, then the cat sat on the dog";
  for (const char* id : {"first", "again"}) {
    auto sink = std::make_shared<last_event_sink>();
    f.eng->submit(make(id, prompt, 2), sink);
    REQUIRE(sink->wait_for(1));
  }
  CHECK(f.counter("troupe_prefix_cache_hits_total") >= 16);  // at least one whole block
  CHECK(f.counter("troupe_prefix_cache_queries_total") > f.counter("troupe_prefix_cache_hits_total"));
  CHECK(f.gauge("troupe_prefix_cache_hit_ratio") > 0);
  CHECK(f.gauge("troupe_kv_cache_blocks", {{"state", "cached"}}) >= 1);
  CHECK(f.gauge("troupe_kv_cache_blocks", {{"state", "used"}}) == 0);
}

TEST_CASE("engine metrics: a registry passed in carries the engine's metrics beside the caller's own") {
  auto registry = std::make_shared<metrics_registry>();
  auto* http = registry->counter("troupe_http_requests_total", "HTTP requests.", {{"route", "/v1/completions"}});
  http->inc();
  fixture f(false, registry);
  CHECK(f.eng->metrics() == registry);
  auto sink = std::make_shared<last_event_sink>();
  f.eng->submit(make("one", "hello there", 2), sink);
  REQUIRE(sink->wait_for(1));
  const auto text = registry->render_prometheus();
  CHECK(text.find("troupe_http_requests_total{route=\"/v1/completions\"} 1\n") != std::string::npos);
  CHECK(text.find("troupe_request_success_total{finished_reason=\"length\"} 1\n") != std::string::npos);
}

TEST_CASE("engine metrics: requests held by the batcher show in troupe_num_requests_batching until released") {
  // Released when 3 have arrived (the hour-long wait never ends a batch here).
  fixture f(false, nullptr, 3, 3'600'000);
  auto sink = std::make_shared<last_event_sink>();
  const auto batching = [&] { return f.gauge("troupe_num_requests_batching"); };
  const auto eventually = [&](double want) {
    for (int i = 0; i < 1000 && batching() != want; ++i) std::this_thread::sleep_for(10ms);
    return batching() == want;
  };
  f.eng->submit(make("a", "hello", 2), sink);
  f.eng->submit(make("b", "hello there", 2), sink);
  CHECK(eventually(2));
  f.eng->submit(make("c", "hello again", 2), sink);
  REQUIRE(sink->wait_for(3));
  CHECK(batching() == 0);
  CHECK(sink->done.size() == 3);
}
