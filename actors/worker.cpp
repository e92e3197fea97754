#include "actors/worker.hpp"

#include <string>

#include "model/error.hpp"

namespace troupe {

namespace {

struct worker_state {
  std::shared_ptr<backend> engine;
  static inline const char* name = "troupe.worker";
};

worker_actor::behavior_type worker(worker_actor::stateful_pointer<worker_state> self, std::shared_ptr<backend> b) {
  self->state.engine = std::move(b);
  return {
      [=](atoms::step_atom, const step_request_ptr& request) -> caf::result<step_result_ptr> {
        try {
          auto& engine = *self->state.engine;
          if (!request->ops.swap_out.empty() || !request->ops.swap_in.empty()) {
            throw error(error_code::unsupported, "this backend has no host swap space");
          }
          if (!request->ops.copies.empty()) {
            std::vector<std::pair<int32_t, int32_t>> pairs;
            for (const auto& c : request->ops.copies) pairs.emplace_back(c.src, c.dst);
            engine.copy_blocks(pairs);
          }
          return std::make_shared<const step_result>(engine.step(request->plan));
        } catch (const error& e) {
          return caf::make_error(caf::sec::runtime_error, std::string(to_string(e.code())) + ": " + e.what());
        } catch (const std::exception& e) {
          return caf::make_error(caf::sec::runtime_error, std::string("internal: ") + e.what());
        }
      },
      [=](atoms::info_atom) -> caf::result<int32_t, int32_t> {
        const auto shape = self->state.engine->kv_shape();
        return {shape.num_blocks, shape.block_size};
      },
  };
}

}  // namespace

worker_actor spawn_worker(caf::actor_system& sys, std::shared_ptr<backend> b) {
  return sys.spawn<caf::detached>(worker, std::move(b));
}

worker_actor spawn_worker_attached(caf::actor_system& sys, std::shared_ptr<backend> b) {
  return sys.spawn(worker, std::move(b));
}

}  // namespace troupe
