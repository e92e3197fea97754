// The gate a `troupe worker` publishes over CAF's middleman: a client says hello with the
// cluster key, and only on a match gets the replica's engine_actor handle and its facts.
// The key gates the handle; it does not encrypt or authenticate the connection, which CAF
// 0.17's middleman does not do at all (docs/scale-out.md, "Security").
#pragma once
#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "troupe/actors/engine.hpp"

namespace troupe::cluster {

using hello_atom = caf::atom_constant<caf::atom("rhello")>;  // router -> gate: (hello_atom, key)

// What a replica tells the router after a matching hello, besides its handle.
struct replica_facts {
  std::string model_id;
  int32_t vocab_size = 0;
  int32_t max_model_len = 0;
};

// While `draining` is set, the replica refuses new submits with an `unavailable` error
// event (the router then sends the request elsewhere); cancel and stats still pass.
// Everything else goes to `engine`.
engine_actor spawn_replica_front(caf::actor_system& sys, engine_actor engine,
                                 std::shared_ptr<std::atomic<bool>> draining);

// The gate: (hello_atom, key) -> (engine_actor, model_id, vocab_size, max_model_len) when
// key equals cluster_key (an empty cluster_key takes only an empty key); a wrong key gets
// an error (sec::invalid_argument, "wrong cluster key") and nothing else.
caf::actor spawn_gate(caf::actor_system& sys, engine_actor replica, replica_facts facts, std::string cluster_key);

// Whether two keys are equal, in time that does not depend on where they differ.
bool keys_match(const std::string& a, const std::string& b);

// Whether host is a loopback address (127.0.0.0/8, ::1, localhost).
bool is_loopback_host(const std::string& host);

}  // namespace troupe::cluster
