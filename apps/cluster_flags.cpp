#include "apps/cluster_flags.hpp"

#include <caf/io/all.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string_view>
#include <thread>

#include "troupe/actors/model_bundle.hpp"
#include "troupe/embed/replica_split.hpp"
#include "troupe/embed/engine_factory.hpp"
#include "troupe/gpu/cuda_backend.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"

namespace troupe::apps {

const char* const cluster_key_env = "TROUPE_CLUSTER_KEY";

namespace {

int64_t parse_integer(const std::string& flag, const std::string& text) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw error(error_code::invalid_argument, flag + " " + text + ": not an integer");
  return v;
}

double parse_number(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw error(error_code::invalid_argument, flag + " " + text + ": not a number");
  return v;
}

// A routing weight or slack: a finite number from 0 to 1000.
double parse_weight(const std::string& flag, const std::string& text) {
  const double v = parse_number(flag, text);
  if (!(v >= 0 && v <= 1000)) {
    throw error(error_code::invalid_argument, flag + " " + text + ": expected a number from 0 to 1000");
  }
  return v;
}

bool is_autoscaler_flag(const std::string& name) {
  return name == "--min-replicas" || name == "--max-replicas" || name == "--target-utilization" ||
         name == "--scale-up-delay-ms" || name == "--scale-down-delay-ms" || name == "--worker-command" ||
         name == "--worker-stop-command";
}

}  // namespace

cluster_flags take_cluster_flags(int argc, char** argv, int first, bool allow_listen, bool allow_replica) {
  cluster_flags out;
  bool key_given = false;
  std::string router_flag;  // the last --router-* flag given
  cluster::autoscale_options autoscale;
  std::vector<std::string> autoscaler_flags_given;
  bool max_given = false;
  for (int i = 0; i < first && i < argc; ++i) out.rest.push_back(argv[i]);
  for (int i = first; i < argc; ++i) {
    const std::string_view arg = argv[i];
    std::string name(arg);
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos && arg.substr(0, 2) == "--") {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    }
    const bool is_router_flag = name == "--replica" || name == "--replicas" || name == "--router-affinity-keys" ||
                                name == "--router-affinity-slack" || name == "--router-waiting-weight" ||
                                name == "--router-kv-weight" || name == "--router-latency-weight";
    const bool ours = name == "--cluster-key" || (allow_listen && name == "--listen") ||
                      (allow_replica && (is_router_flag || is_autoscaler_flag(name)));
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
    } else if (name == "--replicas") {
      const int64_t n = parse_integer(name, *value);
      if (n < 1 || n > 64) throw error(error_code::invalid_argument, "--replicas " + *value + ": expected 1 to 64");
      out.local_replicas = static_cast<int>(n);
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
    } else if (name == "--router-latency-weight") {
      out.routing.latency_weight = parse_weight(name, *value);
    } else if (is_autoscaler_flag(name)) {
      autoscaler_flags_given.push_back(name);
      if (name == "--max-replicas") {
        max_given = true;
        autoscale.max_replicas = static_cast<int32_t>(std::clamp<int64_t>(parse_integer(name, *value), -1, 1 << 20));
      } else if (name == "--min-replicas") {
        autoscale.min_replicas = static_cast<int32_t>(std::clamp<int64_t>(parse_integer(name, *value), -1, 1 << 20));
      } else if (name == "--target-utilization") {
        autoscale.target_utilization = parse_number(name, *value);
      } else if (name == "--scale-up-delay-ms") {
        autoscale.scale_up_delay_ms = parse_integer(name, *value);
      } else if (name == "--scale-down-delay-ms") {
        autoscale.scale_down_delay_ms = parse_integer(name, *value);
      } else if (name == "--worker-command") {
        if (value->empty()) throw error(error_code::invalid_argument, "--worker-command needs a non-empty command");
        out.worker_command = *value;
      } else {
        if (value->empty()) throw error(error_code::invalid_argument, "--worker-stop-command needs a non-empty command");
        out.worker_stop_command = *value;
      }
    } else {
      out.replicas.push_back(cluster::parse_address(*value, "--replica"));
    }
  }
  if (!router_flag.empty() && out.replicas.empty() && !max_given && out.local_replicas < 2) {
    throw error(error_code::invalid_argument, router_flag +
                                                  " applies to the replica router: it needs --replica HOST:PORT, "
                                                  "--replicas N (2 or more) or --max-replicas N");
  }
  if (out.local_replicas > 0 && max_given) {
    throw error(error_code::invalid_argument,
                "--replicas and --max-replicas do not go together: the autoscaler manages every replica itself");
  }
  if (!key_given) {
    if (const char* env = std::getenv(cluster_key_env)) out.cluster_key = env;
  }
  if (!autoscaler_flags_given.empty() && !max_given) {
    throw error(error_code::invalid_argument,
                autoscaler_flags_given.front() + " needs --max-replicas N (which turns the autoscaler on)");
  }
  if (max_given) {
    if (!out.replicas.empty()) {
      throw error(error_code::invalid_argument,
                  "--replica and --max-replicas do not go together: the autoscaler manages every replica itself");
    }
    if (!out.worker_stop_command.empty() && out.worker_command.empty()) {
      throw error(error_code::invalid_argument, "--worker-stop-command needs --worker-command");
    }
    cluster::validate(autoscale);
    out.autoscale = autoscale;
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

bool routes(const cluster_flags& flags) {
  return !flags.replicas.empty() || flags.autoscale.has_value() || flags.local_replicas >= 2;
}

std::unique_ptr<cluster::replica_router> start_router(caf::actor_system& sys, const config& c,
                                                      cluster_flags& flags, int64_t wait_ms) {
  auto file = std::make_shared<const gguf::file>(gguf::file::open(c.model));
  auto model = model_bundle::load(file, c.scheduling.max_model_len);
  if (flags.autoscale && flags.cluster_key.empty() && flags.worker_command.empty()) {
    // Our own workers on loopback: a key nobody else knows keeps other local users' routers out.
    std::random_device entropy;
    char hex[33];
    for (int i = 0; i < 32; i += 8) std::snprintf(hex + i, 9, "%08x", entropy());
    flags.cluster_key = hex;
  }
  cluster::router_options o;
  o.replicas = flags.replicas;
  o.cluster_key = flags.cluster_key;
  o.affinity_keys = flags.affinity_keys;
  o.routing = flags.routing;
  const size_t num_local = flags.local_replicas >= 2 ? static_cast<size_t>(flags.local_replicas) : 0;
  if (num_local > 0) {
    const auto configs = split_for_replicas(c, flags.local_replicas, gpu::num_cuda_devices(),
                                            static_cast<int>(std::thread::hardware_concurrency()));
    for (size_t i = 0; i < configs.size(); ++i) {
      auto started = start_engine(sys, configs[i]);
      const std::string name = "local-" + std::to_string(i);
      std::fprintf(stderr, "troupe: replica %s: %s\n", name.c_str(), started.description.c_str());
      o.local_replicas.push_back({name, spawn_engine_actor(sys, std::move(started.eng))});
    }
  }
  auto router = std::make_unique<cluster::replica_router>(sys, std::move(model), std::move(o));
  if (flags.autoscale) return router;
  const int total = static_cast<int>(flags.replicas.size() + num_local);
  router->wait_settled(wait_ms);
  std::fprintf(stderr, "troupe: routing to %d replica(s), %d up\n", total, router->num_up());
  return router;
}

}  // namespace troupe::apps

namespace troupe::apps {

std::unique_ptr<cluster::autoscaler> start_autoscaler(caf::actor_system& sys, const config& c,
                                                      const cluster_flags& flags, cluster::replica_router& router) {
  cluster::autoscaler_options o;
  o.policy = *flags.autoscale;
  o.max_num_seqs = c.scheduling.max_num_seqs;
  o.worker_command = flags.worker_command;
  o.worker_stop_command = flags.worker_stop_command;
  o.cluster_key = flags.cluster_key;
  o.drain_timeout_ms = c.drain_timeout_ms;
  if (o.worker_command.empty()) {
    char path[4096];
    const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) throw error(error_code::internal, "cannot find this executable (/proc/self/exe) to start workers");
    o.worker_executable.assign(path, static_cast<size_t>(n));
    o.worker_args.push_back("worker");
    // serve's model and engine flags; the HTTP ones are unused by a worker.
    for (size_t i = 2; i < flags.rest.size(); ++i) o.worker_args.push_back(flags.rest[i]);
  }
  const auto& p = o.policy;
  std::fprintf(stderr,
               "troupe: autoscaler: %d to %d replicas, target utilization %.2f (of max_num_seqs %d each), "
               "scale up after %lld ms above, down after %lld ms below; workers: %s\n",
               p.min_replicas, p.max_replicas, p.target_utilization, o.max_num_seqs,
               static_cast<long long>(p.scale_up_delay_ms), static_cast<long long>(p.scale_down_delay_ms),
               o.worker_command.empty() ? "local `troupe worker` processes" : o.worker_command.c_str());
  return std::make_unique<cluster::autoscaler>(sys, router, std::move(o));
}

}  // namespace troupe::apps
