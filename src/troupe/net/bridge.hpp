// The front door's one window onto the engine: submit, cancel and the engine's facts,
// behind a header free of CAF and Boost. bridge.cpp is the one file that sees both the
// engine's actors and the sessions' needs (docs/design.md, "Layers").
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "troupe/engine/request.hpp"
#include "troupe/engine/request_events.hpp"

namespace troupe {
class engine;
class metrics_registry;
struct model_bundle;
namespace cluster {
class replica_router;
}
}  // namespace troupe

namespace troupe::net {

class engine_bridge {
 public:
  // model_id is what /v1/models and every response report.
  engine_bridge(engine& eng, std::string model_id);
  // Over the replica router (troupe serve --replica): requests go to remote replicas; the
  // router's model gives the facts, and /health fails while no replica is up.
  engine_bridge(cluster::replica_router& router, std::string model_id);
  ~engine_bridge();
  engine_bridge(const engine_bridge&) = delete;
  engine_bridge& operator=(const engine_bridge&) = delete;

  using ticket = uint64_t;

  // Any thread. Starts a request; its events go to sink from actor threads (the sink
  // posts them to its session). Never blocks. The ticket cancels it.
  ticket submit(request req, event_sink_ptr sink);
  // Any thread. Ends a request with done(cancelled); harmless once it has ended.
  void cancel(ticket t);
  // Any thread. Cancels every request in flight (shutdown).
  void cancel_all();
  // Any thread. Runs task on an engine thread, never the caller's, with the model's
  // tokenizer and chat template: /tokenize and /detokenize, whose work grows with the body.
  // task must not throw; it may outlive the engine. Never blocks.
  void run_with_model(std::function<void(const model_bundle&)> task);

  // Requests submitted whose done or error has not been delivered yet.
  int64_t num_in_flight() const;

  // Whether new work is welcome: false before the engine is up and while draining.
  bool is_ready() const { return ready_.load(std::memory_order_acquire); }
  void set_ready(bool ready) { ready_.store(ready, std::memory_order_release); }
  bool is_draining() const { return draining_.load(std::memory_order_acquire); }
  void set_draining() {
    draining_.store(true, std::memory_order_release);
    set_ready(false);
  }

  // Why the engine serves no more (a stuck worker it could not replace, or no replica up
  // behind the router); none while it can.
  std::optional<std::string> engine_failure() const;

  const std::string& model_id() const { return model_id_; }
  int32_t vocab_size() const { return vocab_size_; }
  int32_t max_model_len() const { return max_model_len_; }
  int64_t created_unix_s() const { return created_unix_s_; }
  // The engine's metrics (the front door adds its own to the same registry); null when
  // the engine keeps none.
  std::shared_ptr<metrics_registry> metrics() const;

  struct tracker;  // the live tickets, shared with the sinks that forget them

 private:
  engine* engine_ = nullptr;                    // exactly one of these two
  cluster::replica_router* router_ = nullptr;
  std::string model_id_;
  int32_t vocab_size_ = 0;
  int32_t max_model_len_ = 0;
  int64_t created_unix_s_ = 0;
  std::shared_ptr<tracker> tracker_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
};

}  // namespace troupe::net
