// The batcher actor: dynamic batching at admission (engine/batcher_policy). Holds new
// sequences until max_batch_size have arrived or the oldest has waited max_wait_ms, then
// hands them to the scheduler in one message; refuses past max_queue_len (queue_full).
//
//   enqueue_atom, pending_sequence_ptr   from a request actor; refused_atom back when full
//   cancel_atom, uint64_t seq_id         drop it if held, else forward abort to the scheduler
//   waiting_atom, int32_t num_waiting, uint64_t num_batches_received   from the scheduler, for the cap
//   tick_atom                            its own timer at the oldest request's deadline
#pragma once
#include <caf/all.hpp>

#include <memory>

#include "engine/scheduler_config.hpp"
#include "engine/serving_metrics.hpp"

namespace troupe {

// metrics (may be null) gets the number of requests held after every change.
caf::actor spawn_batcher(caf::actor_system& sys, const scheduler_config& config, caf::actor scheduler,
                         std::shared_ptr<serving_metrics> metrics = nullptr);

}  // namespace troupe
