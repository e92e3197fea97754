// The bottleneck monitor as a specification: each bottleneck's synthetic metric history
// gives that finding, its knob and the numbers behind it; plus windows, restarts and the
// rule that every piece of evidence holds as stated.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>

#include "troupe/engine/diagnosis.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

// What one replica does every second of a synthetic history.
struct load {
  double running = 0, waiting = 0, kv_usage = 0;
  double max_num_seqs = 64, budget = 2048;
  double busy = 0;                // share of each second with a step in flight
  double step_seconds = 0.02;     // mean step
  double fill = 0;                // scheduled tokens over the budget, per step
  double prefill_share = 0.2;     // of the tokens fed
  double finished_per_second = 0;
  double prompt_tokens = 100;     // per request
  double output_tokens_per_second = 0;
  double queue_seconds = 0, e2e_seconds = 1;  // per finished request
  double preemptions_per_second = 0;
  double prefix_queries_per_second = 0, prefix_hit_ratio = 0;
};

// One snapshot a second for `seconds`, every replica accumulating its counters.
std::vector<fleet_snapshot> history_of(const std::map<std::string, load>& replicas, int seconds,
                                       std::vector<fleet_snapshot> before = {}) {
  std::map<std::string, replica_sample> totals;
  double t0 = 0;
  if (!before.empty()) {
    for (const auto& r : before.back().replicas) totals[r.replica] = r;
    t0 = before.back().time_seconds;
  }
  const int first = before.empty() ? 0 : 1;  // a continuation starts one second after
  auto history = std::move(before);
  for (int i = first; i <= seconds; ++i) {
    fleet_snapshot s;
    s.time_seconds = t0 + i;
    for (const auto& [name, l] : replicas) {
      auto& r = totals[name];
      r.replica = name;
      r.num_running = l.running;
      r.num_waiting = l.waiting;
      r.kv_usage_ratio = l.kv_usage;
      r.max_num_seqs = l.max_num_seqs;
      r.max_num_batched_tokens = l.budget;
      r.num_prefill_tokens = std::max(0.0, r.num_prefill_tokens);
      if (i > 0) {
        const double steps = l.busy / l.step_seconds;
        const double tokens = steps * l.fill * l.budget;
        r.num_finished += l.finished_per_second;
        r.num_prompt_tokens += l.finished_per_second * l.prompt_tokens;
        r.num_generation_tokens += l.output_tokens_per_second;
        r.queue_seconds_sum += l.finished_per_second * l.queue_seconds;
        r.num_queue_observations += l.finished_per_second;
        r.e2e_seconds_sum += l.finished_per_second * l.e2e_seconds;
        r.num_e2e_observations += l.finished_per_second;
        r.num_steps += steps;
        r.step_seconds_sum += l.busy;
        r.num_step_tokens += tokens;
        r.num_step_sequences += steps * l.running;
        r.batch_fill_sum += steps * l.fill;
        r.busy_seconds += l.busy;
        r.num_preemptions += l.preemptions_per_second;
        r.num_prefill_tokens += tokens * l.prefill_share;
        r.num_prefix_query_tokens += l.prefix_queries_per_second;
        r.num_prefix_hit_tokens += l.prefix_queries_per_second * l.prefix_hit_ratio;
      }
      s.replicas.push_back(r);
    }
    history.push_back(std::move(s));
  }
  return history;
}

const finding* find(const diagnosis& d, bottleneck kind) {
  for (const auto& f : d.findings) {
    if (f.kind == kind) return &f;
  }
  return nullptr;
}

const comparison* evidence_of(const finding& f, const std::string& name) {
  for (const auto& e : f.evidence) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// A server with work and no queue: the baseline the scenarios change one thing of.
load healthy() {
  load l;
  l.running = 10;
  l.kv_usage = 0.3;
  l.busy = 0.9;
  l.step_seconds = 0.03;
  l.fill = 0.01;
  l.finished_per_second = 2;
  l.output_tokens_per_second = 300;
  l.queue_seconds = 0.02;
  l.e2e_seconds = 5;
  return l;
}

}  // namespace

TEST_CASE("diagnosis: KV exhausted with preemptions -> kv_capacity, knob kv_cache, the preemptions as evidence") {
  load l = healthy();
  l.running = 20;
  l.waiting = 6;
  l.kv_usage = 0.99;
  l.preemptions_per_second = 0.5;
  l.queue_seconds = 3;
  const auto d = diagnose(history_of({{"r", l}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::kv_capacity);
  const auto& top = d.findings.front();
  CHECK(top.knob_to_turn == knob::kv_cache);
  CHECK(top.replica == "r");
  REQUIRE(evidence_of(top, "num_preemptions"));
  CHECK(evidence_of(top, "num_preemptions")->value == doctest::Approx(30));
  CHECK(top.confidence == doctest::Approx(0.8 + 0.2 * 30.0 / 120.0));
  CHECK(top.advice.find("--kv-cache-dtype q8_0") != std::string::npos);
  // 20 running fill 99% of the pool: 18 keep it at 90%.
  CHECK(evidence_of(top, "suggested_max_num_seqs")->value == 18);
  CHECK(top.advice.find("lower --max-num-seqs to about 18") != std::string::npos);
}

TEST_CASE("diagnosis: a full KV pool that keeps requests waiting is kv_capacity even before a preemption") {
  load l = healthy();
  l.running = 12;
  l.waiting = 4;
  l.kv_usage = 0.97;
  const auto d = diagnose(history_of({{"r", l}}, 30), 30);
  CHECK(d.limiting_factor == bottleneck::kv_capacity);
  REQUIRE(evidence_of(d.findings.front(), "max_kv_usage"));
  CHECK(evidence_of(d.findings.front(), "max_kv_usage")->threshold == 0.95);
  CHECK(evidence_of(d.findings.front(), "mean_waiting")->value == doctest::Approx(4));
}

TEST_CASE("diagnosis: long prompts waiting for KV room the pool lacks are kv_capacity below 95% full") {
  // As measured on the default model: one 360-token prompt running in a 48-block pool,
  // eleven more waiting, each needing 23 of the 13 blocks left.
  load l = healthy();
  l.running = 1;
  l.waiting = 11;
  l.kv_usage = 0.62;
  l.max_num_seqs = 16;
  l.busy = 0.99;
  l.step_seconds = 0.019;
  l.fill = 1.0 / 2048;
  l.finished_per_second = 0;
  const auto d = diagnose(history_of({{"r", l}}, 4), 4);
  CHECK(d.limiting_factor == bottleneck::kv_capacity);
  const auto* room = evidence_of(d.findings.front(), "kv_free_ratio");
  REQUIRE(room);
  CHECK(room->value == doctest::Approx(0.38));
  CHECK(room->threshold == doctest::Approx(0.62));
  CHECK(find(d, bottleneck::compute_bound) == nullptr);
  CHECK(d.findings.front().advice.find("requests wait for KV room") == 0);
}

TEST_CASE("diagnosis: a busy worker with fast steps and requests waiting is not compute_bound") {
  load l = healthy();
  l.waiting = 4;
  l.busy = 1.0;
  l.step_seconds = 0.02;
  const auto d = diagnose(history_of({{"r", l}}, 20), 20);
  CHECK(find(d, bottleneck::compute_bound) == nullptr);
  CHECK(d.limiting_factor == bottleneck::queue_unexplained);
}

TEST_CASE("diagnosis: queue time dominating with low batch fill at the max_num_seqs cap -> max_num_seqs") {
  load l = healthy();
  l.max_num_seqs = 8;
  l.running = 8;
  l.waiting = 10;
  l.kv_usage = 0.3;
  l.fill = 8.0 / 2048;
  l.queue_seconds = 7;
  l.e2e_seconds = 10;
  const auto d = diagnose(history_of({{"r", l}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::max_num_seqs);
  const auto& top = d.findings.front();
  CHECK(top.knob_to_turn == knob::max_num_seqs);
  CHECK(evidence_of(top, "queue_share")->value == doctest::Approx(0.7));
  CHECK(evidence_of(top, "mean_running")->threshold == doctest::Approx(0.95 * 8));
  CHECK(evidence_of(top, "batch_fill")->value == doctest::Approx(8.0 / 2048));
  // At 30% KV for 8 sequences the pool holds 24 at 90%; twice the cap is the ceiling.
  CHECK(evidence_of(top, "suggested_max_num_seqs")->value == 16);
  CHECK(top.advice.find("raise --max-num-seqs to about 16") != std::string::npos);
}

TEST_CASE("diagnosis: preemptions with a roomy KV pool are priority ageing at the seqs cap, not kv_capacity") {
  load l = healthy();
  l.max_num_seqs = 2;
  l.running = 2;
  l.waiting = 8;
  l.kv_usage = 0.016;
  l.preemptions_per_second = 1;
  l.queue_seconds = 6;
  const auto d = diagnose(history_of({{"r", l}}, 10), 10);
  CHECK(d.limiting_factor == bottleneck::max_num_seqs);
  CHECK(find(d, bottleneck::kv_capacity) == nullptr);
  CHECK(evidence_of(d.findings.front(), "num_preemptions")->value == doctest::Approx(10));
  CHECK(d.findings.front().advice.find("ageing") != std::string::npos);
}

TEST_CASE("diagnosis: steps that fill the token budget while requests wait -> batch_token_budget") {
  load l = healthy();
  l.running = 30;
  l.waiting = 5;
  l.kv_usage = 0.5;
  l.fill = 0.97;
  l.step_seconds = 0.05;
  l.prefill_share = 0.5;
  l.queue_seconds = 2;
  const auto d = diagnose(history_of({{"r", l}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::batch_token_budget);
  CHECK(d.findings.front().knob_to_turn == knob::max_num_batched_tokens);
  CHECK(evidence_of(d.findings.front(), "batch_fill")->value == doctest::Approx(0.97));
  CHECK(evidence_of(d.findings.front(), "max_num_batched_tokens")->value == 2048);
}

TEST_CASE("diagnosis: slow steps at the cap with a queue -> compute_bound, knob replicas, not max_num_seqs") {
  load l = healthy();
  l.running = 64;
  l.waiting = 20;
  l.busy = 1.0;
  l.step_seconds = 0.2;
  l.fill = 64.0 / 2048;
  l.kv_usage = 0.5;
  l.queue_seconds = 6;
  l.e2e_seconds = 12;
  const auto d = diagnose(history_of({{"r", l}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::compute_bound);
  CHECK(d.findings.front().knob_to_turn == knob::replicas);
  CHECK(evidence_of(d.findings.front(), "mean_step_seconds")->value == doctest::Approx(0.2));
  CHECK(find(d, bottleneck::max_num_seqs) == nullptr);
}

TEST_CASE("diagnosis: long prompts with a queue -> prefill_heavy, and low prefix reuse as advice") {
  load l = healthy();
  l.running = 6;
  l.waiting = 3;
  l.busy = 0.95;
  l.step_seconds = 0.3;
  l.fill = 0.6;
  l.prefill_share = 0.85;
  l.prompt_tokens = 1800;
  l.queue_seconds = 4;
  l.prefix_queries_per_second = 3600;
  l.prefix_hit_ratio = 0.02;
  const auto d = diagnose(history_of({{"r", l}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::prefill_heavy);
  CHECK(d.findings.front().knob_to_turn == knob::max_num_batched_tokens);
  CHECK(evidence_of(d.findings.front(), "prefill_share")->value == doctest::Approx(0.85));
  CHECK(d.findings.front().advice.find("1800 per request") != std::string::npos);
  const auto* reuse = find(d, bottleneck::low_prefix_reuse);
  REQUIRE(reuse);
  CHECK(reuse->knob_to_turn == knob::prompt_prefix);
  CHECK(reuse->confidence < 0.5);
  CHECK(evidence_of(*reuse, "prefix_hit_ratio")->value == doctest::Approx(0.02));
}

TEST_CASE("diagnosis: one replica queues while another has room -> replica_skew on the busy one") {
  load busy = healthy();
  busy.running = 16;
  busy.waiting = 12;
  busy.queue_seconds = 3;
  load quiet = healthy();
  quiet.running = 2;
  const auto d = diagnose(history_of({{"a", busy}, {"b", quiet}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::replica_skew);
  const auto& top = d.findings.front();
  CHECK(top.replica == "a");
  CHECK(top.knob_to_turn == knob::routing);
  CHECK(evidence_of(top, "busiest_load")->value == doctest::Approx(28));
  CHECK(evidence_of(top, "busiest_load")->threshold == doctest::Approx(1.5 * 15));
  CHECK(evidence_of(top, "quietest_load")->value == doctest::Approx(2));
  REQUIRE(d.replicas.size() == 2);
}

TEST_CASE("diagnosis: evenly loaded replicas are not skewed") {
  load l = healthy();
  l.running = 8;
  const auto d = diagnose(history_of({{"a", l}, {"b", l}, {"c", l}}, 30), 30);
  CHECK(find(d, bottleneck::replica_skew) == nullptr);
  CHECK(d.limiting_factor == bottleneck::ok);
}

TEST_CASE("diagnosis: no steps and no queue -> idle") {
  load l;
  l.busy = 0.01;
  l.finished_per_second = 0.02;
  const auto d = diagnose(history_of({{"r", l}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::idle);
  CHECK(d.findings.front().knob_to_turn == knob::none);
  CHECK(evidence_of(d.findings.front(), "max_busy_ratio")->value == doctest::Approx(0.01));
}

TEST_CASE("diagnosis: work flowing without a queue or preemption -> ok") {
  const auto d = diagnose(history_of({{"r", healthy()}}, 60), 60);
  CHECK(d.limiting_factor == bottleneck::ok);
  REQUIRE(d.findings.size() == 1);
  CHECK(d.replicas[0].queue_share == doctest::Approx(0.004));
  CHECK(d.replicas[0].requests_per_second == doctest::Approx(2));
  CHECK(d.summary.rfind("ok: ", 0) == 0);
}

TEST_CASE("diagnosis: a queue that no limit explains is reported as such, not as ok") {
  load l = healthy();
  l.waiting = 3;
  l.busy = 0.6;
  const auto d = diagnose(history_of({{"r", l}}, 30), 30);
  CHECK(d.limiting_factor == bottleneck::queue_unexplained);
  CHECK(d.findings.front().advice.find("--max-wait-ms") != std::string::npos);
}

TEST_CASE("diagnosis: under two snapshots or a window under a second -> insufficient_data") {
  auto d = diagnose(history_of({{"r", healthy()}}, 0), 60);
  CHECK(d.limiting_factor == bottleneck::insufficient_data);
  CHECK(d.num_snapshots == 1);
  d = diagnose({}, 60);
  CHECK(d.limiting_factor == bottleneck::insufficient_data);
}

TEST_CASE("diagnosis: only the window is read: an old KV crisis is gone from a 30 s window") {
  load crisis = healthy();
  crisis.waiting = 6;
  crisis.kv_usage = 0.99;
  crisis.preemptions_per_second = 1;
  const auto history = history_of({{"r", healthy()}}, 60, history_of({{"r", crisis}}, 60));
  CHECK(diagnose(history, 30).limiting_factor == bottleneck::ok);
  CHECK(diagnose(history, 120).limiting_factor == bottleneck::kv_capacity);
  CHECK(diagnose(history, 30).replicas[0].num_snapshots == 31);
}

TEST_CASE("diagnosis: a replica that restarted counts from zero, never a negative rate") {
  auto history = history_of({{"r", healthy()}}, 10);
  history.push_back(history.back());
  history.back().time_seconds += 1;
  auto& r = history.back().replicas[0];
  replica_sample restarted;
  restarted.replica = r.replica;
  restarted.num_finished = 1;
  r = restarted;
  const auto d = diagnose(history, 5);
  CHECK(d.replicas[0].num_finished == 1);
  CHECK(d.replicas[0].requests_per_second >= 0);
  CHECK(d.replicas[0].busy_ratio >= 0);
}

TEST_CASE("diagnosis: a history out of time order or a non-positive window is refused") {
  auto history = history_of({{"r", healthy()}}, 3);
  std::swap(history[0], history[2]);
  CHECK_THROWS_AS(diagnose(history, 10), error);
  CHECK_THROWS_AS(diagnose(history_of({{"r", healthy()}}, 3), 0), error);
}

TEST_CASE("diagnosis: every piece of evidence in every scenario holds as stated") {
  load kv = healthy(), seqs = healthy(), skewed = healthy();
  kv.kv_usage = 0.99, kv.waiting = 5, kv.preemptions_per_second = 0.2;
  seqs.max_num_seqs = 8, seqs.running = 8, seqs.waiting = 9, seqs.queue_seconds = 4;
  skewed.running = 30, skewed.waiting = 20;
  const std::vector<std::vector<fleet_snapshot>> histories = {
      history_of({{"r", kv}}, 20), history_of({{"r", seqs}}, 20), history_of({{"a", skewed}, {"b", healthy()}}, 20),
      history_of({{"r", healthy()}}, 20), history_of({{"r", load{}}}, 20)};
  for (const auto& h : histories) {
    const auto d = diagnose(h, 60);
    REQUIRE(!d.findings.empty());
    CHECK(std::is_sorted(d.findings.begin(), d.findings.end(),
                         [](const finding& a, const finding& b) { return a.confidence > b.confidence; }));
    for (const auto& f : d.findings) {
      CHECK(!f.advice.empty());
      CHECK(!f.evidence.empty());
      for (const auto& e : f.evidence) {
        INFO(to_string(f.kind), ": ", e.name, " ", e.value, " ", e.op, " ", e.threshold);
        const bool holds = e.op == ">=" ? e.value >= e.threshold
                         : e.op == ">"  ? e.value > e.threshold
                         : e.op == "<"  ? e.value < e.threshold
                         : e.op == "<=" ? e.value <= e.threshold
                                        : false;
        CHECK(holds);
      }
    }
  }
}
