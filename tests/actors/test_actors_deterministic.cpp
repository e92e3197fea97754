// The actor graph under CAF's deterministic test scheduler (every actor runs on the test's
// thread, time is simulated) with a scripted backend: admission batching on size and on
// timeout, deadlines, cancellation, a worker that fails a step and stays usable, and the
// stats snapshot (limits, step totals, prefix digest).
#include <doctest/doctest.h>

#include "actors/scripted_engine.hpp"
#include "troupe/engine/prefix_key.hpp"

using namespace troupe;
using namespace std::chrono_literals;

using namespace troupe::test;

TEST_CASE("actors: the batcher holds requests until max_wait_ms passes, then they run to max_tokens") {
  scheduler_config sc;
  sc.max_batch_size = 4;
  sc.max_wait_ms = 100;
  deterministic_fixture f(sc);
  f.eng->submit(f.make("a", 5), f.sink);
  f.eng->submit(f.make("b", 5), f.sink);
  f.sched->run();
  CHECK(f.backend_->num_steps == 0);  // held: 2 of 4, and no time has passed
  f.sched->advance_time(100ms);
  f.sched->run();
  CHECK(f.backend_->num_steps > 0);
  REQUIRE(f.sink->done.count("a"));
  REQUIRE(f.sink->done.count("b"));
  CHECK(f.sink->done["a"].reason == request_finish_reason::length);
  CHECK(f.sink->num_tokens["a"] == 5);
  CHECK(f.sink->done["a"].usage.completion_tokens == 5);
}

TEST_CASE("actors: the batcher releases at once when max_batch_size requests are held") {
  scheduler_config sc;
  sc.max_batch_size = 3;
  sc.max_wait_ms = 100000;
  deterministic_fixture f(sc);
  for (const char* id : {"a", "b", "c"}) f.eng->submit(f.make(id, 3), f.sink);
  f.sched->run();
  CHECK(f.sink->done.size() == 3);
}

TEST_CASE("actors: a request past its deadline ends with timeout and frees its blocks") {
  scheduler_config sc;
  sc.max_batch_size = 2;
  sc.max_wait_ms = 100000;  // held in the batcher until the deadline
  deterministic_fixture f(sc);
  f.eng->submit(f.make("late", 5, 50), f.sink);
  f.sched->run();
  CHECK(f.sink->done.empty());
  f.sched->advance_time(50ms);
  f.sched->run();
  REQUIRE(f.sink->done.count("late"));
  CHECK(f.sink->done["late"].reason == request_finish_reason::timeout);
  CHECK(f.backend_->num_steps == 0);
}

TEST_CASE("actors: a cancelled request ends with cancelled; a second cancel is harmless") {
  scheduler_config sc;
  deterministic_fixture f(sc);
  auto h = f.eng->submit(f.make("x", 50), f.sink);
  f.eng->cancel(h);
  f.eng->cancel(h);
  f.sched->run();
  REQUIRE(f.sink->done.count("x"));
  CHECK(f.sink->done["x"].reason == request_finish_reason::cancelled);
  CHECK(f.sink->num_tokens["x"] < 50);
}

TEST_CASE("actors: a failed step becomes an error event and the worker serves the next request") {
  scheduler_config sc;
  deterministic_fixture f(sc);
  f.backend_->fail_next = true;
  f.eng->submit(f.make("first", 4), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("first"));
  CHECK(f.sink->errors["first"].code == request_error_code::internal);
  CHECK(f.sink->errors["first"].message.find("scripted failure") != std::string::npos);
  f.eng->submit(f.make("second", 4), f.sink);
  f.sched->run();
  REQUIRE(f.sink->done.count("second"));
  CHECK(f.sink->num_tokens["second"] == 4);
}

// Collects the events an engine actor sends to an application's listener.
caf::behavior event_collector(caf::event_based_actor*, std::shared_ptr<std::vector<request_event_message>> events) {
  return {[events](atoms::event_atom, const request_event_message& m) { events->push_back(m); }};
}

std::map<std::string, std::vector<request_event>> by_request(const std::vector<request_event_message>& events) {
  std::map<std::string, std::vector<request_event>> out;
  for (const auto& m : events) out[m.request_id].push_back(m.event);
  return out;
}

TEST_CASE("actors: a CAF application submits and cancels through the engine's typed actor interface") {
  scheduler_config sc;
  deterministic_fixture f(sc);
  auto events = std::make_shared<std::vector<request_event_message>>();
  auto app = caf::actor_cast<event_listener>(f.sys->spawn(event_collector, events));
  auto eng = f.eng->actor();
  auto ask = [&](const std::string& id, int32_t max_tokens) {
    caf::anon_send(eng, atoms::submit_atom::value, f.make(id, max_tokens), app);
  };
  ask("typed", 3);
  f.sched->run();
  ask("stopped", 200);
  caf::anon_send(eng, atoms::cancel_atom::value, std::string("stopped"));
  caf::anon_send(eng, atoms::cancel_atom::value, std::string("never-submitted"));
  f.sched->run();
  auto by_id = by_request(*events);
  REQUIRE(by_id["typed"].size() >= 3);
  CHECK(std::holds_alternative<accepted_event>(by_id["typed"].front()));
  REQUIRE(std::holds_alternative<done_event>(by_id["typed"].back()));
  CHECK(std::get<done_event>(by_id["typed"].back()).usage.completion_tokens == 3);
  REQUIRE(std::holds_alternative<done_event>(by_id["stopped"].back()));
  CHECK(std::get<done_event>(by_id["stopped"].back()).reason == request_finish_reason::cancelled);
  caf::anon_send_exit(app, caf::exit_reason::user_shutdown);
  f.sched->run();
}

TEST_CASE("actors: the engine actor refuses a second request with an id already in flight") {
  scheduler_config sc;
  sc.max_batch_size = 4;
  sc.max_wait_ms = 100000;  // held, so the first is still in flight when the second comes
  deterministic_fixture f(sc);
  auto events = std::make_shared<std::vector<request_event_message>>();
  auto app = caf::actor_cast<event_listener>(f.sys->spawn(event_collector, events));
  auto eng = f.eng->actor();
  caf::anon_send(eng, atoms::submit_atom::value, f.make("same", 3), app);
  caf::anon_send(eng, atoms::submit_atom::value, f.make("same", 3), app);
  f.sched->run();
  auto by_id = by_request(*events);
  REQUIRE(by_id["same"].size() == 2);
  REQUIRE(std::holds_alternative<error_event>(by_id["same"][0]));
  CHECK(std::get<error_event>(by_id["same"][0]).code == request_error_code::invalid_request);
  CHECK(std::holds_alternative<accepted_event>(by_id["same"][1]));
  caf::anon_send_exit(app, caf::exit_reason::user_shutdown);
  f.sched->run();
}

TEST_CASE("actors: accepted comes only after admission; a request refused with queue_full never sees it") {
  scheduler_config sc;
  sc.max_batch_size = 2;
  sc.max_queue_len = 2;
  sc.max_wait_ms = 100000;  // both admitted requests stay held, so the third finds the queue full
  deterministic_fixture f(sc);
  for (const char* id : {"a", "b", "c"}) f.eng->submit(f.make(id, 3), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("c"));
  CHECK(f.sink->errors["c"].code == request_error_code::queue_full);
  CHECK_FALSE(f.sink->accepted.count("c"));
  CHECK(f.sink->accepted.count("a"));
  CHECK(f.sink->accepted.count("b"));
  CHECK(f.sink->done.count("a"));  // two held: released at max_batch_size
  CHECK(f.sink->done.count("b"));
}

TEST_CASE("actors: the queue cap counts sequences the batcher sent on that have not started yet") {
  scheduler_config sc;
  sc.max_batch_size = 1;
  sc.max_queue_len = 2;
  sc.max_num_seqs = 1;
  deterministic_fixture f(sc);
  // All four enqueue before any has started: a and b are admitted (and sent on at once),
  // c and d find two sequences waiting in the scheduler.
  for (const char* id : {"a", "b", "c", "d"}) f.eng->submit(f.make(id, 4), f.sink);
  f.sched->run();
  CHECK(f.sink->done.count("a"));
  CHECK(f.sink->done.count("b"));
  REQUIRE(f.sink->errors.count("c"));
  CHECK(f.sink->errors["c"].code == request_error_code::queue_full);
  REQUIRE(f.sink->errors.count("d"));
  // Once they started and ended, the count is back to zero: a new request is admitted.
  f.eng->submit(f.make("e", 4), f.sink);
  f.sched->run();
  CHECK(f.sink->done.count("e"));
}

TEST_CASE("actors: a worker failure reaches the client with its real code and message") {
  scheduler_config sc;
  deterministic_fixture f(sc);
  f.backend_->fail_next = true;
  f.backend_->fail_code = error_code::context_overflow;
  f.eng->submit(f.make("overflow", 4), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("overflow"));
  CHECK(f.sink->errors["overflow"].code == request_error_code::context_overflow);
  CHECK(f.sink->errors["overflow"].message == "scripted failure");

  f.backend_->fail_next = true;
  f.backend_->fail_code = error_code::bad_plan;
  f.eng->submit(f.make("bad plan", 4), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("bad plan"));
  CHECK(f.sink->errors["bad plan"].code == request_error_code::internal);
  CHECK(f.sink->errors["bad plan"].message == "scripted failure");

  f.backend_->fail_next = true;
  f.backend_->fail_with_bad_alloc = true;
  f.eng->submit(f.make("memory", 4), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("memory"));
  CHECK(f.sink->errors["memory"].code == request_error_code::out_of_memory);
}

TEST_CASE("actors: destroying the engine ends requests in flight with an unavailable error") {
  scheduler_config sc;
  sc.max_batch_size = 4;
  sc.max_wait_ms = 100000;  // held in the batcher: in flight when the engine goes
  deterministic_fixture f(sc);
  f.eng->submit(f.make("orphan", 5), f.sink);
  f.sched->run();
  CHECK(f.sink->accepted.count("orphan"));
  f.eng.reset();
  f.sched->run();
  REQUIRE(f.sink->errors.count("orphan"));
  CHECK(f.sink->errors["orphan"].code == request_error_code::unavailable);
}

TEST_CASE("actors: an engine actor that owns its engine stops it when it exits, ending its requests") {
  scheduler_config sc;
  sc.max_batch_size = 4;
  sc.max_wait_ms = 100000;
  deterministic_fixture f(sc);
  engine_options o;
  o.scheduling = sc;
  o.detached_worker = false;
  auto owner = spawn_engine_actor(*f.sys, std::make_unique<engine>(*f.sys, f.model, f.backend_, o));
  auto events = std::make_shared<std::vector<request_event_message>>();
  auto app = caf::actor_cast<event_listener>(f.sys->spawn(event_collector, events));
  caf::anon_send(owner, atoms::submit_atom::value, f.make("held", 5), app);
  f.sched->run();
  caf::anon_send_exit(owner, caf::exit_reason::user_shutdown);
  f.sched->run();
  auto by_id = by_request(*events);
  REQUIRE(by_id["held"].size() == 2);
  CHECK(std::holds_alternative<accepted_event>(by_id["held"][0]));
  REQUIRE(std::holds_alternative<error_event>(by_id["held"][1]));
  CHECK(std::get<error_event>(by_id["held"][1]).code == request_error_code::unavailable);
  caf::anon_send_exit(app, caf::exit_reason::user_shutdown);
  f.sched->run();
}

TEST_CASE("actors: a crashed worker is replaced and queued requests still complete") {
  scheduler_config sc;
  deterministic_fixture f(sc);
  f.eng->submit(f.make("before", 3), f.sink);
  f.sched->run();
  REQUIRE(f.sink->done.count("before"));
  caf::anon_send_exit(f.eng->current_worker(), caf::exit_reason::kill);
  f.sched->run();
  f.eng->submit(f.make("after", 3), f.sink);
  f.sched->run();
  REQUIRE(f.sink->done.count("after"));
  CHECK(f.sink->num_tokens["after"] == 3);
}

TEST_CASE("actors: a worker killed with a step in flight fails only that step; the request queued behind it completes") {
  scheduler_config sc;
  sc.max_num_seqs = 1;  // "queued" waits for "running" to finish
  deterministic_fixture f(sc);
  f.eng->submit(f.make("running", 5), f.sink);
  f.eng->submit(f.make("queued", 3), f.sink);
  while (f.backend_->num_steps < 2) REQUIRE(f.sched->try_run_once());
  // The worker has answered step 2; step 3 goes to it next and meets the kill first.
  caf::anon_send_exit(f.eng->current_worker(), caf::exit_reason::kill);
  f.sched->run();
  REQUIRE(f.sink->errors.count("running"));
  CHECK(f.sink->errors["running"].code == request_error_code::internal);
  REQUIRE(f.sink->done.count("queued"));
  CHECK(f.sink->num_tokens["queued"] == 3);
}

// (engine::stats() blocks on a reply that only the test coordinator would deliver: the
// real-model tests check the counters of asynchronous runs.)
TEST_CASE("actors: asynchronously scheduled, requests run to max_tokens with steps planned ahead") {
  scheduler_config sc;
  sc.async_scheduling = true;
  deterministic_fixture f(sc);
  for (int i = 0; i < 3; ++i) f.eng->submit(f.make("r" + std::to_string(i), 6 + i), f.sink);
  f.sched->run();
  for (int i = 0; i < 3; ++i) {
    const auto id = "r" + std::to_string(i);
    REQUIRE(f.sink->done.count(id));
    CHECK(f.sink->num_tokens[id] == 6 + i);
  }
}

TEST_CASE("actors: asynchronously scheduled, a failed step fails the one planned behind it, then the engine carries on") {
  scheduler_config sc;
  sc.async_scheduling = true;
  deterministic_fixture f(sc);
  f.backend_->fail_at_step = 3;
  f.eng->submit(f.make("first", 10), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("first"));
  CHECK(f.sink->errors["first"].message.find("scripted failure") != std::string::npos);
  // Step 4 was planned while step 3 ran; the worker refused it without running it.
  CHECK(f.backend_->num_steps == 3);
  f.eng->submit(f.make("second", 4), f.sink);
  f.sched->run();
  REQUIRE(f.sink->done.count("second"));
  CHECK(f.sink->num_tokens["second"] == 4);
}

TEST_CASE("actors: asynchronously scheduled, a worker killed with two steps in flight is replaced and the queue carries on") {
  scheduler_config sc;
  sc.async_scheduling = true;
  sc.max_num_seqs = 1;
  deterministic_fixture f(sc);
  f.eng->submit(f.make("running", 8), f.sink);
  f.eng->submit(f.make("queued", 3), f.sink);
  while (f.backend_->num_steps < 2) REQUIRE(f.sched->try_run_once());
  caf::anon_send_exit(f.eng->current_worker(), caf::exit_reason::kill);
  f.sched->run();
  REQUIRE(f.sink->errors.count("running"));
  REQUIRE(f.sink->done.count("queued"));
  CHECK(f.sink->num_tokens["queued"] == 3);
}

TEST_CASE("actors: a prompt longer than the whole KV pool is refused before admission, with no accepted") {
  scheduler_config sc;
  deterministic_fixture f(sc, 2);  // 2 blocks of 16: 32 positions, under max_model_len 256
  auto r = f.make("long", 4);
  r.prompt.clear();
  for (int i = 0; i < 12; ++i) r.prompt += "the cat sat on the mat ";
  f.eng->submit(std::move(r), f.sink);
  f.eng->submit(f.make("short", 4), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("long"));
  CHECK(f.sink->errors["long"].code == request_error_code::context_overflow);
  CHECK(f.sink->errors["long"].message.find("KV cache holds 32") != std::string::npos);
  CHECK_FALSE(f.sink->accepted.count("long"));
  CHECK(f.sink->done.count("short"));
}

TEST_CASE("actors: the scheduler's stats carry its limits, step totals and the prefix keys whose first block is cached") {
  scheduler_config sc;
  sc.max_num_seqs = 8;
  deterministic_fixture f(sc);
  auto long_one = f.make("long", 2);
  long_one.prompt.clear();
  for (int i = 0; i < 3; ++i) long_one.prompt += "the quick brown fox jumps over the lazy dog ";
  auto short_one = f.make("short", 2);
  short_one.prompt = "hi";  // fewer tokens than a block: no key to report
  f.eng->submit(long_one, f.sink);
  f.eng->submit(short_one, f.sink);
  f.sched->run();
  REQUIRE(f.sink->done.count("long"));
  REQUIRE(f.sink->done.count("short"));
  auto out = std::make_shared<std::optional<scheduler_snapshot>>();
  f.sys->spawn([out, eng = f.eng->actor()](caf::event_based_actor* self) {
    self->request(eng, caf::infinite, atoms::stats_atom::value).then([out](const scheduler_snapshot& s) { *out = s; });
  });
  f.sched->run();
  REQUIRE(out->has_value());
  const auto& s = **out;
  CHECK(s.cached_prefix_keys == std::vector<uint64_t>{prefix_key(long_one)});
  CHECK(s.max_num_seqs == 8);
  CHECK(s.max_num_batched_tokens == sc.max_num_batched_tokens);
  CHECK(s.num_step_sequences >= s.scheduling.num_steps);
  CHECK(s.num_prefill_tokens > 0);
}
