// Every atom and message type the actors exchange. Plans, results and events travel as
// shared pointers to immutable values inside one process (zero-copy); they are whitelisted
// as local-only message types.
#pragma once
#include <caf/all.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_space.hpp"
#include "engine/request.hpp"
#include "engine/request_events.hpp"
#include "engine/scheduler_policy.hpp"
#include "model/backend.hpp"

namespace troupe {

// One step for the worker: the KV operations to apply first, then the plan.
struct step_request {
  kv_operations ops;
  batch_plan plan;
};
using step_request_ptr = std::shared_ptr<const step_request>;
using step_result_ptr = std::shared_ptr<const step_result>;

// A tokenized request on its way from its request actor through the batcher to the
// scheduler; `owner` is the request actor that receives the sequence's events.
struct pending_sequence {
  sequence_request request;
  caf::actor owner;
};
using pending_sequence_ptr = std::shared_ptr<const pending_sequence>;
using pending_batch_ptr = std::shared_ptr<const std::vector<pending_sequence_ptr>>;
using sequence_event_ptr = std::shared_ptr<const sequence_event>;

// event_sink (where a request's events go) is declared in engine/request_events.hpp.

// A request and its events as messages, for CAF applications that talk to the engine
// through its typed actor interface.
using request_ptr = std::shared_ptr<const request>;
struct request_event_message {
  std::string request_id;
  request_event event;
};
using request_event_ptr = std::shared_ptr<const request_event_message>;

// Milliseconds on the actor system's clock: the time every policy is given. Under CAF's
// deterministic test scheduler this is the simulated time, so timers and policies agree.
inline int64_t now_ms(const caf::local_actor* self) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now().time_since_epoch()).count();
}

}  // namespace troupe

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::step_request_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::step_result_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::pending_sequence_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::pending_batch_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::sequence_event_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::event_sink_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::request_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::request_event_ptr)

namespace troupe::atoms {

using step_atom = caf::atom_constant<caf::atom("step")>;          // scheduler -> worker
using info_atom = caf::atom_constant<caf::atom("info")>;          // -> worker: KV shape
using enqueue_atom = caf::atom_constant<caf::atom("enqueue")>;    // request -> batcher
using batch_atom = caf::atom_constant<caf::atom("batch")>;        // batcher -> scheduler
using refused_atom = caf::atom_constant<caf::atom("refused")>;    // batcher/scheduler -> request
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;      // client -> request -> batcher
using abort_atom = caf::atom_constant<caf::atom("abort")>;        // batcher/request -> scheduler
using started_atom = caf::atom_constant<caf::atom("started")>;    // scheduler -> request
using preempt_atom = caf::atom_constant<caf::atom("preempted")>;  // scheduler -> request
using token_atom = caf::atom_constant<caf::atom("token")>;        // scheduler -> request
using waiting_atom = caf::atom_constant<caf::atom("waiting")>;    // scheduler -> batcher
using tick_atom = caf::atom_constant<caf::atom("tick")>;          // timers
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;  // request's own timer
using stats_atom = caf::atom_constant<caf::atom("stats")>;        // -> scheduler
using submit_atom = caf::atom_constant<caf::atom("submit")>;      // application -> engine actor
using event_atom = caf::atom_constant<caf::atom("event")>;        // engine -> application sink actor
using done_ack_atom = caf::atom_constant<caf::atom("ended")>;     // sink adapter -> engine actor

}  // namespace troupe::atoms
