// snapshot_from_samples, merge_snapshots and snapshot_history: which metric feeds which
// field, how replicas are told apart, and what is refused.
#include <doctest/doctest.h>

#include "troupe/engine/fleet_snapshot.hpp"
#include "troupe/engine/serving_metrics.hpp"
#include "troupe/engine/snapshot_history.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

TEST_CASE("fleet snapshot: a troupe registry's metrics fill one replica's fields") {
  auto registry = std::make_shared<metrics_registry>();
  serving_metrics metrics(registry);
  metrics.on_limits(16, 1024);
  scheduler_stats queues;
  queues.num_running = 5;
  queues.num_waiting = 3;
  metrics.on_queues(queues);
  metrics.on_batching(2);
  step_sample step{10.0, 10.5, 5, 100, 1024, 0, 0, 80};
  metrics.on_step(step);
  metrics.on_preemptions(4);
  done_event done;
  done.reason = request_finish_reason::stop;
  done.usage.prompt_tokens = 90;
  done.usage.completion_tokens = 10;
  done.timings.queue_ms = 250;
  done.timings.total_ms = 1000;
  metrics.on_request_done(done);
  done.reason = request_finish_reason::length;
  metrics.on_request_done(done);

  const auto s = snapshot_from_samples(registry->samples(), 42.0, "r0");
  CHECK(s.time_seconds == 42.0);
  REQUIRE(s.replicas.size() == 1);
  const auto& r = s.replicas[0];
  CHECK(r.replica == "r0");
  CHECK(r.num_running == 5);
  CHECK(r.num_waiting == 5);  // scheduler 3 + batcher 2
  CHECK(r.max_num_seqs == 16);
  CHECK(r.max_num_batched_tokens == 1024);
  CHECK(r.num_finished == 2);  // stop + length
  CHECK(r.num_prompt_tokens == 180);
  CHECK(r.queue_seconds_sum == doctest::Approx(0.5));
  CHECK(r.num_queue_observations == 2);
  CHECK(r.e2e_seconds_sum == doctest::Approx(2.0));
  CHECK(r.num_steps == 1);
  CHECK(r.step_seconds_sum == doctest::Approx(0.5));
  CHECK(r.num_step_tokens == 100);
  CHECK(r.num_prefill_tokens == 80);
  CHECK(r.batch_fill_sum == doctest::Approx(100.0 / 1024));
  CHECK(r.busy_seconds == doctest::Approx(0.5));
  CHECK(r.num_preemptions == 4);
}

TEST_CASE("fleet snapshot: samples with a replica label are split by it; the rest take the default name") {
  const std::vector<metric_sample> samples = {
      {"troupe_num_requests_running", {{"replica", "b"}}, 2},
      {"troupe_num_requests_running", {{"replica", "a"}}, 7},
      {"troupe_request_success_total", {{"finished_reason", "stop"}, {"replica", "a"}}, 3},
      {"troupe_request_success_total", {{"finished_reason", "length"}, {"replica", "a"}}, 4},
      {"troupe_num_requests_running", {}, 1},
      {"unrelated_metric", {}, 99},
  };
  const auto s = snapshot_from_samples(samples, 1.0, "self");
  REQUIRE(s.replicas.size() == 3);
  CHECK(s.replicas[0].replica == "a");
  CHECK(s.replicas[0].num_running == 7);
  CHECK(s.replicas[0].num_finished == 7);
  CHECK(s.replicas[1].replica == "b");
  CHECK(s.replicas[2].replica == "self");
}

TEST_CASE("fleet snapshot: metrics an older troupe lacks stay unknown (-1)") {
  const auto s = snapshot_from_samples({{"troupe_num_requests_running", {}, 1}}, 0, "old");
  REQUIRE(s.replicas.size() == 1);
  CHECK(s.replicas[0].max_num_seqs == -1);
  CHECK(s.replicas[0].max_num_batched_tokens == -1);
  CHECK(s.replicas[0].num_prefill_tokens == -1);
}

TEST_CASE("fleet snapshot: a page without troupe's metrics is refused, saying so") {
  const std::vector<metric_sample> node_exporter = {{"node_cpu_seconds_total", {{"cpu", "0"}}, 5},
                                                    {"troupe_prompt_tokens_total", {}, 1}};
  try {
    snapshot_from_samples(node_exporter, 0, "x");
    FAIL("no error");
  } catch (const error& e) {
    CHECK(e.code() == error_code::invalid_argument);
    CHECK(std::string(e.what()).find("no troupe metrics") != std::string::npos);
  }
}

TEST_CASE("fleet snapshot: merging scrapes of several servers keeps every replica, refuses a name twice") {
  fleet_snapshot a{1.0, {replica_sample{}}}, b{1.2, {replica_sample{}}};
  a.replicas[0].replica = "host-b:1";
  b.replicas[0].replica = "host-a:1";
  const auto merged = merge_snapshots({a, b});
  CHECK(merged.time_seconds == 1.2);
  REQUIRE(merged.replicas.size() == 2);
  CHECK(merged.replicas[0].replica == "host-a:1");
  CHECK_THROWS_AS(merge_snapshots({a, a}), error);
}

TEST_CASE("snapshot history: keeps the last capacity snapshots, oldest first; capacity under 2 is refused") {
  snapshot_history history(3);
  for (int i = 0; i < 5; ++i) history.record(fleet_snapshot{static_cast<double>(i), {}});
  const auto kept = history.snapshots();
  REQUIRE(kept.size() == 3);
  CHECK(kept.front().time_seconds == 2);
  CHECK(kept.back().time_seconds == 4);
  CHECK_THROWS_AS(snapshot_history(1), error);
}
