// The autoscaler of `troupe serve --max-replicas N`: an actor beside the replica router that
// samples the fleet's utilization, asks autoscale_policy what to do, starts workers (a local
// `troupe worker`, or the user's --worker-command), adds each to the router once it has
// printed its address (the router routes to it once its gate has answered: the warm-up),
// and scales down by draining the least loaded replica through the router, then stopping
// it. A worker that dies is removed from the router; below --min-replicas it is replaced.
//
//     autoscaler ──(fleet_status / add / drain / remove)──► router ──► workers
//         └── fork/exec, SIGTERM ──► its child processes (their stdout: the address line)
//
// Every decision is logged on stderr with its numbers and counted in /metrics
// (docs/scale-out.md, "Autoscaler").
#pragma once
#include <caf/all.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "troupe/cluster/autoscale_policy.hpp"
#include "troupe/cluster/router.hpp"

namespace troupe::cluster {

struct autoscaler_options {
  autoscale_options policy;
  int32_t max_num_seqs = 1;  // each replica's capacity: the utilization's unit
  // Local workers: executable (the serve binary) and the arguments after it, up to the
  // --listen the autoscaler adds ("worker" plus the model and engine flags).
  std::string worker_executable;
  std::vector<std::string> worker_args;
  // Else: a shell command that starts a worker and prints HOST:PORT (or the worker's own
  // "listening on HOST:PORT" line) on stdout; and the command that stops one, run with
  // $TROUPE_WORKER_ADDRESS=HOST:PORT (empty: SIGTERM to the start command's process group).
  std::string worker_command;
  std::string worker_stop_command;
  std::string cluster_key;  // given to every worker in $TROUPE_CLUSTER_KEY
  int64_t sample_interval_ms = 100;
  int64_t start_timeout_ms = 120000;    // no address printed by then: the start failed
  int64_t warm_up_timeout_ms = 60000;   // not up in the router by then: the start failed
  int64_t lost_after_ms = 10000;        // a ready replica down this long is replaced
  int64_t drain_timeout_ms = 30000;     // a drain not finished by then: removed anyway
  int64_t start_backoff_max_ms = 30000; // failed starts wait 1 s, doubling up to this
};

class autoscaler {
 public:
  // Starts at once: the fleet grows to min_replicas without waiting for load.
  autoscaler(caf::actor_system& sys, replica_router& router, autoscaler_options options);
  ~autoscaler();
  autoscaler(const autoscaler&) = delete;
  autoscaler& operator=(const autoscaler&) = delete;

  // Main thread, at shutdown: stops the actor, runs --worker-stop-command for every worker
  // whose address it knows, SIGTERMs every worker process it started, waits up to
  // timeout_ms for them (and the stop commands) to exit and SIGKILLs the rest. Blocks.
  void stop_workers(int64_t timeout_ms);

  struct shared;  // the child processes, for stop_workers

 private:
  caf::actor_system& sys_;
  std::shared_ptr<shared> shared_;
  std::string stop_command_;
  caf::actor actor_;
};

}  // namespace troupe::cluster
