#include "troupe/actors/worker.hpp"

#include <new>
#include <optional>
#include <string>

#include "troupe/engine/step_plan.hpp"
#include "troupe/engine/trace.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

struct worker_state {
  std::shared_ptr<backend> engine;
  std::unique_ptr<plan_state> plans;
  // The last step's failure: a step planned ahead of it fails too (step_delta::is_planned_ahead).
  std::optional<error_value> last_failure;
  static inline const char* name = "troupe.worker";
};

using pairs = std::vector<std::pair<int32_t, int32_t>>;

pairs pairs_of(const std::vector<block_copy>& moves) {
  pairs out;
  out.reserve(moves.size());
  for (const auto& m : moves) out.emplace_back(m.src, m.dst);
  return out;
}

step_result run_step(worker_state& st, step_request& request) {
  auto& engine = *st.engine;
  const batch_plan& plan = st.plans->apply(std::move(request.plan));
  // In the order the scheduler requires: swap-outs read blocks that copies or swap-ins of
  // the same step may overwrite.
  if (!request.ops.swap_out.empty()) engine.swap_out(pairs_of(request.ops.swap_out));
  if (!request.ops.copies.empty()) engine.copy_blocks(pairs_of(request.ops.copies));
  if (!request.ops.swap_in.empty()) engine.swap_in(pairs_of(request.ops.swap_in));
  step_result result;
  {
    trace::scoped_span traced(trace::lane::backend);
    result = engine.step(plan);
  }
  st.plans->on_result(result);
  return result;
}

worker_actor::behavior_type worker(worker_actor::stateful_pointer<worker_state> self, std::shared_ptr<backend> b,
                                   std::vector<int32_t> eog_ids) {
  self->state.engine = std::move(b);
  self->state.plans = std::make_unique<plan_state>(std::move(eog_ids));
  return {
      [=](atoms::step_atom, step_request& request) -> caf::result<step_result> {
        trace::scoped_span traced(trace::lane::worker);
        auto& st = self->state;
        std::optional<error_value> failure;
        if (request.plan.is_planned_ahead && st.last_failure) {
          failure = error_value{st.last_failure->code, "the step before this one failed: " + st.last_failure->message};
        } else {
          try {
            auto result = run_step(st, request);
            st.last_failure.reset();
            return result;
          } catch (const error& e) {
            failure = error_value{e.code(), e.what()};
          } catch (const std::bad_alloc&) {
            failure = error_value{error_code::out_of_memory, "the worker could not allocate memory for a step"};
          } catch (const std::exception& e) {
            failure = error_value{error_code::internal, e.what()};
          }
        }
        st.plans->fail(request.plan);  // the step's sequences fail with it
        st.last_failure = failure;
        return to_caf_error(failure->code, std::move(failure->message));
      },
  };
}

}  // namespace

worker_actor spawn_worker(caf::actor_system& sys, std::shared_ptr<backend> b, std::vector<int32_t> eog_ids) {
  return sys.spawn<caf::detached>(worker, std::move(b), std::move(eog_ids));
}

worker_actor spawn_worker_attached(caf::actor_system& sys, std::shared_ptr<backend> b, std::vector<int32_t> eog_ids) {
  return sys.spawn(worker, std::move(b), std::move(eog_ids));
}

}  // namespace troupe
