// The worker actor: owns one backend (weights, KV memory, compute threads) and runs one
// step at a time on its own thread (spawned detached, so its blocking compute never stalls
// the CAF scheduler). It keeps every live sequence's last step (plan_state) and turns each
// step_delta into the backend's batch_plan, filling in the tokens it sampled itself, so
// that the scheduler can send step N+1 before step N is back (eog_ids: the model's end of
// generation tokens, the stop rule it shares with the scheduler). A failed step is answered with an error value carrying the
// troupe::error_code (bad_plan, context_overflow, out_of_memory, ...) and its message; the
// worker stays usable.
#pragma once
#include <caf/all.hpp>

#include <memory>
#include <vector>

#include "troupe/actors/messages.hpp"
#include "troupe/model/backend.hpp"

namespace troupe {

using worker_actor = caf::typed_actor<
    caf::replies_to<atoms::step_atom, step_request>::with<step_result>>;  // run KV ops, then the plan

// Spawns a detached worker that takes ownership of the backend.
worker_actor spawn_worker(caf::actor_system& sys, std::shared_ptr<backend> b, std::vector<int32_t> eog_ids);
// The same on the actor system's scheduler threads: for CAF's deterministic test
// scheduler, which runs every actor on the test's thread.
worker_actor spawn_worker_attached(caf::actor_system& sys, std::shared_ptr<backend> b,
                                   std::vector<int32_t> eog_ids);

}  // namespace troupe
