// The one CAF type ID block of troupe: every message type the actors exchange and every
// actor handle that travels inside a message, so that a host's actor_system_config can
// register them all (add_message_types) and a middleman can carry them between processes.
// CAF 0.17 atoms are atom_constant values that need no ID; they are in actors/messages.hpp.
#pragma once
#include <caf/all.hpp>

#include "troupe/actors/batcher.hpp"
#include "troupe/actors/engine.hpp"
#include "troupe/actors/fan_out.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/actors/request_actor.hpp"
#include "troupe/actors/scheduler.hpp"
#include "troupe/actors/worker.hpp"

// 0.17 reserves IDs below caf::first_custom_type_id (200); troupe takes 1000 on, leaving
// room for a host's own block before it.
CAF_BEGIN_TYPE_ID_BLOCK(troupe, 1000)
  CAF_ADD_TYPE_ID(troupe, (troupe::step_request))
  CAF_ADD_TYPE_ID(troupe, (troupe::step_result))
  CAF_ADD_TYPE_ID(troupe, (troupe::pending_sequence))
  CAF_ADD_TYPE_ID(troupe, (troupe::pending_batch))
  CAF_ADD_TYPE_ID(troupe, (troupe::sequence_event))
  CAF_ADD_TYPE_ID(troupe, (troupe::request))
  CAF_ADD_TYPE_ID(troupe, (troupe::request_event_message))
  CAF_ADD_TYPE_ID(troupe, (troupe::scheduler_snapshot))
  CAF_ADD_TYPE_ID(troupe, (troupe::request_actor))
  CAF_ADD_TYPE_ID(troupe, (troupe::batcher_actor))
  CAF_ADD_TYPE_ID(troupe, (troupe::scheduler_actor))
  CAF_ADD_TYPE_ID(troupe, (troupe::worker_actor))
  CAF_ADD_TYPE_ID(troupe, (troupe::engine_actor))
  CAF_ADD_TYPE_ID(troupe, (troupe::event_listener))
  CAF_ADD_TYPE_ID(troupe, (troupe::notice_batch))
  CAF_ADD_TYPE_ID(troupe, (troupe::fan_out_actor))
CAF_END_TYPE_ID_BLOCK(troupe)

namespace troupe {

// Registers troupe's message types and its two error categories ("troupe": error_code,
// "request": request_error_code, rendered by name) with a host's config, before the
// actor system is made from it. Needed for messages to cross a middleman; harmless (and
// useful for rendering errors) inside one process.
void add_message_types(caf::actor_system_config& cfg);

}  // namespace troupe
