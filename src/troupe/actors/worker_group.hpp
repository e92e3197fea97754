// The worker group: tensor parallelism behind the worker interface. It looks like one
// worker to the scheduler (same messages as actors/worker.hpp), sends each step to every
// rank's worker, and answers with rank 0's result once all ranks have answered (the ranks
// all-reduce through NCCL inside their steps, so all must run every plan). It is linked to
// its ranks: a rank that dies takes the group down, so the scheduler's supervision
// respawns the whole group, and the group's exit ends the ranks.
//
//   scheduler ──step──► worker_group ──step──► rank 0 worker ─┐
//                            ▲           ├───► rank 1 worker ─┤ NCCL all-reduce
//                            │           └───► rank N worker ─┘
//                            └──── rank 0's step_result once every rank replied
#pragma once
#include <caf/all.hpp>

#include <vector>

#include "troupe/actors/worker.hpp"

namespace troupe {

// Spawns a group over rank workers (rank 0 first). Throws troupe::error for an empty list.
// It keeps the sequences' steps itself (plan_state) and sends the ranks whole steps, so
// that every rank runs the same plan whatever it sampled; a step planned ahead waits in the
// group until the running one is back.
worker_actor spawn_worker_group(caf::actor_system& sys, std::vector<worker_actor> ranks, std::vector<int32_t> eog_ids);

}  // namespace troupe
