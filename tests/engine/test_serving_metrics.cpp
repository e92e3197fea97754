// serving_metrics: what a request's last event, a step, the queues and the KV pool's
// statistics do to the troupe_* metrics.
#include <doctest/doctest.h>

#include "troupe/engine/serving_metrics.hpp"

using namespace troupe;

namespace {

struct fixture {
  std::shared_ptr<metrics_registry> registry = std::make_shared<metrics_registry>();
  serving_metrics metrics{registry};

  double counter(const std::string& name, const metric_labels& labels = {}) {
    return registry->counter(name, "", labels)->value();
  }
  double gauge(const std::string& name, const metric_labels& labels = {}) {
    return registry->gauge(name, "", labels)->value();
  }
  histogram_metric::snapshot histogram(const std::string& name, const std::vector<double>& bounds) {
    return registry->histogram(name, "", bounds)->read();
  }
  std::vector<double> bounds_of(const std::string& name) {
    // The bounds the family was registered with, read back from the rendered text.
    std::vector<double> out;
    const auto text = registry->render_prometheus();
    const std::string prefix = name + "_bucket{le=\"";
    for (size_t at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at + 1)) {
      const auto value = text.substr(at + prefix.size(), text.find('"', at + prefix.size()) - at - prefix.size());
      if (value != "+Inf") out.push_back(std::stod(value));
    }
    return out;
  }
  histogram_metric::snapshot histogram(const std::string& name) { return histogram(name, bounds_of(name)); }
};

done_event done(request_finish_reason reason, int32_t prompt, int32_t completion, double ttft_ms, double tpot_ms,
                double total_ms, double queue_ms) {
  done_event d;
  d.reason = reason;
  d.usage.prompt_tokens = prompt;
  d.usage.completion_tokens = completion;
  d.timings.time_to_first_token_ms = ttft_ms;
  d.timings.per_output_token_ms = tpot_ms;
  d.timings.total_ms = total_ms;
  d.timings.queue_ms = queue_ms;
  return d;
}

}  // namespace

TEST_CASE("serving metrics: a done event counts its reason and tokens and observes its latencies in seconds") {
  fixture f;
  f.metrics.on_request_done(done(request_finish_reason::length, 10, 5, 200, 20, 300, 50));
  f.metrics.on_request_done(done(request_finish_reason::stop, 7, 1, 100, 0, 100, 10));
  f.metrics.on_request_done(done(request_finish_reason::cancelled, 4, 0, 0, 0, 30, 30));
  CHECK(f.counter("troupe_request_success_total", {{"finished_reason", "length"}}) == 1);
  CHECK(f.counter("troupe_request_success_total", {{"finished_reason", "stop"}}) == 1);
  CHECK(f.counter("troupe_request_success_total", {{"finished_reason", "cancelled"}}) == 1);
  CHECK(f.counter("troupe_request_success_total", {{"finished_reason", "timeout"}}) == 0);
  CHECK(f.counter("troupe_prompt_tokens_total") == 21);
  CHECK(f.counter("troupe_generation_tokens_total") == 6);
  const auto ttft = f.histogram("troupe_time_to_first_token_seconds");
  CHECK(ttft.count == 2u);  // only requests with output
  CHECK(ttft.sum == doctest::Approx(0.3));
  const auto tpot = f.histogram("troupe_time_per_output_token_seconds");
  CHECK(tpot.count == 1u);  // only requests with two or more tokens
  CHECK(tpot.sum == doctest::Approx(0.02));
  const auto e2e = f.histogram("troupe_e2e_request_latency_seconds");
  CHECK(e2e.count == 3u);
  CHECK(e2e.sum == doctest::Approx(0.43));
  CHECK(f.histogram("troupe_request_queue_time_seconds").sum == doctest::Approx(0.09));
  CHECK(f.histogram("troupe_request_generation_tokens").count == 3u);
}

TEST_CASE("serving metrics: an error event counts as a rejection under its code") {
  fixture f;
  f.metrics.on_request_error({request_error_code::queue_full, "full"});
  f.metrics.on_request_error({request_error_code::queue_full, "full"});
  f.metrics.on_request_error({request_error_code::context_overflow, "long"});
  CHECK(f.counter("troupe_request_rejected_total", {{"reason", "queue_full"}}) == 2);
  CHECK(f.counter("troupe_request_rejected_total", {{"reason", "context_overflow"}}) == 1);
  CHECK(f.counter("troupe_request_rejected_total", {{"reason", "internal"}}) == 0);
}

TEST_CASE("serving metrics: a step observes its duration, batch size and share of the token budget") {
  fixture f;
  f.metrics.on_step({10.0, 10.004, 3, 130, 512});
  f.metrics.on_step({10.004, 10.006, 3, 3, 512});
  const auto duration = f.histogram("troupe_step_duration_seconds");
  CHECK(duration.count == 2u);
  CHECK(duration.sum == doctest::Approx(0.006));
  CHECK(f.histogram("troupe_batch_size_sequences").sum == 6);
  CHECK(f.histogram("troupe_batch_size_tokens").sum == 133);
  CHECK(f.histogram("troupe_batch_efficiency_ratio").sum == doctest::Approx(133.0 / 512));
  CHECK(f.counter("troupe_worker_busy_seconds_total") == doctest::Approx(0.006));
}

TEST_CASE("serving metrics: KV slots are integrated over each step's time, so waste can be time-weighted") {
  fixture f;
  f.metrics.on_step({10.0, 10.5, 2, 2, 512, 160, 30});  // half a second holding 160 slots, 30 empty
  f.metrics.on_step({10.5, 12.0, 2, 2, 512, 320, 2});   // 1.5 s holding 320, 2 empty
  const double reserved = f.counter("troupe_kv_cache_reserved_slot_seconds_total");
  const double unused = f.counter("troupe_kv_cache_unused_slot_seconds_total");
  CHECK(reserved == doctest::Approx(160 * 0.5 + 320 * 1.5));
  CHECK(unused == doctest::Approx(30 * 0.5 + 2 * 1.5));
  // The long step with little waste weighs more than the short one with much.
  CHECK(unused / reserved == doctest::Approx(18.0 / 560.0));
}

TEST_CASE("serving metrics: the busy ratio is published per window of a second or more and drops to 0 when idle") {
  fixture f;
  f.metrics.on_step({100.0, 100.4, 1, 1, 64});
  CHECK(f.gauge("troupe_worker_busy_ratio") == 0);  // window still open
  f.metrics.on_step({100.6, 101.0, 1, 1, 64});      // 0.8 s busy of 1.0 s
  CHECK(f.gauge("troupe_worker_busy_ratio") == doctest::Approx(0.8));
  f.metrics.on_step({101.0, 102.0, 1, 1, 64});      // the next window: busy throughout
  CHECK(f.gauge("troupe_worker_busy_ratio") == doctest::Approx(1.0));
  f.metrics.on_idle();
  CHECK(f.gauge("troupe_worker_busy_ratio") == 0);
  f.metrics.on_step({500.0, 500.5, 1, 1, 64});  // the idle gap before is not in the window
  f.metrics.on_step({500.5, 501.0, 1, 1, 64});
  CHECK(f.gauge("troupe_worker_busy_ratio") == doctest::Approx(1.0));
}

TEST_CASE("serving metrics: queue and KV gauges follow the statistics; prefix-cache counters add the growth") {
  fixture f;
  scheduler_stats s;
  s.num_running = 4;
  s.num_waiting = 2;
  s.num_swapped = 1;
  f.metrics.on_queues(s);
  CHECK(f.gauge("troupe_num_requests_running") == 4);
  CHECK(f.gauge("troupe_num_requests_waiting") == 2);
  CHECK(f.gauge("troupe_num_requests_swapped") == 1);
  // The steady decode lane's tokens: a counter of the scheduler's running total's growth.
  CHECK(f.counter("troupe_scheduler_steady_decode_tokens_total") == 0);
  s.num_steady_tokens = 300;
  f.metrics.on_queues(s);
  s.num_steady_tokens = 420;
  f.metrics.on_queues(s);
  f.metrics.on_queues(s);
  CHECK(f.counter("troupe_scheduler_steady_decode_tokens_total") == 420);
  block_manager_stats b;
  b.num_total_blocks = 100;
  b.num_used_blocks = 25;
  b.num_cached_blocks = 5;
  b.num_free_blocks = 70;
  b.num_total_swap_blocks = 10;
  b.num_used_swap_blocks = 3;
  b.num_prefix_query_tokens = 100;
  b.num_prefix_hit_tokens = 40;
  b.num_reserved_slots = 400;
  b.num_unused_slots = 40;
  f.metrics.on_blocks(b);
  b.num_prefix_query_tokens = 150;
  b.num_prefix_hit_tokens = 60;
  f.metrics.on_blocks(b);
  CHECK(f.gauge("troupe_kv_cache_blocks", {{"state", "used"}}) == 25);
  CHECK(f.gauge("troupe_kv_cache_blocks", {{"state", "cached"}}) == 5);
  CHECK(f.gauge("troupe_kv_cache_blocks", {{"state", "free"}}) == 70);
  CHECK(f.gauge("troupe_kv_cache_capacity_blocks") == 100);
  CHECK(f.gauge("troupe_kv_cache_usage_ratio") == doctest::Approx(0.25));
  CHECK(f.gauge("troupe_kv_cache_waste_ratio") == doctest::Approx(0.1));
  CHECK(f.gauge("troupe_kv_swap_blocks", {{"state", "used"}}) == 3);
  CHECK(f.gauge("troupe_kv_swap_blocks", {{"state", "free"}}) == 7);
  CHECK(f.counter("troupe_prefix_cache_queries_total") == 150);
  CHECK(f.counter("troupe_prefix_cache_hits_total") == 60);
  CHECK(f.gauge("troupe_prefix_cache_hit_ratio") == doctest::Approx(0.4));
}

TEST_CASE("serving metrics: two engines on one registry add to the same series") {
  auto registry = std::make_shared<metrics_registry>();
  serving_metrics a(registry);
  serving_metrics b(registry);
  a.on_request_error({request_error_code::internal, "x"});
  b.on_request_error({request_error_code::internal, "y"});
  CHECK(registry->counter("troupe_request_rejected_total", "", {{"reason", "internal"}})->value() == 2);
  const auto text = registry->render_prometheus();
  CHECK(text.find("troupe_build_info{version=\"") != std::string::npos);
  CHECK(text.find("# TYPE process_start_time_seconds gauge\n") != std::string::npos);
}

TEST_CASE("serving metrics: the scheduler's attention cost is a gauge") {
  fixture f;
  CHECK(f.gauge("troupe_scheduler_attention_cost") == 0);
  f.metrics.on_attention_cost(1750.5);
  CHECK(f.gauge("troupe_scheduler_attention_cost") == doctest::Approx(1750.5));
}

TEST_CASE("serving metrics: the scheduler's speculative totals become counters, per position too, and two gauges") {
  fixture f;
  scheduler_stats s;
  f.metrics.on_queues(s);  // nothing speculative yet: no per-position series
  CHECK(f.registry->render_prometheus().find("per_pos") == std::string::npos);
  s.num_speculative_steps = 4;
  s.num_draft_tokens = 10;
  s.num_accepted_tokens = 6;
  s.num_emitted_tokens = 10;
  s.num_drafts_at_position = {4, 3, 3};
  s.num_accepted_at_position = {3, 2, 1};
  f.metrics.on_queues(s);
  f.metrics.on_queues(s);  // the same totals again add nothing
  CHECK(f.counter("troupe_spec_decode_num_steps_total") == 4);
  CHECK(f.counter("troupe_spec_decode_num_draft_tokens_total") == 10);
  CHECK(f.counter("troupe_spec_decode_num_accepted_tokens_total") == 6);
  CHECK(f.counter("troupe_spec_decode_num_emitted_tokens_total") == 10);
  CHECK(f.counter("troupe_spec_decode_num_accepted_tokens_per_pos_total", {{"position", "2"}}) == 1);
  CHECK(f.gauge("troupe_spec_decode_draft_acceptance_rate") == doctest::Approx(0.6));
  CHECK(f.gauge("troupe_spec_decode_mean_tokens_per_step") == doctest::Approx(2.5));
  s.num_speculative_steps = 5;
  s.num_draft_tokens = 14;
  s.num_accepted_tokens = 10;
  s.num_emitted_tokens = 15;
  s.num_drafts_at_position = {5, 4, 4, 1};
  s.num_accepted_at_position = {4, 3, 2, 1};
  f.metrics.on_queues(s);
  CHECK(f.counter("troupe_spec_decode_num_draft_tokens_total") == 14);
  CHECK(f.counter("troupe_spec_decode_num_draft_tokens_per_pos_total", {{"position", "0"}}) == 5);
  CHECK(f.counter("troupe_spec_decode_num_accepted_tokens_per_pos_total", {{"position", "3"}}) == 1);
  CHECK(f.gauge("troupe_spec_decode_mean_tokens_per_step") == doctest::Approx(3.0));
}
