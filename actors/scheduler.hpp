// The scheduler actor: iteration-level continuous batching (engine/scheduler_policy) over
// the KV block pool (engine/block_manager, owned here: every planning decision needs its
// answer synchronously). Exactly one step is in flight to the worker; the next is planned
// when it returns. With no work it idles until a message arrives.
//
//   batch_atom, pending_batch_ptr   new sequences from the batcher
//   abort_atom, uint64_t seq_id     cancel a sequence (unknown or finished: ignored)
//   stats_atom -> scheduler_snapshot
//   worker_atom -> the current worker (for supervision tests)
// To request actors: started_atom(seq_id, cached tokens), preempt_atom(seq_id),
// token_atom(sequence_event_ptr), refused_atom(seq_id, message) when a prompt never fits.
#pragma once
#include <caf/all.hpp>

#include <functional>

#include "actors/worker.hpp"
#include "engine/block_manager.hpp"
#include "engine/scheduler_config.hpp"
#include "engine/scheduler_policy.hpp"
#include "engine/serving_metrics.hpp"

namespace troupe {

struct scheduler_snapshot {
  scheduler_stats scheduling;
  block_manager_stats blocks;
  double step_busy_seconds = 0;     // wall time the worker spent in steps
  double step_overhead_seconds = 0; // scheduler-side time around them (plan + fan-out)
};

}  // namespace troupe

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::scheduler_snapshot)

namespace troupe {

// Spawns a worker (again, after a crash): the scheduler monitors its worker and replaces a
// dead one through this, failing only the requests of the step that was in flight.
using worker_factory = std::function<worker_actor()>;

// `metrics` (null: none) hears of every step, preemption and queue change, and gets the
// KV pool's statistics at most every 100 ms while busy, and exactly whenever the engine
// has drained; so rendering them never needs a message to the scheduler.
caf::actor spawn_scheduler(caf::actor_system& sys, const scheduler_config& config,
                           const block_manager_config& blocks, std::vector<int32_t> eog_ids,
                           worker_factory make_worker, std::shared_ptr<serving_metrics> metrics = nullptr);

// The scheduler must know the batcher to report its waiting queue (for the queue cap).
void set_batcher(caf::actor scheduler, caf::actor batcher);

}  // namespace troupe
