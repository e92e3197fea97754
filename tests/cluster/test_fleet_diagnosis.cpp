// A routing serve's /metrics as the bottleneck monitor reads it: each replica's engine
// series (replica_metrics, fed synthetic stats snapshots and finished requests, as the
// router feeds them) on the front door's registry, snapshotted each second and diagnosed.
// The front door is not a replica; a lost replica drops out; skew names the busy replica
// and the routing knob; saturated replicas behind an even router are one fleet-wide finding.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "troupe/cluster/replica_metrics.hpp"
#include "troupe/engine/diagnosis.hpp"
#include "troupe/engine/fleet_snapshot.hpp"
#include "troupe/engine/serving_metrics.hpp"

using namespace troupe;
using namespace troupe::cluster;

namespace {

// What one replica does every second.
struct load {
  double running = 0, waiting = 0, kv_use = 0.3;
  double busy = 0;             // share of each second with a step in flight
  double step_seconds = 0.02;
  double fill = 0.01;          // scheduled tokens over the budget, per step
  double prefill_share = 0.2;
  int finished_per_second = 0;
  double queue_seconds = 0.02, e2e_seconds = 2;
  double preemptions_per_second = 0;
  double prefix_queries_per_second = 0, prefix_hit_ratio = 0;
};

constexpr int32_t budget = 2048;
constexpr int32_t pool_blocks = 1000;

// The router's view of a fleet: the front door's registry with its request series and one
// replica_metrics per replica.
struct fleet {
  std::shared_ptr<metrics_registry> registry = std::make_shared<metrics_registry>();
  serving_metrics front_door{registry, metrics_scope::front_door};
  std::map<std::string, std::unique_ptr<replica_metrics>> replicas;
  std::map<std::string, gauge_metric*> up;
  std::map<std::string, std::map<std::string, double>> totals;  // running totals per replica
  std::vector<fleet_snapshot> history;
  double now = 0;

  void add(const std::string& name) {
    replicas[name] = std::make_unique<replica_metrics>(*registry, name);
    up[name] = registry->gauge("troupe_replica_up", "up", {{"replica", name}});
    up[name]->set(1);
  }

  // One second of every replica doing its load, then a snapshot as the server's sampler takes it.
  void run(const std::map<std::string, load>& loads, int seconds) {
    for (int i = 0; i < seconds; ++i) {
      now += 1;
      for (const auto& [name, l] : loads) {
        auto& t = totals[name];
        const double steps = l.busy / l.step_seconds;
        const double tokens = steps * l.fill * budget;
        t["steps"] += steps;
        t["tokens"] += tokens;
        t["busy"] += l.busy;
        t["sequences"] += steps * l.running;
        t["prefill"] += tokens * l.prefill_share;
        t["preemptions"] += l.preemptions_per_second;
        t["queries"] += l.prefix_queries_per_second;
        t["hits"] += l.prefix_queries_per_second * l.prefix_hit_ratio;
        scheduler_snapshot s;
        s.scheduling.num_running = static_cast<int32_t>(l.running);
        s.scheduling.num_waiting = static_cast<int32_t>(l.waiting);
        s.scheduling.num_steps = std::llround(t["steps"]);
        s.scheduling.num_scheduled_tokens = std::llround(t["tokens"]);
        s.scheduling.num_preemptions = std::llround(t["preemptions"]);
        s.blocks.num_total_blocks = pool_blocks;
        s.blocks.num_used_blocks = static_cast<int32_t>(l.kv_use * pool_blocks);
        s.blocks.num_free_blocks = pool_blocks - s.blocks.num_used_blocks;
        s.blocks.num_prefix_query_tokens = std::llround(t["queries"]);
        s.blocks.num_prefix_hit_tokens = std::llround(t["hits"]);
        s.step_busy_seconds = t["busy"];
        s.num_step_sequences = std::llround(t["sequences"]);
        s.num_prefill_tokens = std::llround(t["prefill"]);
        s.max_num_seqs = 64;
        s.max_num_batched_tokens = budget;
        replicas.at(name)->on_snapshot(s);
        for (int k = 0; k < l.finished_per_second; ++k) {
          done_event done;
          done.usage.prompt_tokens = 100;
          done.usage.completion_tokens = 50;
          done.timings.queue_ms = l.queue_seconds * 1000;
          done.timings.total_ms = l.e2e_seconds * 1000;
          replicas.at(name)->on_request_done(done);
          front_door.on_request_done(done);
        }
      }
      history.push_back(snapshot_from_samples(registry->samples(), now, "front-door:8080"));
    }
  }
};

load saturated() {
  load l;
  l.running = 8;
  l.waiting = 6;
  l.kv_use = 0.5;
  l.busy = 0.97;
  l.step_seconds = 0.2;
  l.fill = 0.05;
  l.finished_per_second = 1;
  l.queue_seconds = 4;
  l.e2e_seconds = 10;
  return l;
}

load healthy() {
  load l;
  l.running = 4;
  l.busy = 0.6;
  l.step_seconds = 0.03;
  l.finished_per_second = 2;
  return l;
}

const finding* find(const diagnosis& d, bottleneck kind) {
  for (const auto& f : d.findings) {
    if (f.kind == kind) return &f;
  }
  return nullptr;
}

const replica_window& window_of(const diagnosis& d, const std::string& replica) {
  for (const auto& w : d.replicas) {
    if (w.replica == replica) return w;
  }
  FAIL("no window for " << replica);
  return d.replicas.front();
}

}  // namespace

TEST_CASE("fleet diagnosis: the replicas' live numbers reach the monitor, the front door is not a replica") {
  fleet f;
  f.add("10.0.0.1:7000");
  f.add("10.0.0.2:7000");
  load a = healthy();
  a.kv_use = 0.4;
  a.fill = 0.25;
  a.prefill_share = 0.3;
  a.preemptions_per_second = 0.5;
  a.prefix_queries_per_second = 1000;
  a.prefix_hit_ratio = 0.25;
  f.run({{"10.0.0.1:7000", a}, {"10.0.0.2:7000", healthy()}}, 31);
  const auto d = diagnose(f.history, 30);
  REQUIRE(d.replicas.size() == 2);
  const auto& w = window_of(d, "10.0.0.1:7000");
  CHECK(w.duration_seconds == doctest::Approx(30));
  CHECK(w.busy_ratio == doctest::Approx(0.6));
  CHECK(w.mean_step_seconds == doctest::Approx(0.03).epsilon(0.01));
  CHECK(w.batch_fill == doctest::Approx(0.25).epsilon(0.01));
  CHECK(w.prefill_share == doctest::Approx(0.3).epsilon(0.01));
  CHECK(w.mean_kv_usage == doctest::Approx(0.4));
  CHECK(w.num_preemptions == doctest::Approx(15));
  CHECK(w.prefix_hit_ratio == doctest::Approx(0.25).epsilon(0.01));
  CHECK(w.mean_batch_sequences == doctest::Approx(4).epsilon(0.01));
  CHECK(w.num_finished == doctest::Approx(60));
  CHECK(w.queue_share == doctest::Approx(0.01));  // 0.02 s queued of 2 s
  CHECK(w.max_num_batched_tokens == budget);
  CHECK(d.limiting_factor != bottleneck::idle);
}

TEST_CASE("fleet diagnosis: one replica much busier than the others -> replica_skew naming it, knob routing") {
  fleet f;
  for (const char* name : {"a:1", "b:1", "c:1"}) f.add(name);
  load busy = healthy();
  busy.running = 16;
  busy.waiting = 12;
  busy.queue_seconds = 3;
  busy.e2e_seconds = 6;
  load quiet = healthy();
  quiet.running = 2;
  f.run({{"a:1", quiet}, {"b:1", busy}, {"c:1", quiet}}, 31);
  const auto d = diagnose(f.history, 30);
  CHECK(d.limiting_factor == bottleneck::replica_skew);
  const auto& top = d.findings.front();
  CHECK(top.replica == "b:1");
  CHECK(top.knob_to_turn == knob::routing);
  CHECK(top.advice.find("--router-affinity-slack") != std::string::npos);
  CHECK(top.advice.find("add replicas") != std::string::npos);
  CHECK(d.summary.find("b:1") != std::string::npos);
}

TEST_CASE("fleet diagnosis: an even router in front of saturated replicas -> one fleet-wide compute_bound, no skew") {
  fleet f;
  for (const char* name : {"a:1", "b:1", "c:1"}) f.add(name);
  f.run({{"a:1", saturated()}, {"b:1", saturated()}, {"c:1", saturated()}}, 31);
  const auto d = diagnose(f.history, 30);
  CHECK(d.limiting_factor == bottleneck::compute_bound);
  const auto& top = d.findings.front();
  CHECK(top.replica.empty());  // the whole fleet, not one replica
  CHECK(top.knob_to_turn == knob::replicas);
  CHECK(top.advice.find("on all 3 replicas") != std::string::npos);
  CHECK(find(d, bottleneck::replica_skew) == nullptr);
  CHECK(find(d, bottleneck::idle) == nullptr);
  size_t num_compute_bound = 0;
  for (const auto& x : d.findings) num_compute_bound += x.kind == bottleneck::compute_bound ? 1 : 0;
  CHECK(num_compute_bound == 1);
  for (const auto& x : d.findings) {
    for (const auto& e : x.evidence) {
      const bool holds = (e.op == ">=" && e.value >= e.threshold) || (e.op == ">" && e.value > e.threshold) ||
                         (e.op == "<" && e.value < e.threshold) || (e.op == "<=" && e.value <= e.threshold);
      CHECK_MESSAGE(holds, x.replica << " " << e.name << " " << e.value << " " << e.op << " " << e.threshold);
    }
  }
}

TEST_CASE("fleet diagnosis: a replica that is down drops out of the snapshot; none up is no crash") {
  fleet f;
  f.add("a:1");
  f.add("b:1");
  f.run({{"a:1", healthy()}, {"b:1", healthy()}}, 3);
  CHECK(f.history.back().replicas.size() == 2);
  f.up["b:1"]->set(0);
  f.run({{"a:1", healthy()}}, 1);
  REQUIRE(f.history.back().replicas.size() == 1);
  CHECK(f.history.back().replicas.front().replica == "a:1");
  f.up["a:1"]->set(0);
  f.run({}, 1);
  CHECK(f.history.back().replicas.empty());
  CHECK_NOTHROW(diagnose(f.history, 30));
}

TEST_CASE("fleet diagnosis: a replica's counters never go backwards when it restarts") {
  auto registry = std::make_shared<metrics_registry>();
  replica_metrics m(*registry, "a:1");
  scheduler_snapshot s;
  s.scheduling.num_steps = 100;
  m.on_snapshot(s);
  s.scheduling.num_steps = 7;  // restarted: counts from zero again
  m.on_snapshot(s);
  s.scheduling.num_steps = 10;
  m.on_snapshot(s);
  double steps = -1;
  for (const auto& x : registry->samples()) {
    if (x.name == "troupe_steps_total") steps = x.value;
  }
  CHECK(steps == 110);
}

TEST_CASE("fleet diagnosis: a front door's serving metrics export no engine series of their own") {
  auto registry = std::make_shared<metrics_registry>();
  serving_metrics front_door(registry, metrics_scope::front_door);
  front_door.on_queues(scheduler_stats{});  // harmless: a private registry takes it
  bool has_engine_series = false;
  bool has_request_series = false;
  for (const auto& x : registry->samples()) {
    has_engine_series = has_engine_series || x.name == "troupe_num_requests_running" ||
                        x.name == "troupe_kv_cache_usage_ratio";
    has_request_series = has_request_series || x.name == "troupe_request_success_total";
  }
  CHECK_FALSE(has_engine_series);
  CHECK(has_request_series);
  // So the replicas' labelled series can take the engine names.
  CHECK_NOTHROW(replica_metrics(*registry, "a:1"));
}

TEST_CASE("fleet diagnosis: a nonsensical total from a replica never makes a counter go down") {
  auto registry = std::make_shared<metrics_registry>();
  replica_metrics m(*registry, "a:1");
  scheduler_snapshot s;
  s.step_busy_seconds = 5;
  m.on_snapshot(s);
  s.step_busy_seconds = -3;
  m.on_snapshot(s);
  s.step_busy_seconds = std::nan("");
  m.on_snapshot(s);
  s.step_busy_seconds = 6;  // a valid total again: only the growth counts
  m.on_snapshot(s);
  double busy = -1;
  for (const auto& x : registry->samples()) {
    if (x.name == "troupe_worker_busy_seconds_total") busy = x.value;
  }
  CHECK(busy == 6);
}
