#include "troupe/actors/worker.hpp"

#include <new>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

struct worker_state {
  std::shared_ptr<backend> engine;
  static inline const char* name = "troupe.worker";
};

using pairs = std::vector<std::pair<int32_t, int32_t>>;

pairs pairs_of(const std::vector<block_copy>& moves) {
  pairs out;
  out.reserve(moves.size());
  for (const auto& m : moves) out.emplace_back(m.src, m.dst);
  return out;
}

worker_actor::behavior_type worker(worker_actor::stateful_pointer<worker_state> self, std::shared_ptr<backend> b) {
  self->state.engine = std::move(b);
  return {
      [=](atoms::step_atom, const step_request& request) -> caf::result<step_result> {
        try {
          auto& engine = *self->state.engine;
          // In the order the scheduler requires: swap-outs read blocks that copies or
          // swap-ins of the same step may overwrite.
          if (!request.ops.swap_out.empty()) engine.swap_out(pairs_of(request.ops.swap_out));
          if (!request.ops.copies.empty()) engine.copy_blocks(pairs_of(request.ops.copies));
          if (!request.ops.swap_in.empty()) engine.swap_in(pairs_of(request.ops.swap_in));
          return engine.step(request.plan);
        } catch (const error& e) {
          return caf::make_error(e.code(), std::string(e.what()));
        } catch (const std::bad_alloc&) {
          return caf::make_error(error_code::out_of_memory, std::string("the worker could not allocate memory for a step"));
        } catch (const std::exception& e) {
          return caf::make_error(error_code::internal, std::string(e.what()));
        }
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
