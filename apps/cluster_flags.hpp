// The scale-out flags of `troupe worker` and `troupe serve` (--listen, --replica,
// --cluster-key, and serve's autoscaler flags), taken out of the command line before the
// engine flags are parsed, and the replica router serve runs when given --replica or
// --max-replicas.
#pragma once
#include <caf/all.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "troupe/cluster/autoscale_policy.hpp"
#include "troupe/cluster/autoscaler.hpp"
#include "troupe/cluster/router.hpp"
#include "troupe/config/config.hpp"

namespace troupe::apps {

extern const char* const cluster_key_env;  // TROUPE_CLUSTER_KEY

struct cluster_flags {
  std::vector<cluster::replica_address> replicas;  // --replica HOST:PORT, repeatable
  int local_replicas = 0;                          // --replicas N: engines in this process (serve)
  std::optional<std::string> listen;               // --listen HOST:PORT (worker)
  std::string cluster_key;                         // --cluster-key, else $TROUPE_CLUSTER_KEY
  size_t affinity_keys = 8192;                     // --router-affinity-keys N (serve)
  cluster::routing_options routing;                // --router-affinity-slack, --router-waiting-weight, --router-kv-weight
  // The autoscaler (serve): on with --max-replicas; --min-replicas, --target-utilization,
  // --scale-up-delay-ms and --scale-down-delay-ms tune it.
  std::optional<cluster::autoscale_options> autoscale;
  std::string worker_command;       // --worker-command CMD
  std::string worker_stop_command;  // --worker-stop-command CMD
  std::vector<char*> rest;                         // argv without the flags above

  int argc() const { return static_cast<int>(rest.size()); }
  char** argv() { return rest.data(); }
};

// Loads the middleman with BASP heartbeats on (CAF 0.17 has them off): every 500 ms, and a
// peer silent for 2.5 s has its connection closed, which its monitors see as a down message.
void load_middleman(caf::actor_system_config& cfg);

// Idle scheduler threads of serve and worker go to sleep on their condition variable after a
// short poll: CAF 0.17's default polls every 50 us for 500 attempts, which between an
// engine's steps (or a front door's events) costs a few ms of CPU per step, taken from the
// compute threads or, with several workers on one host, from the other workers
// (bench/replicas.py, docs/scale-out.md "Measured").
void quiet_idle_scheduler(caf::actor_system_config& cfg);

// Takes the flags out of argv[first..]; with allow_listen false --listen is left in place
// (and so refused by the config parser), likewise --replica and the autoscaler's flags with
// allow_replica false. Throws troupe::error(invalid_argument) for a malformed value or a
// combination that cannot work (autoscaler flags without --max-replicas, --replica with it).
cluster_flags take_cluster_flags(int argc, char** argv, int first, bool allow_listen, bool allow_replica);

// Whether serve routes (to remote replicas, to an autoscaled fleet or to --replicas N >= 2
// local engines) rather than running one engine itself.
bool routes(const cluster_flags& flags);

// The router over flags.replicas and flags.local_replicas engines started here (one share
// of the machine each: embed/replica_split.hpp), with the front door's model (tokenizer, template and
// config) loaded from c.model without any backend. Waits up to wait_ms for every replica
// to be up or to have failed once, saying on stderr how many are up (not with the
// autoscaler: its fleet starts empty). With the autoscaler and neither a key nor a worker
// command, flags.cluster_key becomes a random key for the workers it starts.
std::unique_ptr<cluster::replica_router> start_router(caf::actor_system& sys, const config& c,
                                                      cluster_flags& flags, int64_t wait_ms = 20000);

// The autoscaler over router: local workers are this binary's `worker` with serve's model
// and engine flags (flags.rest), unless flags.worker_command.
std::unique_ptr<cluster::autoscaler> start_autoscaler(caf::actor_system& sys, const config& c,
                                                      const cluster_flags& flags, cluster::replica_router& router);

}  // namespace troupe::apps
