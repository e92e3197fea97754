// The engine: spawns and owns one replica's actor graph inside the caller's actor system,
// and is the small C++ API that `troupe generate`, the front door and embedding programs
// use: submit(request, sink) and cancel(handle). Its typed actor interface (engine_actor)
// is the same API as messages, for CAF applications.
//
//   request actor ──enqueue──► batcher ──batch──► scheduler (+ block manager) ──step──► worker (detached)
//        ▲    └──dequeued/cancel──┘                   │ started / preempted / token
//        └────────────────────────────────────────────┘
#pragma once
#include <caf/all.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/model_bundle.hpp"
#include "troupe/actors/request_actor.hpp"
#include "troupe/actors/scheduler.hpp"
#include "troupe/actors/worker.hpp"
#include "troupe/engine/metrics.hpp"
#include "troupe/engine/request.hpp"
#include "troupe/engine/scheduler_config.hpp"
#include "troupe/engine/serving_metrics.hpp"

namespace troupe {

// Where an application receives a request's events: accepted (once admitted), delta...,
// then done or error, each as one message.
using event_listener = caf::typed_actor<
    caf::reacts_to<atoms::event_atom, request_event_message>>;  // one event of one request

// The engine as a typed actor. Request ids must be unique among the requests in flight
// through one engine actor.
using engine_actor = caf::typed_actor<
    caf::reacts_to<atoms::submit_atom, request, event_listener>,   // start a request; its events go to the listener
    caf::reacts_to<atoms::cancel_atom, std::string>,               // cancel a request by id (unknown: ignored)
    caf::replies_to<atoms::stats_atom>::with<scheduler_snapshot>,  // queues, KV pool and step times
    caf::reacts_to<atoms::done_ack_atom, std::string>>;            // internal: a request it started has ended

struct engine_options {
  scheduler_config scheduling;
  bool enable_prefix_caching = true;
  bool detached_worker = true;   // false only under CAF's deterministic test scheduler
  // Where the engine's troupe_* metrics go; null: a registry of its own. Share one to serve
  // the front door's metrics (or several engines') on one /metrics page.
  std::shared_ptr<metrics_registry> metrics;
  // Tensor parallelism: the backends of ranks 1..N-1 (the constructor's backend is rank 0).
  // Each rank gets a worker, and a worker_group in front of them is what the scheduler sees.
  std::vector<std::shared_ptr<backend>> more_ranks;
  // Builds a fresh backend (its own KV pool and threads; the same KV shape) for a worker
  // that replaces one stuck in a step past the watchdog's deadline: the stuck worker keeps
  // its own until its step returns. Null, or with more_ranks (a tensor-parallel group is
  // not replaced): a stuck step fails the engine instead, every request ending with
  // `unavailable` and failure() saying why. start_engine sets it for the CPU.
  std::function<std::shared_ptr<backend>()> make_backend;
  // How a worker is spawned over a backend; null: spawn_worker (its own thread) or
  // spawn_worker_attached, per detached_worker. For fault-injection tests, which put an
  // actor of their own in front of a worker.
  std::function<worker_actor(caf::actor_system&, std::shared_ptr<backend>, std::vector<int32_t>)> spawn_worker;
};

class engine {
 public:
  // The backend's KV shape sizes the block manager; scheduling.max_model_len is capped by
  // the model's context. Throws troupe::error for inconsistent options.
  engine(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, std::shared_ptr<backend> b,
         engine_options options);
  // Stops the actor graph. Requests still in flight end with an `unavailable` error event.
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  struct handle {
    request_actor actor;
    uint64_t seq_id = 0;
  };

  // Starts a request; its events (accepted, delta..., done | error) go to sink from actor
  // threads, the last one after it has been counted in metrics(). Never blocks.
  handle submit(request req, event_sink_ptr sink);
  // Cancels a request: it ends with done(cancelled) and returns its KV blocks. Harmless
  // for a finished request.
  void cancel(const handle& h);

  // Runs task once on one of the actor system's threads, never the caller's, with the model
  // (its tokenizer and chat template): for work that grows with a client's input and so must
  // not run on an I/O thread, such as tokenizing a whole request body. task must not throw.
  // Any thread; never blocks.
  void run_with_model(std::function<void(const model_bundle&)> task);

  // Blocks the calling thread for a snapshot: for tests, benchmarks and metrics threads,
  // never for an actor or an I/O thread.
  scheduler_snapshot stats();

  // The engine's metrics, kept current by the actors: any thread may register its own
  // metrics here or call render_prometheus(), without a message round-trip.
  const std::shared_ptr<metrics_registry>& metrics() const;

  // The worker running steps now (it changes when a crashed or stuck worker is replaced);
  // for supervision tests and diagnostics.
  caf::actor current_worker();

  // Why the engine can serve no more (a stuck worker that could not be replaced); none
  // while it can. Any thread.
  std::optional<std::string> failure() const;
  // Workers abandoned stuck in a step (their threads may never end). Any thread.
  int64_t num_abandoned_workers() const;

  // The typed actor interface (spawned on first use, by any thread; lives as long as the engine).
  engine_actor actor();

  const model_bundle& model() const;
  const scheduler_config& scheduling() const;

  // What the typed interface and submit() share; it outlives the engine while any actor
  // still holds it, so no actor ever points at a destroyed engine.
  struct core;

 private:
  friend engine_actor spawn_engine_actor(caf::actor_system& sys, std::unique_ptr<engine> owned);
  std::shared_ptr<core> core_;
  std::mutex frontend_mutex_;
  engine_actor frontend_;
};

// The engine actor over an engine it owns: the engine stops (and its requests in flight end
// with `unavailable` errors) when this actor exits.
engine_actor spawn_engine_actor(caf::actor_system& sys, std::unique_ptr<engine> owned);

}  // namespace troupe
