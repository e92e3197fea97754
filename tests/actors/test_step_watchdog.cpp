// The scheduler's watchdog: a step the worker does not answer within its deadline fails its
// requests, the worker is abandoned and replaced by one over a fresh backend, and everything
// else carries on. Deterministically (CAF's test scheduler, simulated time) with a worker
// that withholds one answer, and on real threads with a backend whose step blocks.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <thread>

#include "actors/scripted_engine.hpp"

using namespace troupe;
using namespace troupe::test;
using namespace std::chrono_literals;

namespace {

std::vector<uint64_t> ids_in(const step_delta& d) {
  std::vector<uint64_t> ids;
  for (const auto& s : d.full) ids.push_back(s.seq_id);
  for (const auto& s : d.next) ids.push_back(s.seq_id);
  return ids;
}

// What the stalling worker does: it passes every step to the real worker behind it until the
// first step that leaves `watched` out after `watched` has run; that one it hands to the
// holder, which keeps it unanswered until the test releases it. The holder is not the
// worker the scheduler knows, so it outlives the scheduler's kill as a stuck thread would.
struct stall_script {
  int stall_at_step = 0;  // instead of `watched`: stall the step with this number (1 = the first)
  int num_steps = 0;
  uint64_t watched = 0;
  bool has_seen_watched = false;
  bool has_stalled = false;
  bool is_released = false;  // the test let the holder answer: later steps pass again
  std::vector<uint64_t> stalled_ids;
  caf::actor holder;
};

// Holds one step; on release (tick_atom) runs it on the real worker and answers late (with an
// empty result if the real worker is gone).
caf::behavior step_holder(caf::event_based_actor* self, worker_actor inner) {
  auto held = std::make_shared<std::vector<std::pair<step_request, caf::response_promise>>>();
  return {
      [=](atoms::step_atom, step_request& r) -> caf::result<step_result> {
        held->emplace_back(std::move(r), self->make_response_promise());
        return caf::delegated<step_result>{};
      },
      [=](atoms::tick_atom) {
        for (auto& [request, promise] : *held) {
          self->request(inner, caf::infinite, atoms::step_atom::value, std::move(request))
              .then([rp = promise](step_result& r) mutable { rp.deliver(std::move(r)); },
                    [rp = promise](caf::error&) mutable { rp.deliver(step_result{}); });
        }
        held->clear();
      },
  };
}

caf::behavior stalling_worker(caf::event_based_actor* self, worker_actor inner, std::shared_ptr<stall_script> script) {
  self->link_to(inner);  // the scheduler's kill takes the real worker too
  return {
      [=](atoms::step_atom, step_request& r) -> caf::result<step_result> {
        const auto ids = ids_in(r.plan);
        const bool has_watched = std::find(ids.begin(), ids.end(), script->watched) != ids.end();
        ++script->num_steps;
        const bool is_due = script->stall_at_step > 0 ? script->num_steps == script->stall_at_step
                                                      : script->has_seen_watched && !has_watched;
        // Every step after the stuck one waits behind it, until the test releases them.
        if (script->has_stalled ? !script->is_released : is_due) {
          if (!script->has_stalled) script->stalled_ids = ids;
          script->has_stalled = true;
          return self->delegate(caf::actor_cast<worker_actor>(script->holder), atoms::step_atom::value, std::move(r));
        }
        script->has_seen_watched = script->has_seen_watched || has_watched;
        return self->delegate(inner, atoms::step_atom::value, std::move(r));
      },
  };
}

// The engine's first worker stalls as `script` says; every later one is a plain worker over
// a fresh scripted backend, which `fresh` records.
struct stalling_setup {
  std::shared_ptr<stall_script> script = std::make_shared<stall_script>();
  std::shared_ptr<std::vector<std::shared_ptr<scripted_backend>>> fresh =
      std::make_shared<std::vector<std::shared_ptr<scripted_backend>>>();
  std::shared_ptr<backend> first;

  std::function<void(engine_options&)> adjust(std::shared_ptr<const model_bundle>* model) {
    return [this, model](engine_options& o) {
      auto fresh_list = fresh;
      o.make_backend = [fresh_list, model] {
        fresh_list->push_back(std::make_shared<scripted_backend>((*model)->config));
        return fresh_list->back();
      };
      auto s = script;
      auto is_first = std::make_shared<bool>(true);
      o.spawn_worker = [s, is_first](caf::actor_system& sys, std::shared_ptr<backend> b, std::vector<int32_t> eog) {
        auto inner = spawn_worker_attached(sys, std::move(b), std::move(eog));
        if (!std::exchange(*is_first, false)) return inner;
        s->holder = sys.spawn(step_holder, inner);
        return caf::actor_cast<worker_actor>(sys.spawn(stalling_worker, inner, s));
      };
    };
  }
};

// The scheduler's snapshot, asked by an actor (engine::stats() would block the test's thread).
scheduler_snapshot snapshot_of(deterministic_fixture& f) {
  auto out = std::make_shared<std::optional<scheduler_snapshot>>();
  f.sys->spawn([out, eng = f.eng->actor()](caf::event_based_actor* self) {
    self->request(eng, caf::infinite, atoms::stats_atom::value).then([out](const scheduler_snapshot& s) { *out = s; });
  });
  f.sched->run();
  REQUIRE(out->has_value());
  return **out;
}

// Submits a request of max_tokens and, once the replacement worker has a step of it in
// flight, lets the stuck worker answer at last (its late answer must be ignored); then
// runs everything and checks the request ran to max_tokens with no new error.
void late_answer_while_fresh_busy(deterministic_fixture& f, stalling_setup& setup, const std::string& id,
                                  int32_t max_tokens, size_t num_errors) {
  const int num_fresh_steps = setup.fresh->front()->num_steps;
  f.eng->submit(f.make(id, max_tokens), f.sink);
  while (setup.fresh->front()->num_steps == num_fresh_steps) REQUIRE(f.sched->try_run_once());
  caf::anon_send(setup.script->holder, atoms::tick_atom::value);
  f.sched->run();
  REQUIRE(f.sink->done.count(id));
  CHECK(f.sink->num_tokens[id] == max_tokens);
  CHECK(f.sink->errors.size() == num_errors);
}

request long_request(deterministic_fixture& f, const std::string& id, int32_t max_tokens, int repeats,
                     const std::string& words, int32_t priority = 0) {
  auto r = f.make(id, max_tokens);
  r.prompt.clear();
  for (int i = 0; i < repeats; ++i) r.prompt += words;
  r.priority = priority;
  return r;
}

bool is_consecutive(const std::vector<int32_t>& tokens) {
  for (size_t i = 1; i < tokens.size(); ++i) {
    if (tokens[i] != tokens[i - 1] + 1) return false;
  }
  return true;
}

scheduler_config watchdog_config() {
  scheduler_config sc;
  sc.max_num_seqs = 2;              // "queued" waits for a slot
  sc.max_num_batched_tokens = 40;   // a prompt chunk of "urgent" can take a whole step
  sc.attention_cost = 0;            // chunks by tokens alone: the plans below are exact
  sc.step_timeout_ms = 10000;       // far above what any scripted step could be predicted to take
  return sc;
}

// "bystander" prefills a long prompt; "urgent" (higher priority) arrives while it does,
// and once running takes a whole step's budget, leaving "bystander" running but out of
// that step, which is the one that stalls. "queued", when asked for, waits for a slot
// throughout. Runs until the stalled step; returns bystander's handle.
engine::handle stall_beside_bystander(deterministic_fixture& f, stalling_setup& setup, bool with_queued) {
  auto bystander = f.eng->submit(long_request(f, "bystander", 6, 16, "the cat sat on the mat "), f.sink);
  setup.script->watched = bystander.seq_id;
  while (f.backend_->num_steps < 1) REQUIRE(f.sched->try_run_once());
  f.eng->submit(long_request(f, "urgent", 4, 10, "a dog ran to the park ", -1), f.sink);
  if (with_queued) f.eng->submit(f.make("queued", 5), f.sink);
  f.sched->run();
  REQUIRE(setup.script->has_stalled);
  return bystander;
}

}  // namespace

TEST_CASE("watchdog: a step past its deadline fails its requests; a fresh worker serves the rest, nothing leaks") {
  stalling_setup setup;
  std::shared_ptr<const model_bundle> model;
  deterministic_fixture f(watchdog_config(), 64, setup.adjust(&model));
  model = f.model;
  const auto bystander = stall_beside_bystander(f, setup, true);
  CHECK(std::find(setup.script->stalled_ids.begin(), setup.script->stalled_ids.end(), bystander.seq_id) ==
        setup.script->stalled_ids.end());
  CHECK(f.sink->errors.empty());

  f.sched->advance_time(9999ms);  // just short of the deadline: nothing happens
  f.sched->run();
  CHECK(f.sink->errors.empty());
  CHECK(setup.fresh->empty());

  f.sched->advance_time(1ms);
  f.sched->run();
  REQUIRE(f.sink->errors.count("urgent"));
  CHECK(f.sink->errors["urgent"].code == request_error_code::unavailable);
  CHECK(f.sink->errors["urgent"].message.find("did not return within 10000 ms") != std::string::npos);
  REQUIRE(setup.fresh->size() == 1);  // one replacement, over a backend of its own
  CHECK(setup.fresh->front() != f.backend_);
  CHECK(setup.fresh->front()->num_steps > 0);

  // The re-queued sequence is fed again from its prompt and what it had generated, and ends
  // as if nothing had happened; the queued one runs on the new worker.
  REQUIRE(f.sink->done.count("bystander"));
  CHECK(f.sink->num_tokens["bystander"] == 6);
  CHECK(is_consecutive(f.sink->token_ids["bystander"]));
  REQUIRE(f.sink->done.count("queued"));
  CHECK(f.sink->num_tokens["queued"] == 5);
  f.eng->submit(f.make("after", 3), f.sink);
  f.sched->run();
  REQUIRE(f.sink->done.count("after"));
  CHECK(f.sink->num_tokens["after"] == 3);

  // The stuck worker answers at last, while the new one has steps in flight: its answer is
  // ignored (applied, it would be taken for the new worker's step).
  late_answer_while_fresh_busy(f, setup, "last", 4, 1);

  const auto snap = snapshot_of(f);
  CHECK(snap.blocks.num_used_blocks == 0);
  CHECK(snap.blocks.num_used_blocks + snap.blocks.num_cached_blocks + snap.blocks.num_free_blocks ==
        snap.blocks.num_total_blocks);
  CHECK(snap.scheduling.num_running == 0);
  CHECK(snap.scheduling.num_waiting == 0);
  const std::string text = f.eng->metrics()->render_prometheus();
  CHECK(text.find("troupe_step_timeouts_total 1\n") != std::string::npos);
  CHECK(text.find("troupe_worker_replacements_total{reason=\"step_timeout\"} 1\n") != std::string::npos);
  CHECK(text.find("troupe_worker_replacements_total{reason=\"crash\"} 0\n") != std::string::npos);
  CHECK(text.find("troupe_engine_healthy 1\n") != std::string::npos);
  CHECK_FALSE(f.eng->failure());
  caf::anon_send_exit(setup.script->holder, caf::exit_reason::user_shutdown);
}

TEST_CASE("watchdog: with step_timeout_ms 0 a withheld step is waited for, however long") {
  stalling_setup setup;
  std::shared_ptr<const model_bundle> model;
  auto sc = watchdog_config();
  sc.step_timeout_ms = 0;
  deterministic_fixture f(sc, 64, setup.adjust(&model));
  model = f.model;
  stall_beside_bystander(f, setup, false);
  f.sched->advance_time(24h);
  f.sched->run();
  CHECK(f.sink->errors.empty());
  CHECK(f.sink->done.empty());
  CHECK(setup.fresh->empty());
  const std::string text = f.eng->metrics()->render_prometheus();
  CHECK(text.find("troupe_step_timeouts_total 0\n") != std::string::npos);
  // Answered at last, the step completes the request as if it had been slow.
  setup.script->is_released = true;
  caf::anon_send(setup.script->holder, atoms::tick_atom::value);
  f.sched->run();
  CHECK(f.sink->errors.empty());
  CHECK(f.sink->done.count("urgent"));
  CHECK(f.sink->done.count("bystander"));
  caf::anon_send_exit(setup.script->holder, caf::exit_reason::user_shutdown);
}

TEST_CASE("watchdog: when no replacement can be made the engine fails every request and says so") {
  stalling_setup setup;
  std::shared_ptr<const model_bundle> model;
  auto adjust = setup.adjust(&model);
  deterministic_fixture f(watchdog_config(), 64, [&](engine_options& o) {
    adjust(o);
    o.make_backend = []() -> std::shared_ptr<backend> {
      throw error(error_code::out_of_memory, "no memory for a second KV pool");
    };
  });
  model = f.model;
  stall_beside_bystander(f, setup, true);
  f.sched->advance_time(10s);
  f.sched->run();
  for (const char* id : {"bystander", "urgent", "queued"}) {
    REQUIRE(f.sink->errors.count(id));
    CHECK(f.sink->errors[id].code == request_error_code::unavailable);
  }
  CHECK(f.sink->errors["queued"].message.find("no memory for a second KV pool") != std::string::npos);
  f.eng->submit(f.make("later", 3), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("later"));
  CHECK(f.sink->errors["later"].code == request_error_code::unavailable);
  REQUIRE(f.eng->failure());
  CHECK(f.eng->failure()->find("no replacement worker could be made") != std::string::npos);
  const std::string text = f.eng->metrics()->render_prometheus();
  CHECK(text.find("troupe_engine_healthy 0\n") != std::string::npos);
  const auto snap = snapshot_of(f);
  CHECK(snap.blocks.num_used_blocks == 0);
  caf::anon_send_exit(setup.script->holder, caf::exit_reason::user_shutdown);
}

namespace {

// Blocks in its step number `block_at` until released, as a hung kernel would: the worker
// thread cannot be interrupted. Says when it is blocked, and when it is destroyed.
class blocking_backend : public scripted_backend {
 public:
  blocking_backend(model_config c, int block_at, std::shared_ptr<std::atomic<bool>> destroyed)
      : scripted_backend(std::move(c)), block_at_(block_at), destroyed_(std::move(destroyed)) {}
  ~blocking_backend() override { destroyed_->store(true); }
  step_result step(const batch_plan& plan) override {
    if (num_steps + 1 == block_at_) {
      std::unique_lock lock(mutex_);
      is_blocked_ = true;
      changed_.notify_all();
      changed_.wait(lock, [this] { return is_released_; });
    }
    return scripted_backend::step(plan);
  }
  bool wait_until_blocked() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 30s, [this] { return is_blocked_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    is_released_ = true;
    changed_.notify_all();
  }

 private:
  int block_at_;
  std::shared_ptr<std::atomic<bool>> destroyed_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool is_blocked_ = false;
  bool is_released_ = false;
};

// Waits (on real threads) until pred holds, at most 30 s.
template <class Pred>
bool eventually(recording_sink& sink, Pred pred) {
  for (int i = 0; i < 3000; ++i) {
    {
      std::lock_guard lock(sink.mutex);
      if (pred()) return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

}  // namespace

TEST_CASE("watchdog: on real threads, a worker blocked in its backend is abandoned, replaced, and exits once released") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto file = std::make_shared<const gguf::file>(gguf::file::parse(make_tiny_llama()));
  auto model = model_bundle::load(file, 256);
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  auto stuck = std::make_shared<blocking_backend>(model->config, 3, destroyed);
  std::weak_ptr<backend> stuck_alive = stuck;
  auto num_fresh = std::make_shared<std::atomic<int>>(0);
  engine_options o;
  o.scheduling.step_timeout_ms = 200;  // the scripted steps take microseconds
  o.make_backend = [num_fresh, config = model->config] {
    ++*num_fresh;
    return std::make_shared<scripted_backend>(config);
  };
  auto sink = std::make_shared<recording_sink>();
  auto eng = std::make_unique<engine>(sys, model, stuck, o);
  auto* blocking = stuck.get();
  stuck.reset();
  request r;
  r.id = "stuck";
  r.prompt = "the cat sat on the mat";
  r.params.temperature = 0.0f;
  r.params.max_tokens = 8;
  r.params.ignore_eos = true;
  eng->submit(r, sink);
  REQUIRE(blocking->wait_until_blocked());
  REQUIRE(eventually(*sink, [&] { return sink->errors.count("stuck") > 0; }));
  CHECK(sink->errors["stuck"].code == request_error_code::unavailable);
  CHECK(sink->errors["stuck"].message.find("did not return within") != std::string::npos);
  CHECK(*num_fresh == 1);

  r.id = "after";
  eng->submit(r, sink);
  REQUIRE(eventually(*sink, [&] { return sink->done.count("after") > 0; }));
  CHECK(sink->num_tokens["after"] == 8);
  CHECK_FALSE(destroyed->load());  // the stuck worker still holds its backend

  // Released, the stuck step returns: its answer is ignored, the worker thread takes the
  // scheduler's kill and exits, and its backend goes with it.
  blocking->release();
  for (int i = 0; i < 3000 && !destroyed->load(); ++i) std::this_thread::sleep_for(10ms);
  CHECK(destroyed->load());
  CHECK(stuck_alive.expired());
  r.id = "last";
  eng->submit(r, sink);
  REQUIRE(eventually(*sink, [&] { return sink->done.count("last") > 0; }));
  CHECK(sink->num_tokens["last"] == 8);
  std::lock_guard lock(sink->mutex);
  CHECK(sink->num_tokens["stuck"] <= 2);  // from its two steps before the stuck one, nothing after
  CHECK(sink->errors.size() == 1);
}

TEST_CASE("watchdog: asynchronously scheduled, the stuck step and the one planned behind it fail, then the engine carries on") {
  stalling_setup setup;
  setup.script->stall_at_step = 3;
  std::shared_ptr<const model_bundle> model;
  auto sc = watchdog_config();
  sc.async_scheduling = true;
  deterministic_fixture f(sc, 64, setup.adjust(&model));
  model = f.model;
  f.eng->submit(f.make("stuck", 10), f.sink);
  f.sched->run();
  REQUIRE(setup.script->has_stalled);
  CHECK(setup.script->num_steps == 4);  // the step planned ahead went to the worker too
  f.sched->advance_time(9999ms);
  f.sched->run();
  CHECK(f.sink->errors.empty());
  f.sched->advance_time(1ms);
  f.sched->run();
  REQUIRE(f.sink->errors.count("stuck"));
  CHECK(f.sink->errors["stuck"].code == request_error_code::unavailable);
  REQUIRE(setup.fresh->size() == 1);
  f.eng->submit(f.make("after", 6), f.sink);
  f.sched->run();
  REQUIRE(f.sink->done.count("after"));
  CHECK(f.sink->num_tokens["after"] == 6);
  // Both late answers arrive while the new worker has steps in flight: ignored.
  late_answer_while_fresh_busy(f, setup, "last", 3, 1);
  CHECK(snapshot_of(f).blocks.num_used_blocks == 0);
  caf::anon_send_exit(setup.script->holder, caf::exit_reason::user_shutdown);
}
