// The worker actor: owns one backend (weights, KV memory, compute threads) and runs one
// step at a time on its own thread (spawned detached, so its blocking compute never stalls
// the CAF scheduler). A failed step is reported as an error to the requester; the worker
// stays usable.
#pragma once
#include <caf/all.hpp>

#include <memory>

#include "actors/messages.hpp"
#include "model/backend.hpp"

namespace troupe {

// step_atom, step_request_ptr -> step_result_ptr (or an error naming what failed)
// info_atom -> kv_cache_shape of the backend
using worker_actor = caf::typed_actor<
    caf::replies_to<atoms::step_atom, step_request_ptr>::with<step_result_ptr>,
    caf::replies_to<atoms::info_atom>::with<int32_t, int32_t>>;

// Spawns a detached worker that takes ownership of the backend.
worker_actor spawn_worker(caf::actor_system& sys, std::shared_ptr<backend> b);
// The same on the actor system's scheduler threads: for CAF's deterministic test
// scheduler, which runs every actor on the test's thread.
worker_actor spawn_worker_attached(caf::actor_system& sys, std::shared_ptr<backend> b);

}  // namespace troupe
