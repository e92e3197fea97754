#include "actors/engine.hpp"

#include <algorithm>

#include "actors/batcher.hpp"
#include "actors/request_actor.hpp"
#include "model/error.hpp"

namespace troupe {

engine::engine(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, std::shared_ptr<backend> b,
               engine_options options)
    : sys_(sys), model_(std::move(model)), scheduling_(options.scheduling) {
  const auto shape = b->kv_shape();
  scheduling_.max_model_len = std::min(scheduling_.max_model_len, model_->max_model_len);
  scheduling_.validate();
  block_manager_config blocks;
  blocks.num_blocks = shape.num_blocks;
  blocks.block_size = shape.block_size;
  blocks.num_swap_blocks = b->num_swap_blocks();
  blocks.enable_prefix_caching = options.enable_prefix_caching;
  worker_ = options.detached_worker ? spawn_worker(sys, std::move(b)) : spawn_worker_attached(sys, std::move(b));
  scheduler_ = spawn_scheduler(sys, scheduling_, blocks, model_->tok.eog_ids(), worker_);
  batcher_ = spawn_batcher(sys, scheduling_, scheduler_);
  set_batcher(scheduler_, batcher_);
}

engine::~engine() {
  caf::anon_send_exit(batcher_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(scheduler_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(worker_, caf::exit_reason::user_shutdown);
}

engine::handle engine::submit(request req, event_sink_ptr sink) {
  const uint64_t id = next_seq_id_.fetch_add(1);
  auto actor = spawn_request_actor(sys_, model_, std::move(req), std::move(sink), id, {batcher_, scheduler_});
  return {std::move(actor), id};
}

void engine::cancel(const handle& h) {
  if (h.actor) caf::anon_send(h.actor, atoms::cancel_atom::value);
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
