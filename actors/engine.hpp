// The engine: spawns and owns one replica's actor graph inside the caller's actor system,
// and is the small C++ API that `troupe generate`, the front door and embedding programs
// use: submit(request, sink) and cancel(handle).
//
//   request actor ──► batcher ──► scheduler (+ block manager) ──► worker (detached)
//        ▲                              │ started / preempted / token events
//        └──────────────────────────────┘
#pragma once
#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "actors/messages.hpp"
#include "actors/model_bundle.hpp"
#include "actors/scheduler.hpp"
#include "actors/worker.hpp"
#include "engine/metrics.hpp"
#include "engine/request.hpp"
#include "engine/scheduler_config.hpp"
#include "engine/serving_metrics.hpp"

namespace troupe {

// The engine as a typed actor, for CAF applications:
//   submit_atom, request_ptr, caf::actor sink   the sink actor receives
//                                               (event_atom, request_event_ptr) messages:
//                                               accepted, delta..., then done or error
//   cancel_atom, std::string request_id         cancel a request submitted here
// Request ids must be unique among the requests in flight through this interface.
using engine_actor = caf::typed_actor<caf::reacts_to<atoms::submit_atom, request_ptr, caf::actor>,
                                      caf::reacts_to<atoms::cancel_atom, std::string>>;

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
};

class engine {
 public:
  // The backend's KV shape sizes the block manager; scheduling.max_model_len is capped by
  // the model's context. Throws troupe::error for inconsistent options.
  engine(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, std::shared_ptr<backend> b,
         engine_options options);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  struct handle {
    caf::actor actor;
    uint64_t seq_id = 0;
  };

  // Starts a request; its events (accepted, delta..., done | error) go to sink from actor
  // threads, the last one after it has been counted in metrics(). Never blocks.
  handle submit(request req, event_sink_ptr sink);
  // Cancels a request: it ends with done(cancelled) and returns its KV blocks. Harmless
  // for a finished request.
  void cancel(const handle& h);

  // Blocks the calling thread for a snapshot: for tests, benchmarks and metrics threads,
  // never for an actor or an I/O thread.
  scheduler_snapshot stats();

  // The engine's metrics, kept current by the actors: any thread may register its own
  // metrics here or call render_prometheus(), without a message round-trip.
  const std::shared_ptr<metrics_registry>& metrics() const { return metrics_; }

  // The worker running steps now (it changes when a crashed worker is replaced); for
  // supervision tests and diagnostics.
  caf::actor current_worker();

  // The typed actor interface (spawned on first use; lives as long as the engine).
  engine_actor actor();

  const model_bundle& model() const { return *model_; }
  const scheduler_config& scheduling() const { return scheduling_; }

 private:
  caf::actor_system& sys_;
  std::shared_ptr<const model_bundle> model_;
  scheduler_config scheduling_;
  std::shared_ptr<metrics_registry> metrics_;
  std::shared_ptr<serving_metrics> serving_metrics_;
  caf::actor scheduler_;
  caf::actor batcher_;
  engine_actor frontend_;
  struct worker_slot {
    std::mutex mutex;
    worker_actor worker;  // the last one spawned
  };
  std::shared_ptr<worker_slot> latest_worker_ = std::make_shared<worker_slot>();
  std::atomic<uint64_t> next_seq_id_{1};
};

}  // namespace troupe
