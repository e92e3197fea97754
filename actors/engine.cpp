#include "actors/engine.hpp"

#include <algorithm>
#include <unordered_map>

#include "actors/batcher.hpp"
#include "actors/request_actor.hpp"
#include "actors/worker_group.hpp"
#include "model/error.hpp"

namespace troupe {

namespace {

// Forwards a request's events to an application's actor and tells the frontend when the
// request ended, so it can forget the request's handle.
class actor_sink : public event_sink {
 public:
  actor_sink(caf::actor sink, caf::actor frontend) : sink_(std::move(sink)), frontend_(std::move(frontend)) {}
  void on_event(const std::string& id, const request_event& e) override {
    caf::anon_send(sink_, atoms::event_atom::value,
                   request_event_ptr(std::make_shared<request_event_message>(request_event_message{id, e})));
    if (std::holds_alternative<done_event>(e) || std::holds_alternative<error_event>(e)) {
      caf::anon_send(frontend_, atoms::done_ack_atom::value, id);
    }
  }

 private:
  caf::actor sink_;
  caf::actor frontend_;
};

// Counts a request's last event in the serving metrics, then passes every event on.
class metered_sink : public event_sink {
 public:
  metered_sink(event_sink_ptr inner, std::shared_ptr<serving_metrics> metrics)
      : inner_(std::move(inner)), metrics_(std::move(metrics)) {}
  void on_event(const std::string& id, const request_event& e) override {
    if (auto done = std::get_if<done_event>(&e)) metrics_->on_request_done(*done);
    else if (auto err = std::get_if<error_event>(&e)) metrics_->on_request_error(*err);
    inner_->on_event(id, e);
  }

 private:
  event_sink_ptr inner_;
  std::shared_ptr<serving_metrics> metrics_;
};

struct frontend_state {
  std::unordered_map<std::string, engine::handle> live;
  static inline const char* name = "troupe.engine";
};

}  // namespace

engine_actor engine::actor() {
  if (frontend_) return frontend_;
  engine* self_engine = this;
  auto impl = [self_engine](caf::stateful_actor<frontend_state>* self) -> caf::behavior {
    return {
        [=](atoms::submit_atom, const request_ptr& req, const caf::actor& sink) {
          auto s = std::make_shared<actor_sink>(sink, caf::actor_cast<caf::actor>(self));
          self->state.live[req->id] = self_engine->submit(*req, std::move(s));
        },
        [=](atoms::cancel_atom, const std::string& id) {
          if (auto it = self->state.live.find(id); it != self->state.live.end()) self_engine->cancel(it->second);
        },
        [=](atoms::done_ack_atom, const std::string& id) { self->state.live.erase(id); },
    };
  };
  frontend_ = caf::actor_cast<engine_actor>(sys_.spawn(impl));
  return frontend_;
}

engine::engine(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, std::shared_ptr<backend> b,
               engine_options options)
    : sys_(sys),
      model_(std::move(model)),
      scheduling_(options.scheduling),
      metrics_(options.metrics ? options.metrics : std::make_shared<metrics_registry>()),
      serving_metrics_(std::make_shared<serving_metrics>(metrics_)) {
  const auto shape = b->kv_shape();
  scheduling_.max_model_len = std::min(scheduling_.max_model_len, model_->max_model_len);
  scheduling_.validate();
  block_manager_config blocks;
  blocks.num_blocks = shape.num_blocks;
  blocks.block_size = shape.block_size;
  blocks.num_swap_blocks = b->num_swap_blocks();
  blocks.enable_prefix_caching = options.enable_prefix_caching;
  const bool detached = options.detached_worker;
  caf::actor_system* system = &sys;
  auto latest = latest_worker_;
  auto more_ranks = options.more_ranks;
  worker_factory make_worker = [system, b, detached, latest, more_ranks] {
    auto w = detached ? spawn_worker(*system, b) : spawn_worker_attached(*system, b);
    if (!more_ranks.empty()) {
      std::vector<worker_actor> ranks{w};
      for (const auto& r : more_ranks) {
        ranks.push_back(detached ? spawn_worker(*system, r) : spawn_worker_attached(*system, r));
      }
      w = spawn_worker_group(*system, std::move(ranks));
    }
    std::lock_guard lock(latest->mutex);
    latest->worker = w;
    return w;
  };
  scheduler_ = spawn_scheduler(sys, scheduling_, blocks, model_->tok.eog_ids(), std::move(make_worker),
                               serving_metrics_);
  batcher_ = spawn_batcher(sys, scheduling_, scheduler_, serving_metrics_);
  set_batcher(scheduler_, batcher_);
}

engine::~engine() {
  if (frontend_) caf::anon_send_exit(frontend_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(batcher_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(scheduler_, caf::exit_reason::user_shutdown);

}

engine::handle engine::submit(request req, event_sink_ptr sink) {
  const uint64_t id = next_seq_id_.fetch_add(1);
  auto metered = std::make_shared<metered_sink>(std::move(sink), serving_metrics_);
  auto actor = spawn_request_actor(sys_, model_, std::move(req), std::move(metered), id,
                                   {batcher_, scheduler_, serving_metrics_});
  return {std::move(actor), id};
}

void engine::cancel(const handle& h) {
  if (h.actor) caf::anon_send(h.actor, atoms::cancel_atom::value);
}

caf::actor engine::current_worker() {
  std::lock_guard lock(latest_worker_->mutex);
  return caf::actor_cast<caf::actor>(latest_worker_->worker);
}

scheduler_snapshot engine::stats() {
  caf::scoped_actor self{sys_};
  scheduler_snapshot out;
  self->request(scheduler_, std::chrono::seconds(10), atoms::stats_atom::value)
      .receive([&](const scheduler_snapshot& s) { out = s; },
               [&](caf::error& e) { throw error(error_code::internal, "engine stats: " + sys_.render(e)); });
  return out;
}

}  // namespace troupe
