// The request actor, one per request: tokenizes (chat template for chat requests), walks
// its state machine (engine/request_state: tokenizing -> queued -> running <-> preempted ->
// finished | cancelled | failed), detokenizes incrementally, holds back text that could
// start a stop string, enforces its deadline, and sends events to its sink.
//
//   cancel_atom                              from the client (or a lost connection)
//   refused_atom, seq_id, code, message      queue_full or a prompt that never fits
//   started_atom, seq_id, cached tokens      scheduled (-1: resumed after preemption)
//   preempt_atom, seq_id                     preempted
//   token_atom, sequence_event_ptr           a token, a finish, or a failure
//   deadline_atom                            its own timer
#pragma once
#include <caf/all.hpp>

#include <memory>

#include "actors/messages.hpp"
#include "actors/model_bundle.hpp"
#include "engine/request.hpp"
#include "engine/serving_metrics.hpp"

namespace troupe {

struct request_actor_links {
  caf::actor batcher;
  caf::actor scheduler;
  std::shared_ptr<serving_metrics> metrics;  // null: none; gets each gap between output tokens
};

caf::actor spawn_request_actor(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, request req,
                               event_sink_ptr sink, uint64_t seq_id, request_actor_links links);

}  // namespace troupe
