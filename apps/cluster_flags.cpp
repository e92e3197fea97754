#include "apps/cluster_flags.hpp"

#include <caf/io/all.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "troupe/actors/model_bundle.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"

namespace troupe::apps {

const char* const cluster_key_env = "TROUPE_CLUSTER_KEY";

namespace {

// A routing weight or slack: a finite number from 0 to 1000.
double parse_weight(const std::string& flag, const std::string& text) {
  double v = 0;
  size_t used = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(v >= 0 && v <= 1000)) {
    throw error(error_code::invalid_argument, flag + " " + text + ": expected a number from 0 to 1000");
  }
  return v;
}

}  // namespace

cluster_flags take_cluster_flags(int argc, char** argv, int first, bool allow_listen, bool allow_replica) {
  cluster_flags out;
  bool key_given = false;
  std::string router_flag;  // the last --router-* flag given
  for (int i = 0; i < first && i < argc; ++i) out.rest.push_back(argv[i]);
  for (int i = first; i < argc; ++i) {
    const std::string_view arg = argv[i];
    std::string name(arg);
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos && arg.substr(0, 2) == "--") {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    }
    const bool is_router_flag = name == "--replica" || name == "--router-affinity-keys" ||
                                name == "--router-affinity-slack" || name == "--router-waiting-weight" ||
                                name == "--router-kv-weight";
    const bool ours = name == "--cluster-key" || (allow_listen && name == "--listen") ||
                      (allow_replica && is_router_flag);
    if (!ours) {
      out.rest.push_back(argv[i]);
      continue;
    }
    if (!value) {
      if (i + 1 >= argc) throw error(error_code::invalid_argument, name + " needs a value");
      value = argv[++i];
    }
    if (name.starts_with("--router-")) router_flag = name;
    if (name == "--cluster-key") {
      out.cluster_key = *value;
      key_given = true;
    } else if (name == "--listen") {
      out.listen = *value;
    } else if (name == "--router-affinity-keys") {
      const bool is_number = !value->empty() && value->size() <= 9 &&
                             std::all_of(value->begin(), value->end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!is_number || std::stol(*value) < 1) {
        throw error(error_code::invalid_argument,
                    "--router-affinity-keys " + *value + ": expected a whole number from 1 to 999999999");
      }
      out.affinity_keys = static_cast<size_t>(std::stol(*value));
    } else if (name == "--router-affinity-slack") {
      out.routing.affinity_slack = parse_weight(name, *value);
    } else if (name == "--router-waiting-weight") {
      out.routing.waiting_weight = parse_weight(name, *value);
    } else if (name == "--router-kv-weight") {
      out.routing.kv_weight = parse_weight(name, *value);
    } else {
      out.replicas.push_back(cluster::parse_address(*value, "--replica"));
    }
  }
  if (!router_flag.empty() && out.replicas.empty()) {
    throw error(error_code::invalid_argument, router_flag + " applies to the replica router: it needs --replica HOST:PORT");
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

std::unique_ptr<cluster::replica_router> start_router(caf::actor_system& sys, const config& c,
                                                      const cluster_flags& flags, int64_t wait_ms) {
  auto file = std::make_shared<const gguf::file>(gguf::file::open(c.model));
  auto model = model_bundle::load(file, c.scheduling.max_model_len);
  cluster::router_options o;
  o.replicas = flags.replicas;
  o.cluster_key = flags.cluster_key;
  o.affinity_keys = flags.affinity_keys;
  o.routing = flags.routing;
  auto router = std::make_unique<cluster::replica_router>(sys, std::move(model), std::move(o));
  const int total = static_cast<int>(flags.replicas.size());
  router->wait_settled(wait_ms);
  std::fprintf(stderr, "troupe: routing to %d replica(s), %d up\n", total, router->num_up());
  return router;
}

}  // namespace troupe::apps
