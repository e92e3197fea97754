// `troupe worker`: builds one engine replica from the same model and engine flags as
// `troupe serve`, publishes its gate on --listen HOST:PORT over CAF's middleman, and prints
// "troupe: worker MODEL listening on HOST:PORT" on stdout when ready. A router that says
// hello with the cluster key gets the replica's handle. On SIGINT/SIGTERM it drains: new
// requests are refused as unavailable (the router sends them elsewhere), the ones in
// flight may finish for drain_timeout_ms, then it exits 0.
#include "apps/worker.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include "apps/cli_args.hpp"
#include "apps/cluster_flags.hpp"
#include "troupe/actors/type_ids.hpp"
#include "troupe/cluster/gate.hpp"
#include "troupe/config/config_parse.hpp"
#include "troupe/embed/engine_factory.hpp"
#include "troupe/model/error.hpp"

namespace troupe::apps {
namespace {

constexpr const char* worker_usage =
    "usage: troupe worker --model M --listen HOST:PORT [--cluster-key KEY] [options]\n"
    "Runs one engine replica for `troupe serve --replica HOST:PORT` over CAF's middleman.\n"
    "  --listen HOST:PORT   where to listen (port 0 picks a free one; the line\n"
    "                       \"troupe: worker MODEL listening on HOST:PORT\" on stdout says which)\n"
    "  --cluster-key KEY    the key a router must present (default: $TROUPE_CLUSTER_KEY);\n"
    "                       required to listen on an address other than loopback. The key\n"
    "                       gates the replica's handle; the connection is neither encrypted\n"
    "                       nor authenticated: use trusted networks or tunnels.\n"
    "The model and engine options are serve's (--host, --port and the HTTP ones are unused):\n";

}  // namespace

int run_worker(int argc, char** argv) {
  if (print_help_if_asked(argc, argv, 2, worker_usage)) return 0;
  auto flags = take_cluster_flags(argc, argv, 2, /*allow_listen=*/true, /*allow_replica=*/false);
  if (!flags.listen) {
    throw error(error_code::invalid_argument, "troupe worker needs --listen HOST:PORT (port 0 picks a free one)");
  }
  const auto listen = cluster::parse_address(*flags.listen, "--listen", /*allow_zero_port=*/true);
  if (!cluster::is_loopback_host(listen.host) && flags.cluster_key.empty()) {
    std::fprintf(stderr,
                 "troupe: worker: refusing to listen on %s without a cluster key: give --cluster-key or "
                 "$%s (the middleman neither authenticates nor encrypts; see docs/scale-out.md)\n",
                 listen.host.c_str(), cluster_key_env);
    return 2;
  }
  config c = parse_config(flags.argc(), flags.argv(), 2);
  c.validate();

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  load_middleman(cfg);
  quiet_idle_scheduler(cfg);
  add_message_types(cfg);
  caf::actor_system sys{cfg};

  auto started = start_engine(sys, c);
  cluster::replica_facts facts;
  facts.model_id = c.served_model_name.empty() ? std::filesystem::path(c.model).stem().string() : c.served_model_name;
  facts.vocab_size = started.eng->model().config.vocab_size;
  facts.max_model_len = started.eng->scheduling().max_model_len;
  auto engine = spawn_engine_actor(sys, std::move(started.eng));
  auto draining = std::make_shared<std::atomic<bool>>(false);
  auto front = cluster::spawn_replica_front(sys, engine, draining);
  auto gate = cluster::spawn_gate(sys, front, facts, flags.cluster_key);
  auto port = sys.middleman().publish(gate, listen.port, listen.host.c_str(), /*reuse_addr=*/true);
  if (!port) {
    std::fprintf(stderr, "troupe: worker: cannot listen on %s: %s\n", listen.name().c_str(),
                 sys.render(port.error()).c_str());
    std::fflush(nullptr);
    std::_Exit(1);
  }
  std::fprintf(stderr, "troupe: %s\n", started.description.c_str());
  std::fprintf(stdout, "troupe: worker %s listening on %s:%u\n", facts.model_id.c_str(), listen.host.c_str(),
               static_cast<unsigned>(*port));
  std::fflush(stdout);
  std::fflush(stderr);

  while (sigwaitinfo(&signals, nullptr) < 0) {
  }
  draining->store(true);
  std::fprintf(stderr, "troupe: worker draining: refusing new requests, waiting up to %lld ms\n",
               static_cast<long long>(c.drain_timeout_ms));
  // In flight: what the scheduler holds. A request submitted just before the signal may
  // still be on its way to it, so the engine must look idle twice, 100 ms apart.
  {
    caf::scoped_actor self{sys};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(c.drain_timeout_ms);
    int idle_polls = 0;
    while (idle_polls < 2 && std::chrono::steady_clock::now() < deadline) {
      timespec ts{0, 100 * 1000 * 1000};
      if (sigtimedwait(&signals, nullptr, &ts) > 0) break;  // a second signal: stop now
      bool idle = false;
      self->request(engine, std::chrono::seconds(5), atoms::stats_atom::value)
          .receive(
              [&](const scheduler_snapshot& s) {
                idle = s.scheduling.num_running + s.scheduling.num_waiting + s.scheduling.num_swapped == 0;
              },
              [&](caf::error&) { idle = true; });
      idle_polls = idle ? idle_polls + 1 : 0;
    }
  }
  std::fprintf(stderr, "troupe: worker stopped\n");
  std::fflush(nullptr);
  // The middleman's connections and the engine's threads need no orderly end here, and
  // CAF 0.17's shutdown can wait on a remote peer: leave at once.
  std::_Exit(0);
}

}  // namespace troupe::apps
