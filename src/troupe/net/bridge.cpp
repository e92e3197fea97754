// engine_bridge: tickets to engine handles, forgotten when the request's last event passes.
#include "troupe/net/bridge.hpp"

#include <chrono>
#include <mutex>
#include <unordered_map>
#include <variant>

#include "troupe/actors/engine.hpp"
#include "troupe/cluster/router.hpp"

namespace troupe::net {

struct engine_bridge::tracker {
  std::mutex mutex;
  std::unordered_map<ticket, engine::handle> live;  // handle.actor is empty until submit returns
  ticket next = 1;
};

namespace {

// Forgets the ticket when the request ends, then passes every event on.
class tracking_sink : public event_sink {
 public:
  tracking_sink(std::weak_ptr<engine_bridge::tracker> t, engine_bridge::ticket id, event_sink_ptr inner)
      : tracker_(std::move(t)), ticket_(id), inner_(std::move(inner)) {}

  void on_event(const std::string& request_id, const request_event& event) override {
    const bool is_last = std::holds_alternative<done_event>(event) || std::holds_alternative<error_event>(event);
    if (is_last) {
      if (auto t = tracker_.lock()) {
        std::lock_guard lock(t->mutex);
        t->live.erase(ticket_);
      }
    }
    inner_->on_event(request_id, event);
  }

 private:
  std::weak_ptr<engine_bridge::tracker> tracker_;
  engine_bridge::ticket ticket_;
  event_sink_ptr inner_;
};

void cancel_handle(engine* eng, cluster::replica_router* router, const engine::handle& handle) {
  if (router) {
    if (handle.seq_id != 0) router->cancel(handle.seq_id);
    return;
  }
  eng->cancel(handle);
}

}  // namespace

engine_bridge::engine_bridge(engine& eng, std::string model_id)
    : engine_(&eng), model_id_(std::move(model_id)), tracker_(std::make_shared<tracker>()) {
  vocab_size_ = eng.model().config.vocab_size;
  max_model_len_ = eng.scheduling().max_model_len;
  created_unix_s_ = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
}

engine_bridge::engine_bridge(cluster::replica_router& router, std::string model_id)
    : router_(&router), model_id_(std::move(model_id)), tracker_(std::make_shared<tracker>()) {
  vocab_size_ = router.model().config.vocab_size;
  max_model_len_ = router.model().max_model_len;
  created_unix_s_ = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
}

engine_bridge::~engine_bridge() = default;

engine_bridge::ticket engine_bridge::submit(request req, event_sink_ptr sink) {
  ticket id;
  {
    std::lock_guard lock(tracker_->mutex);
    id = tracker_->next++;
    tracker_->live.emplace(id, engine::handle{});
  }
  auto tracked = std::make_shared<tracking_sink>(tracker_, id, std::move(sink));
  // Behind the router a request is known by the router's ticket (seq_id), with no actor.
  auto handle = router_ ? engine::handle{{}, router_->submit(std::move(req), std::move(tracked))}
                        : engine_->submit(std::move(req), std::move(tracked));
  std::lock_guard lock(tracker_->mutex);
  // The request may already have ended (refused at once); then it stays forgotten.
  if (auto it = tracker_->live.find(id); it != tracker_->live.end()) it->second = std::move(handle);
  return id;
}

void engine_bridge::cancel(ticket t) {
  engine::handle handle;
  {
    std::lock_guard lock(tracker_->mutex);
    auto it = tracker_->live.find(t);
    if (it == tracker_->live.end()) return;
    handle = it->second;
  }
  cancel_handle(engine_, router_, handle);
}

void engine_bridge::cancel_all() {
  std::vector<engine::handle> handles;
  {
    std::lock_guard lock(tracker_->mutex);
    for (const auto& [id, handle] : tracker_->live) handles.push_back(handle);
  }
  for (const auto& handle : handles) cancel_handle(engine_, router_, handle);
}

void engine_bridge::run_with_model(std::function<void(const model_bundle&)> task) {
  if (router_) return router_->run_with_model(std::move(task));
  engine_->run_with_model(std::move(task));
}

int64_t engine_bridge::num_in_flight() const {
  std::lock_guard lock(tracker_->mutex);
  return static_cast<int64_t>(tracker_->live.size());
}

std::shared_ptr<metrics_registry> engine_bridge::metrics() const {
  return router_ ? router_->metrics() : engine_->metrics();
}

std::optional<std::string> engine_bridge::engine_failure() const {
  if (!router_) return engine_->failure();
  if (router_->num_up() == 0) return std::string("no replica is up");
  return std::nullopt;
}

}  // namespace troupe::net
