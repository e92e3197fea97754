// The request actor, one per request: tokenizes (chat template for chat requests), asks the
// batcher for admission (the client hears `accepted` only once admitted), walks its state
// machine (engine/request_state: tokenizing -> queued -> running <-> preempted -> finished
// | cancelled | failed), detokenizes incrementally, holds back text that could start a stop
// string, enforces its deadline, and sends events to its sink. It monitors the scheduler:
// when the engine stops, a request still in flight ends with an `unavailable` error.
#pragma once
#include <caf/all.hpp>

#include <memory>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/model_bundle.hpp"
#include "troupe/engine/request.hpp"
#include "troupe/engine/serving_metrics.hpp"

namespace troupe {

using request_actor = caf::typed_actor<
    caf::reacts_to<atoms::cancel_atom>,                             // the client cancels (or its connection went)
    caf::reacts_to<atoms::deadline_atom>,                           // its own timer: the request's deadline
    caf::reacts_to<atoms::started_atom, uint64_t, int32_t>,         // scheduled: seq_id, cached prompt tokens (-1: resumed)
    caf::reacts_to<atoms::preempt_atom, uint64_t>,                  // preempted: seq_id
    caf::reacts_to<atoms::token_atom, sequence_event>>;             // a token, a finish, or a failure

}  // namespace troupe

namespace troupe {

struct request_actor_links;  // actors/request_links.hpp: the batcher, the scheduler, metrics

request_actor spawn_request_actor(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, request req,
                                  event_sink_ptr sink, uint64_t seq_id, const request_actor_links& links);

}  // namespace troupe
