#include "apps/cluster_flags.hpp"

#include <caf/io/all.hpp>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "troupe/actors/model_bundle.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"

namespace troupe::apps {

const char* const cluster_key_env = "TROUPE_CLUSTER_KEY";

cluster_flags take_cluster_flags(int argc, char** argv, int first, bool allow_listen, bool allow_replica) {
  cluster_flags out;
  bool key_given = false;
  for (int i = 0; i < first && i < argc; ++i) out.rest.push_back(argv[i]);
  for (int i = first; i < argc; ++i) {
    const std::string_view arg = argv[i];
    std::string name(arg);
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos && arg.substr(0, 2) == "--") {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    }
    const bool ours = name == "--cluster-key" || (allow_listen && name == "--listen") ||
                      (allow_replica && name == "--replica");
    if (!ours) {
      out.rest.push_back(argv[i]);
      continue;
    }
    if (!value) {
      if (i + 1 >= argc) throw error(error_code::invalid_argument, name + " needs a value");
      value = argv[++i];
    }
    if (name == "--cluster-key") {
      out.cluster_key = *value;
      key_given = true;
    } else if (name == "--listen") {
      out.listen = *value;
    } else {
      out.replicas.push_back(cluster::parse_address(*value, "--replica"));
    }
  }
  if (!key_given) {
    if (const char* env = std::getenv(cluster_key_env)) out.cluster_key = env;
  }
  return out;
}

void load_middleman(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds(500)});
  cfg.set("middleman.connection-timeout", caf::timespan{std::chrono::milliseconds(2500)});
}

void quiet_idle_scheduler(caf::actor_system_config& cfg) {
  cfg.set("work-stealing.moderate-poll-attempts", 10);
}

std::unique_ptr<cluster::replica_router> start_router(caf::actor_system& sys, const config& c,
                                                      const cluster_flags& flags, int64_t wait_ms) {
  auto file = std::make_shared<const gguf::file>(gguf::file::open(c.model));
  auto model = model_bundle::load(file, c.scheduling.max_model_len);
  cluster::router_options o;
  o.replicas = flags.replicas;
  o.cluster_key = flags.cluster_key;
  auto router = std::make_unique<cluster::replica_router>(sys, std::move(model), std::move(o));
  const int total = static_cast<int>(flags.replicas.size());
  router->wait_settled(wait_ms);
  std::fprintf(stderr, "troupe: routing to %d replica(s), %d up\n", total, router->num_up());
  return router;
}

}  // namespace troupe::apps
