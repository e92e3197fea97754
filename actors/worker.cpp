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
          // In the order the scheduler requires: swap-outs read blocks that copies or
          // swap-ins of the same step may overwrite.
          const auto pairs = [](const std::vector<block_copy>& moves) {
            std::vector<std::pair<int32_t, int32_t>> out;
            for (const auto& m : moves) out.emplace_back(m.src, m.dst);
            return out;
          };
          if (!request->ops.swap_out.empty()) engine.swap_out(pairs(request->ops.swap_out));
          if (!request->ops.copies.empty()) engine.copy_blocks(pairs(request->ops.copies));
          if (!request->ops.swap_in.empty()) engine.swap_in(pairs(request->ops.swap_in));
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
