// The fan-out actors: the scheduler hands each of them one message per step holding every
// event of that step for its share of the request actors (tokens, finishes, failures, and
// the started / preempted notices), and they deliver them one by one. The scheduler's own
// work per step then grows by a vector append per sequence instead of a message send, and
// the sends run on other threads, beside the next step. A request actor's events all go
// through the same fan-out actor (chosen by sequence id) and in the order the scheduler
// produced them, so each request actor still sees its events in order.
#pragma once
#include <caf/all.hpp>

#include <cstdint>
#include <vector>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/request_actor.hpp"

namespace troupe {

// One event for one request actor.
struct request_notice {
  enum class kind : uint8_t { token, started, preempted };
  request_actor to;
  kind what = kind::token;
  sequence_event event;        // token: the event; started, preempted: event.seq_id
  int32_t num_cached = 0;      // started: cached prompt tokens, -1 when resumed
  bool operator==(const request_notice&) const = default;
};

struct notice_batch {
  std::vector<request_notice> notices;
  bool operator==(const notice_batch&) const = default;
};

using fan_out_actor = caf::typed_actor<caf::reacts_to<atoms::token_atom, notice_batch>>;

fan_out_actor spawn_fan_out(caf::actor_system& sys);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, request_notice& x) {
  return f(caf::meta::type_name("troupe::request_notice"), x.to, x.what, x.event, x.num_cached);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, notice_batch& x) {
  return f(caf::meta::type_name("troupe::notice_batch"), x.notices);
}

}  // namespace troupe
