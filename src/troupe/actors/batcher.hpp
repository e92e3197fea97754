// The batcher actor: admission and dynamic batching (engine/batcher_policy). It admits a new
// sequence or refuses it with queue_full past max_queue_len sequences waiting (those it
// holds plus those sent on and not yet started, which it counts itself from its own
// batches and the requests' dequeued notices), holds admitted sequences until
// max_batch_size have arrived or the oldest has waited max_wait_ms, then hands them to the
// scheduler in one message.
#pragma once
#include <caf/all.hpp>

#include <memory>
#include <vector>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/request_actor.hpp"
#include "troupe/engine/scheduler_config.hpp"
#include "troupe/engine/serving_metrics.hpp"

namespace troupe {

// A tokenized sequence on its way from its request actor through the batcher to the
// scheduler; `owner` receives the sequence's events.
struct pending_sequence {
  sequence_request request;
  request_actor owner;
  bool operator==(const pending_sequence&) const = default;
};

// The sequences the batcher releases together.
struct pending_batch {
  std::vector<pending_sequence> sequences;
  bool operator==(const pending_batch&) const = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pending_sequence& x) {
  return f(caf::meta::type_name("troupe::pending_sequence"), x.request, x.owner);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pending_batch& x) {
  return f(caf::meta::type_name("troupe::pending_batch"), x.sequences);
}

using batcher_actor = caf::typed_actor<
    // admit a sequence (answer: admitted) or refuse it (error: request_error_code::queue_full)
    caf::replies_to<atoms::enqueue_atom, pending_sequence>::with<atoms::admitted_atom>,
    caf::reacts_to<atoms::cancel_atom, uint64_t>,    // drop a held sequence, else abort it in the scheduler
    caf::reacts_to<atoms::dequeued_atom, uint64_t>,  // a sequence started or ended: it waits no more
    caf::reacts_to<atoms::tick_atom>>;               // its own timer, at the oldest sequence's deadline

}  // namespace troupe
