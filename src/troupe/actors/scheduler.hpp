// The scheduler actor: iteration-level continuous batching (engine/scheduler_policy) over
// the KV block pool (engine/block_manager, an object owned here: every planning decision
// needs its answer synchronously). One step is in flight to the worker (two with
// asynchronous scheduling); the next is planned when one returns. With no work it idles
// until a message arrives. It tells each sequence's request actor started / preempted /
// token (request_actor.hpp). It supervises the worker: a dead one is replaced, and a step
// not back by its deadline (engine/step_deadline.hpp, a delayed message to itself) has its
// worker abandoned and replaced by one with a fresh backend.
#pragma once
#include <caf/all.hpp>

#include <functional>
#include <memory>
#include <vector>

#include "troupe/actors/batcher.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/actors/worker.hpp"
#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/engine_health.hpp"
#include "troupe/engine/scheduler_config.hpp"
#include "troupe/engine/serving_metrics.hpp"

namespace troupe {

using scheduler_actor = caf::typed_actor<
    caf::reacts_to<atoms::batch_atom, pending_batch>,                 // new sequences from the batcher
    caf::reacts_to<atoms::abort_atom, uint64_t>,                      // cancel a sequence (unknown: ignored)
    caf::replies_to<atoms::stats_atom>::with<scheduler_snapshot>,     // queues, KV pool and step times
    caf::reacts_to<atoms::step_timer_atom>>;                          // internal: the watchdog's timer

// Why a worker is spawned: the first one; again after one died (over the same backend,
// whose memory is intact and no longer used); or in place of one stuck in a step (over a
// fresh backend with its own KV pool: the stuck worker keeps its own until its step
// returns, if ever). Throws troupe::error saying why when it cannot make one.
enum class worker_start { first, after_crash, after_step_timeout };
using worker_factory = std::function<worker_actor(worker_start)>;

// What the scheduler is wired to besides the batcher and the request actors.
struct scheduler_links {
  worker_factory make_worker;
  // Hears of every step, preemption, queue change and worker replacement, and gets the KV
  // pool's statistics at most every 100 ms while busy and exactly whenever the engine has
  // drained, so that rendering them never needs a message to the scheduler. Null: none.
  std::shared_ptr<serving_metrics> metrics;
  // Marked failed when a stuck worker cannot be replaced. Null: none.
  std::shared_ptr<engine_health> health;
  // The watchdog's prior before any step is timed (step_deadline.hpp); 0: the floor alone.
  double prior_seconds_per_cost = 0;
};

scheduler_actor spawn_scheduler(caf::actor_system& sys, const scheduler_config& config,
                                const block_manager_config& blocks, std::vector<int32_t> eog_ids,
                                scheduler_links links);

// The batcher hands its batches to `scheduler`; metrics (may be null) gets the number of
// sequences it holds after every change.
batcher_actor spawn_batcher(caf::actor_system& sys, const scheduler_config& config, scheduler_actor scheduler,
                            std::shared_ptr<serving_metrics> metrics = nullptr);

}  // namespace troupe
