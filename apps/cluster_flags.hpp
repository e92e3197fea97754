// The scale-out flags of `troupe worker` and `troupe serve` (--listen, --replica,
// --cluster-key), taken out of the command line before the engine flags are parsed, and
// the replica router serve runs when given --replica.
#pragma once
#include <caf/all.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "troupe/cluster/router.hpp"
#include "troupe/config/config.hpp"

namespace troupe::apps {

extern const char* const cluster_key_env;  // TROUPE_CLUSTER_KEY

struct cluster_flags {
  std::vector<cluster::replica_address> replicas;  // --replica HOST:PORT, repeatable
  std::optional<std::string> listen;               // --listen HOST:PORT (worker)
  std::string cluster_key;                         // --cluster-key, else $TROUPE_CLUSTER_KEY
  size_t affinity_keys = 8192;                     // --router-affinity-keys N (serve)
  cluster::routing_options routing;                // --router-affinity-slack, --router-waiting-weight, --router-kv-weight
  std::vector<char*> rest;                         // argv without the flags above

  int argc() const { return static_cast<int>(rest.size()); }
  char** argv() { return rest.data(); }
};

// Loads the middleman with BASP heartbeats on (CAF 0.17 has them off): every 500 ms, and a
// peer silent for 2.5 s has its connection closed, which its monitors see as a down message.
void load_middleman(caf::actor_system_config& cfg);

// Takes the flags out of argv[first..]; with allow_listen false --listen is left in place
// (and so refused by the config parser), likewise --replica with allow_replica false.
cluster_flags take_cluster_flags(int argc, char** argv, int first, bool allow_listen, bool allow_replica);

// The router over flags.replicas, with the front door's model (tokenizer, template and
// config) loaded from c.model without any backend. Waits up to wait_ms for every replica
// to be up or to have failed once, saying on stderr how many are up.
std::unique_ptr<cluster::replica_router> start_router(caf::actor_system& sys, const config& c,
                                                      const cluster_flags& flags, int64_t wait_ms = 20000);

}  // namespace troupe::apps
