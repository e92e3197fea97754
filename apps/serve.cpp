// `troupe serve`: reads the config, loads the model, starts the engine and the front door,
// prints "troupe: serving MODEL on http://HOST:PORT", and on SIGINT/SIGTERM drains: stops
// accepting, lets in-flight requests finish for drain_timeout_ms, cancels the rest (their
// `done` says so), and exits 0. A second signal skips the wait.
#include "apps/serve.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "apps/cli_args.hpp"
#include "apps/cluster_flags.hpp"
#include "troupe/actors/engine.hpp"
#include "troupe/config/config_parse.hpp"
#include "troupe/actors/type_ids.hpp"
#include "troupe/embed/engine_factory.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/net/bridge.hpp"
#include "troupe/net/server.hpp"

namespace troupe::apps {
namespace {

constexpr const char* serve_usage =
    "usage: troupe serve --model M [options]\n"
    "Serves the OpenAI-compatible HTTP API, the WebSocket protocol (/v1/ws), /metrics,\n"
    "/health and a chat page (/) on http://HOST:PORT.\n"
    "  --replica HOST:PORT  route requests to a `troupe worker` there instead of running an\n"
    "                       engine here (repeatable; docs/scale-out.md)\n"
    "  --replicas N         run N engine replicas in this process behind the router, each\n"
    "                       with its own KV pool: one per --tensor-parallel group of CUDA\n"
    "                       devices, or an equal share of the CPU threads [1]\n"
    "  --cluster-key KEY    the workers' cluster key (default: $TROUPE_CLUSTER_KEY)\n"
    "  --router-affinity-keys N  prefix keys the router's affinity table remembers\n"
    "                       (default 8192; the replicas' prefix digests are asked first)\n"
    "  --router-affinity-slack S  how much busier (in requests) a replica holding the\n"
    "                       request's prefix may be and still get it (default 4)\n"
    "  --router-waiting-weight W, --router-kv-weight W, --router-latency-weight W\n"
    "                       a replica's load score is in_flight + W_wait * waiting\n"
    "                       + W_kv * kv_use + W_lat * (its step time / the fastest's - 1)\n"
    "                       (defaults 0.5, 4, 2)\n"
    "Autoscaler (docs/scale-out.md; on with --max-replicas, instead of --replica):\n"
    "  --max-replicas N     at most N workers; the autoscaler starts local `troupe worker`\n"
    "                       processes with this serve's model and engine flags [off]\n"
    "  --min-replicas N     at least N workers, started at once [1]\n"
    "  --target-utilization U  requests in flight per (ready replica x --max-num-seqs)\n"
    "                       to hold the fleet at [0.7]\n"
    "  --scale-up-delay-ms MS   one more worker after MS above the target [30000]\n"
    "  --scale-down-delay-ms MS one fewer (the least loaded, drained first) after MS\n"
    "                       below the target with hysteresis [120000]\n"
    "  --worker-command CMD run `sh -c CMD` to start a worker instead; it prints HOST:PORT\n"
    "                       on stdout ($TROUPE_CLUSTER_KEY holds the key)\n"
    "  --worker-stop-command CMD  run `sh -c CMD` to stop one ($TROUPE_WORKER_ADDRESS is\n"
    "                       its HOST:PORT); without it: SIGTERM to CMD's process group\n"
    "Options:\n";

// Waits up to timeout_ms for a blocked signal; true when one came.
bool wait_signal(const sigset_t& signals, int64_t timeout_ms) {
  timespec ts{static_cast<time_t>(timeout_ms / 1000), static_cast<long>((timeout_ms % 1000) * 1000000)};
  return sigtimedwait(&signals, nullptr, &ts) > 0;
}

// Polls until pred() or the deadline or a signal; true when pred() held.
template <class Pred>
bool wait_until(const sigset_t& signals, int64_t timeout_ms, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (wait_signal(signals, 20)) return pred();
  }
  return true;
}

}  // namespace

int run_serve(int argc, char** argv) {
  if (print_help_if_asked(argc, argv, 2, serve_usage)) return 0;
  auto flags = take_cluster_flags(argc, argv, 2, /*allow_listen=*/false, /*allow_replica=*/true);
  config c = parse_config(flags.argc(), flags.argv(), 2);
  c.validate();
  const bool routed = routes(flags);

  // Each connection is a descriptor: allow as many as the hard limit does (often 1024 soft).
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  // Every thread started from here on inherits the mask, so the signals wait for main.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  add_message_types(cfg);
  quiet_idle_scheduler(cfg);
  if (routed) load_middleman(cfg);
  caf::actor_system sys{cfg};
  // With --replica no engine runs here: the router sends every request to a worker.
  started_engine started;
  std::unique_ptr<cluster::replica_router> router;
  std::unique_ptr<cluster::autoscaler> scaler;
  if (routed) {
    router = start_router(sys, c, flags);
    if (flags.autoscale) {
      scaler = start_autoscaler(sys, c, flags, *router);
      started.description = "no local engine: routing to the autoscaler's " +
                            std::to_string(flags.autoscale->min_replicas) + " to " +
                            std::to_string(flags.autoscale->max_replicas) + " replica(s)";
    } else {
      started.description = flags.local_replicas >= 2 && flags.replicas.empty()
                                ? "routing to " + std::to_string(flags.local_replicas) + " engine replicas in this process"
                                : "routing to " + std::to_string(flags.replicas.size()) + " remote and " +
                                      std::to_string(flags.local_replicas >= 2 ? flags.local_replicas : 0) +
                                      " local replica(s)";
    }
  } else {
    started = start_engine(sys, c);
  }
  const std::string model_id =
      c.served_model_name.empty() ? std::filesystem::path(c.model).stem().string() : c.served_model_name;
  auto bridge_ptr = routed ? std::make_unique<net::engine_bridge>(*router, model_id)
                           : std::make_unique<net::engine_bridge>(*started.eng, model_id);
  net::engine_bridge& bridge = *bridge_ptr;
  net::server_options so;
  so.host = c.host;
  so.port = static_cast<uint16_t>(c.port);
  so.api_key = c.api_key;
  so.io_threads = c.io_threads;
  so.max_body_bytes = c.max_body_bytes;
  so.max_buffered_bytes = c.max_buffered_bytes;
  so.write_timeout_ms = c.write_timeout_ms;
  so.max_connections = c.max_connections;
  net::server front_door(bridge, so);
  front_door.start();
  bridge.set_ready(true);
  std::fprintf(stderr, "troupe: %s\n", started.description.c_str());
  std::fprintf(stderr, "troupe: serving %s on http://%s:%u\n", bridge.model_id().c_str(), c.host.c_str(),
               front_door.port());

  while (sigwaitinfo(&signals, nullptr) < 0) {
  }
  std::fprintf(stderr, "troupe: shutting down: %lld requests in flight, waiting up to %lld ms\n",
               static_cast<long long>(bridge.num_in_flight()), static_cast<long long>(c.drain_timeout_ms));
  bridge.set_draining();
  front_door.stop_accepting();
  if (!wait_until(signals, c.drain_timeout_ms, [&] { return bridge.num_in_flight() == 0; })) {
    std::fprintf(stderr, "troupe: cancelling %lld requests\n", static_cast<long long>(bridge.num_in_flight()));
    bridge.cancel_all();
    wait_until(signals, 5000, [&] { return bridge.num_in_flight() == 0; });
  }
  // Lets the sessions write the last frames (the cancelled requests' done) before closing.
  wait_signal(signals, 300);
  front_door.stop();
  if (routed) {
    // The workers the autoscaler started have nothing in flight now: they exit at once.
    if (scaler) scaler->stop_workers(5000);
    // CAF 0.17's middleman can wait on a peer at shutdown; nothing here needs an orderly end.
    std::fprintf(stderr, "troupe: stopped\n");
    std::fflush(nullptr);
    std::_Exit(0);
  }
  engine& eng = *started.eng;
  if (eng.num_abandoned_workers() > 0) {
    // The actor system would wait for every actor, the stuck worker's thread included.
    std::fprintf(stderr, "troupe: stopped (not waiting for %lld worker(s) abandoned stuck in a step)\n",
                 static_cast<long long>(eng.num_abandoned_workers()));
    std::fflush(nullptr);
    std::_Exit(0);
  }
  std::fprintf(stderr, "troupe: stopped\n");
  return 0;
}

}  // namespace troupe::apps
