#include "troupe/actors/engine.hpp"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "troupe/actors/batcher.hpp"
#include "troupe/actors/request_links.hpp"
#include "troupe/actors/worker_group.hpp"
#include "troupe/engine/step_cost.hpp"
#include "troupe/engine/step_deadline.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

struct engine::core {
  core(caf::actor_system& s, std::shared_ptr<const model_bundle> m, scheduler_config sc,
       std::shared_ptr<metrics_registry> registry)
      : sys(s),
        model(std::move(m)),
        scheduling(sc),
        metrics(std::move(registry)),
        serving(std::make_shared<serving_metrics>(metrics)) {}

  caf::actor_system& sys;
  std::shared_ptr<const model_bundle> model;
  scheduler_config scheduling;
  std::shared_ptr<metrics_registry> metrics;
  std::shared_ptr<serving_metrics> serving;
  scheduler_actor scheduler;
  batcher_actor batcher;
  struct worker_slot {
    std::mutex mutex;
    worker_actor worker;  // the last one spawned
  };
  std::shared_ptr<worker_slot> latest_worker = std::make_shared<worker_slot>();
  std::vector<caf::actor> scheduler_watchers;  // request_actor_links::scheduler_watcher
  std::shared_ptr<engine_health> health = std::make_shared<engine_health>();
  std::atomic<uint64_t> next_seq_id{1};
  int64_t kv_pool_tokens = 0;

  handle submit(request req, event_sink_ptr sink);
};

namespace {

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

// Forwards a request's events to an application's listener and tells the engine actor when
// the request ended, so it can forget the request's handle.
class actor_sink : public event_sink {
 public:
  actor_sink(event_listener listener, engine_actor frontend)
      : listener_(std::move(listener)), frontend_(std::move(frontend)) {}
  void on_event(const std::string& id, const request_event& e) override {
    caf::anon_send(listener_, atoms::event_atom::value, request_event_message{id, e});
    if (std::holds_alternative<done_event>(e) || std::holds_alternative<error_event>(e)) {
      caf::anon_send(frontend_, atoms::done_ack_atom::value, id);
    }
  }

 private:
  event_listener listener_;
  engine_actor frontend_;
};

struct frontend_state {
  std::shared_ptr<engine::core> core;
  std::shared_ptr<engine> owned;  // the engine this actor owns (spawn_engine_actor), else null
  std::unordered_map<std::string, engine::handle> live;
  static inline const char* name = "troupe.engine";
};

using frontend_self = engine_actor::stateful_pointer<frontend_state>;

engine_actor::behavior_type frontend(frontend_self self, std::shared_ptr<engine::core> core,
                                     std::shared_ptr<engine> owned) {
  self->state.core = std::move(core);
  self->state.owned = std::move(owned);
  return {
      [=](atoms::submit_atom, request& req, const event_listener& listener) {
        auto& st = self->state;
        if (st.live.count(req.id)) {
          caf::anon_send(listener, atoms::event_atom::value,
                         request_event_message{req.id, error_event{request_error_code::invalid_request,
                                                                   "request id '" + req.id + "' is already in flight"}});
          return;
        }
        auto sink = std::make_shared<actor_sink>(listener, self);
        std::string id = req.id;
        st.live.emplace(std::move(id), st.core->submit(std::move(req), std::move(sink)));
      },
      [=](atoms::cancel_atom, const std::string& id) {
        if (auto it = self->state.live.find(id); it != self->state.live.end()) {
          caf::anon_send(it->second.actor, atoms::cancel_atom::value);
        }
      },
      [=](atoms::stats_atom) -> caf::result<scheduler_snapshot> {
        return self->delegate(self->state.core->scheduler, atoms::stats_atom::value);
      },
      [=](atoms::done_ack_atom, const std::string& id) { self->state.live.erase(id); },
  };
}

// Monitors the scheduler once and quits when it ends, so that the request actors that
// monitor this watcher learn of it (request_actor_links::scheduler_watcher).
caf::actor spawn_scheduler_watcher(caf::actor_system& sys, const scheduler_actor& scheduler) {
  return sys.spawn(
      [](caf::event_based_actor* self, const scheduler_actor& watched) -> caf::behavior {
        self->monitor(watched);
        self->set_down_handler([=](caf::down_msg&) { self->quit(); });
        return {[](atoms::cancel_atom) {}};  // a behaviour keeps it alive; nothing is sent to it
      },
      scheduler);
}

// Enough watchers that each one's monitor list stays short at thousands of live requests.
constexpr uint64_t num_scheduler_watchers = 32;

}  // namespace

engine::handle engine::core::submit(request req, event_sink_ptr sink) {
  // A request with several choices takes consecutive ids, one per sampled choice.
  const auto num_ids = static_cast<uint64_t>(std::clamp(req.num_sequences(), 1, max_num_choices));
  const uint64_t id = next_seq_id.fetch_add(num_ids);
  auto metered = std::make_shared<metered_sink>(std::move(sink), serving);
  auto actor = spawn_request_actor(sys, model, std::move(req), std::move(metered), id,
                                   {batcher, scheduler, scheduler_watchers[id % scheduler_watchers.size()], serving,
                                    kv_pool_tokens});
  return {std::move(actor), id};
}

engine::engine(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, std::shared_ptr<backend> b,
               engine_options options)
    : core_(std::make_shared<core>(sys, std::move(model), options.scheduling,
                                   options.metrics ? options.metrics : std::make_shared<metrics_registry>())) {
  auto& c = *core_;
  const auto shape = b->kv_shape();
  c.scheduling.max_model_len = std::min(c.scheduling.max_model_len, c.model->max_model_len);
  if (c.scheduling.attention_cost < 0) {
    c.scheduling.attention_cost = attention_cost_from_shape(b->config(), b->attention_efficiency());
    c.scheduling.fit_attention_cost = true;
  }
  // Proposals need a backend that verifies them (and one rank: a tensor-parallel group does
  // not): a server asking for them is refused, a request's own choice has no effect.
  if (!b->supports_speculation() || !options.more_ranks.empty()) {
    if (c.scheduling.speculative != speculative_method::off) {
      throw error(error_code::unsupported, "speculative decoding needs a backend that verifies proposed tokens "
                                           "(the CPU backend); this one does not");
    }
    c.scheduling.speculative_max_batch = 0;
  }
  c.scheduling.has_draft_model = b->has_draft_model() && options.more_ranks.empty();
  if (c.scheduling.speculative == speculative_method::draft && !c.scheduling.has_draft_model) {
    throw error(error_code::unsupported, "speculative decoding with a draft model needs one loaded (--draft-model)");
  }
  c.scheduling.validate();
  block_manager_config blocks;
  blocks.num_blocks = shape.num_blocks;
  blocks.block_size = shape.block_size;
  blocks.num_swap_blocks = b->num_swap_blocks();
  blocks.enable_prefix_caching = options.enable_prefix_caching;
  c.kv_pool_tokens = static_cast<int64_t>(shape.num_blocks) * shape.block_size;
  // What the pool is made of, as vLLM's cache_config_info: read by dashboards and by the
  // fleet's diagnosis next to the block gauges.
  c.metrics
      ->gauge("troupe_cache_config_info", "Always 1; the labels describe the KV cache pool.",
              {{"kv_cache_dtype", std::string(name_of(shape.dtype))},
               {"block_size", std::to_string(shape.block_size)},
               {"num_blocks", std::to_string(shape.num_blocks)},
               {"bytes_per_block", std::to_string(shape.bytes_per_block)}})
      ->set(1);
  const bool detached = options.detached_worker;
  caf::actor_system* system = &sys;
  auto latest = c.latest_worker;
  auto more_ranks = options.more_ranks;
  auto eog = c.model->tok.eog_ids();
  auto make_backend = options.make_backend;
  auto spawn_with = options.spawn_worker;
  // Rank 0's backend for the next worker; only the scheduler calls the factory.
  auto current = std::make_shared<std::shared_ptr<backend>>(b);
  worker_factory make_worker = [system, current, detached, latest, more_ranks, eog, make_backend,
                                spawn_with](worker_start why) {
    if (why == worker_start::after_step_timeout) {
      if (!more_ranks.empty()) {
        throw error(error_code::unsupported,
                    "a tensor-parallel group is not replaced (its ranks share one NCCL communicator, and the stuck "
                    "ranks keep their devices' memory)");
      }
      if (!make_backend) throw error(error_code::unsupported, "this engine cannot build a second backend");
      auto fresh = make_backend();
      const auto want = (*current)->kv_shape(), got = fresh->kv_shape();
      if (got.num_blocks != want.num_blocks || got.block_size != want.block_size) {
        throw error(error_code::out_of_memory, "the new backend's KV pool has " + std::to_string(got.num_blocks) +
                                                   " blocks of " + std::to_string(got.block_size) + ", not " +
                                                   std::to_string(want.num_blocks) + " of " +
                                                   std::to_string(want.block_size));
      }
      *current = std::move(fresh);  // the stuck worker keeps the old one alive until it exits
    }
    auto spawn = [&](const std::shared_ptr<backend>& x) {
      if (spawn_with) return spawn_with(*system, x, eog);
      return detached ? spawn_worker(*system, x, eog) : spawn_worker_attached(*system, x, eog);
    };
    auto w = spawn(*current);
    if (!more_ranks.empty()) {
      std::vector<worker_actor> ranks{w};
      for (const auto& r : more_ranks) ranks.push_back(spawn(r));
      w = spawn_worker_group(*system, std::move(ranks), eog);
    }
    std::lock_guard lock(latest->mutex);
    latest->worker = w;
    return w;
  };
  scheduler_links links;
  links.make_worker = std::move(make_worker);
  links.metrics = c.serving;
  links.health = c.health;
  links.prior_seconds_per_cost = prior_seconds_per_cost(b->config());
  c.scheduler = spawn_scheduler(sys, c.scheduling, blocks, c.model->tok.eog_ids(), std::move(links));
  c.batcher = spawn_batcher(sys, c.scheduling, c.scheduler, c.serving);
  for (uint64_t i = 0; i < num_scheduler_watchers; ++i) c.scheduler_watchers.push_back(spawn_scheduler_watcher(sys, c.scheduler));
}

engine::~engine() {
  std::lock_guard lock(frontend_mutex_);
  if (frontend_) caf::anon_send_exit(frontend_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(core_->batcher, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(core_->scheduler, caf::exit_reason::user_shutdown);
}

engine::handle engine::submit(request req, event_sink_ptr sink) { return core_->submit(std::move(req), std::move(sink)); }

void engine::cancel(const handle& h) {
  if (h.actor) caf::anon_send(h.actor, atoms::cancel_atom::value);
}

void engine::run_with_model(std::function<void(const model_bundle&)> task) {
  // An actor without a behavior: it runs task once when first scheduled, then ends. The
  // bundle travels with it, so the task may outlive the engine.
  core_->sys.spawn([model = core_->model, task = std::move(task)] { task(*model); });
}

const std::shared_ptr<metrics_registry>& engine::metrics() const { return core_->metrics; }
const model_bundle& engine::model() const { return *core_->model; }
const scheduler_config& engine::scheduling() const { return core_->scheduling; }

caf::actor engine::current_worker() {
  std::lock_guard lock(core_->latest_worker->mutex);
  return caf::actor_cast<caf::actor>(core_->latest_worker->worker);
}

std::optional<std::string> engine::failure() const { return core_->health->failure(); }
int64_t engine::num_abandoned_workers() const { return core_->health->num_abandoned_workers(); }

engine_actor engine::actor() {
  std::lock_guard lock(frontend_mutex_);
  if (!frontend_) frontend_ = core_->sys.spawn(frontend, core_, std::shared_ptr<engine>());
  return frontend_;
}

scheduler_snapshot engine::stats() {
  caf::scoped_actor self{core_->sys};
  scheduler_snapshot out;
  self->request(core_->scheduler, std::chrono::seconds(10), atoms::stats_atom::value)
      .receive([&](const scheduler_snapshot& s) { out = s; },
               [&](caf::error& e) { throw error(error_code::internal, "engine stats: " + core_->sys.render(e)); });
  return out;
}

engine_actor spawn_engine_actor(caf::actor_system& sys, std::unique_ptr<engine> owned) {
  if (!owned) throw error(error_code::invalid_argument, "spawn_engine_actor needs an engine");
  std::shared_ptr<engine> shared = std::move(owned);
  auto core = shared->core_;
  return sys.spawn(frontend, std::move(core), std::move(shared));
}

}  // namespace troupe
