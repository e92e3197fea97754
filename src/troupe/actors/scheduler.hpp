// The scheduler actor: iteration-level continuous batching (engine/scheduler_policy) over
// the KV block pool (engine/block_manager, an object owned here: every planning decision
// needs its answer synchronously). Exactly one step is in flight to the worker; the next
// is planned when it returns. With no work it idles until a message arrives. It tells each
// sequence's request actor started / preempted / token (request_actor.hpp).
#pragma once
#include <caf/all.hpp>

#include <functional>
#include <memory>
#include <vector>

#include "troupe/actors/batcher.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/actors/worker.hpp"
#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/scheduler_config.hpp"
#include "troupe/engine/serving_metrics.hpp"

namespace troupe {

using scheduler_actor = caf::typed_actor<
    caf::reacts_to<atoms::batch_atom, pending_batch>,                 // new sequences from the batcher
    caf::reacts_to<atoms::abort_atom, uint64_t>,                      // cancel a sequence (unknown: ignored)
    caf::replies_to<atoms::stats_atom>::with<scheduler_snapshot>>;    // queues, KV pool and step times

// Spawns a worker (again, after a crash): the scheduler monitors its worker and replaces a
// dead one through this, failing only the requests of the step that was in flight.
using worker_factory = std::function<worker_actor()>;

// `metrics` (null: none) hears of every step, preemption and queue change, and gets the
// KV pool's statistics at most every 100 ms while busy, and exactly whenever the engine
// has drained; so rendering them never needs a message to the scheduler.
scheduler_actor spawn_scheduler(caf::actor_system& sys, const scheduler_config& config,
                                const block_manager_config& blocks, std::vector<int32_t> eog_ids,
                                worker_factory make_worker, std::shared_ptr<serving_metrics> metrics = nullptr);

// The batcher hands its batches to `scheduler`; metrics (may be null) gets the number of
// sequences it holds after every change.
batcher_actor spawn_batcher(caf::actor_system& sys, const scheduler_config& config, scheduler_actor scheduler,
                            std::shared_ptr<serving_metrics> metrics = nullptr);

}  // namespace troupe
