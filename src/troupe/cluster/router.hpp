// The replica router: the front door's engine when `troupe serve --replica HOST:PORT` puts
// `troupe worker` processes behind it. One actor holds every replica's handle (got from
// its gate with the cluster key), its load (requests in flight through this router plus its
// last stats snapshot, polled every stats_interval_ms) and the recent prefix keys, and
// routes each request by the rule in routing.hpp. Events come back to the router, which
// passes them to the request's sink under the client's own request id.
//
// Failure: the router monitors each replica's handle (the host's middleman should have its
// heartbeat and connection timeout on, so that a silent peer's connection is closed), and a
// stats request that gets no answer within stats_timeout_ms counts as the replica's death
// too (a frozen process keeps its TCP connection open). When a replica is lost, its requests not yet accepted there
// are routed again, and the accepted ones end with a `replica_lost` error event; the
// router connects to it again with backoff. A replica that refuses a request with
// `unavailable` before accepting it (it is draining) gets no more until it is connected
// again, and the request goes to another replica.
//
// Membership at run time (the autoscaler's side): a replica can be added after start,
// drained (no new requests; the reply comes once none it ran is in flight) and removed.
// A removed replica's slot is retired, never erased, so that slot indices held by
// callbacks stay valid; adding the same address again revives it.
#pragma once
#include <caf/all.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "troupe/actors/engine.hpp"
#include "troupe/actors/model_bundle.hpp"
#include "troupe/cluster/routing.hpp"
#include "troupe/engine/metrics.hpp"
#include "troupe/engine/request.hpp"
#include "troupe/engine/request_events.hpp"

namespace troupe::cluster {

struct replica_address {
  std::string host;
  uint16_t port = 0;
  std::string name() const { return host + ":" + std::to_string(port); }
};

// "HOST:PORT", "[V6]:PORT" or "PORT" (host 127.0.0.1); throws troupe::error(invalid_argument)
// naming `flag` for anything else (port 0 only when allow_zero_port).
replica_address parse_address(const std::string& text, const std::string& flag, bool allow_zero_port = false);

// An engine replica in this process (`troupe serve --replicas N`): routed to like a remote
// one, up from the start, never connected to again once it has died.
struct local_replica {
  std::string name;  // "local-0", ...: the `replica` label
  engine_actor handle;
};

struct router_options {
  std::vector<replica_address> replicas;
  std::vector<local_replica> local_replicas;
  std::string cluster_key;
  routing_options routing;
  size_t affinity_keys = 8192;       // prefix keys the affinity table remembers (at least 1)
  int64_t stats_interval_ms = 200;   // how often each replica's stats are asked
  int64_t stats_timeout_ms = 3000;   // no answer in this long: the replica counts as lost
  int64_t connect_timeout_ms = 3000;
  int64_t reconnect_min_ms = 250;    // backoff between connection attempts: doubles up to max
  int64_t reconnect_max_ms = 4000;
  std::shared_ptr<metrics_registry> metrics;  // null: a registry of its own
};

// One replica as the router sees it, for /metrics, logs, the autoscaler and tests.
struct replica_status {
  std::string name;
  bool up = false;
  int64_t in_flight = 0;
  int64_t failed_connects = 0;  // connection attempts that failed (unreachable, wrong key, other model)
  bool draining = false;        // routed no new requests (drain asked)
  bool retired = false;         // removed: neither connected to nor routed to
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replica_status& x) {
  return f(caf::meta::type_name("replica_status"), x.name, x.up, x.in_flight, x.failed_connects, x.draining,
           x.retired);
}

// The router actor's membership messages (local: from the autoscaler in the same process).
// Each reply is an error (sec::invalid_argument with a message) for an unknown name.
using fleet_add_atom = caf::atom_constant<caf::atom("fladd")>;        // (host, port) -> name; connects at once
using fleet_drain_atom = caf::atom_constant<caf::atom("fldrain")>;    // (name) -> int64 requests it had in flight
                                                                      //   when asked; replies once none is
using fleet_remove_atom = caf::atom_constant<caf::atom("flremove")>;  // (name) -> int64 requests it ended
                                                                      //   (rerouted or replica_lost)
using fleet_status_atom = caf::atom_constant<caf::atom("flstatus")>;  // () -> std::vector<replica_status>,
                                                                      //   live in-flight counts

class replica_router {
 public:
  // model: the tokenizer, chat template and config the front door works with (the
  // replicas must serve the same model; their facts are checked against it and a mismatch
  // is logged and refused). Starts connecting at once; never blocks. options.replicas may
  // be empty when replicas are added later (fleet_add_atom).
  replica_router(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, router_options options);
  // Stops the router actor; requests still in flight get no more events.
  ~replica_router();
  replica_router(const replica_router&) = delete;
  replica_router& operator=(const replica_router&) = delete;

  // Any thread; never blocks. The request's events go to sink from the router's thread.
  uint64_t submit(request req, event_sink_ptr sink);
  // Any thread. Cancels it on the replica it runs on; harmless once it has ended.
  void cancel(uint64_t ticket);
  // Any thread. Runs task once on an actor thread with the model.
  void run_with_model(std::function<void(const model_bundle&)> task);

  const model_bundle& model() const { return *model_; }
  const std::shared_ptr<metrics_registry>& metrics() const { return metrics_; }
  // The router actor, for the fleet_*_atom messages above.
  const caf::actor& actor() const { return actor_; }
  // Replicas up now. Any thread.
  int num_up() const;
  std::vector<replica_status> replicas() const;
  // Blocks until every replica (not retired) is up or has failed to connect at least once,
  // or timeout_ms has passed; true when every replica is up (false for an empty fleet).
  bool wait_settled(int64_t timeout_ms) const;

  struct shared;  // the state the facade and the actor share

 private:
  caf::actor_system& sys_;
  std::shared_ptr<const model_bundle> model_;
  std::shared_ptr<metrics_registry> metrics_;
  std::shared_ptr<shared> shared_;
  caf::actor actor_;
};

}  // namespace troupe::cluster
