// `troupe serve`: reads the config, loads the model, starts the engine and the front door,
// prints "troupe: serving MODEL on http://HOST:PORT", and on SIGINT/SIGTERM drains: stops
// accepting, lets in-flight requests finish for drain_timeout_ms, cancels the rest (their
// `done` says so), and exits 0. A second signal skips the wait.
#include "apps/serve.hpp"

#include <caf/all.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "actors/engine.hpp"
#include "config/config_parse.hpp"
#include "apps/backend_select.hpp"
#include "model/error.hpp"
#include "model/gguf.hpp"
#include "net/bridge.hpp"
#include "net/server.hpp"

namespace troupe::apps {
namespace {

constexpr const char* serve_usage =
    "usage: troupe serve --model M [options]\n"
    "Serves the OpenAI-compatible HTTP API, the WebSocket protocol (/v1/ws), /metrics,\n"
    "/health and a chat page (/) on http://HOST:PORT. Options:\n";

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

backend_choice make_backends(const config& c, std::shared_ptr<const gguf::file> file, const model_bundle& model) {
  backend_choice_options o;
  o.device = c.device;
  if (!c.devices.empty()) o.devices = parse_device_list(c.devices);
  o.tensor_parallel = c.tensor_parallel;
  o.gpu_memory_utilization = c.gpu_memory_utilization;
  o.cuda_graphs = c.cuda_graphs;
  o.max_num_batched_tokens = c.scheduling.max_num_batched_tokens;
  o.max_model_len = model.max_model_len;
  o.cpu.num_threads = c.threads;
  o.cpu.block_size = c.block_size;
  o.cpu.kv_cache_bytes = c.kv_cache_bytes;
  o.cpu.eog_ids = model.tok.eog_ids();
  if (c.swap_space > 0) {
    // K and V in fp16 for every layer, as a KV block is laid out on either backend.
    const auto& m = model.config;
    const double bytes_per_block = 2.0 * m.num_layers * c.block_size * m.kv_dim() * 2;
    o.cpu.num_swap_blocks = static_cast<int32_t>(c.swap_space * double(1ull << 30) / bytes_per_block);
    o.num_swap_blocks = o.cpu.num_swap_blocks;
  }
  return choose_backend(std::move(file), o);
}

}  // namespace

int run_serve(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::fputs(serve_usage, stdout);
      std::fputs(config_help().c_str(), stdout);
      return 0;
    }
  }
  config c = parse_config(argc, argv, 2);
  c.validate();

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

  auto file = std::make_shared<const gguf::file>(gguf::file::open(c.model));
  // max_model_len 0 = the model's whole context; model_bundle caps any length by it.
  auto model = model_bundle::load(file, c.scheduling.max_model_len);
  auto choice = make_backends(c, file, *model);
  auto b = choice.ranks.front();

  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  engine_options eo;
  eo.scheduling = c.scheduling;
  eo.scheduling.max_model_len = model->max_model_len;
  eo.enable_prefix_caching = c.enable_prefix_caching;
  eo.more_ranks.assign(choice.ranks.begin() + 1, choice.ranks.end());
  if (b->num_swap_blocks() > 0) eo.scheduling.preemption = preemption_mode::swap;
  engine eng(sys, model, b, eo);

  net::engine_bridge bridge(eng, c.served_model_name.empty() ? std::filesystem::path(c.model).stem().string()
                                                             : c.served_model_name);
  net::server_options so;
  so.host = c.host;
  so.port = static_cast<uint16_t>(c.port);
  so.api_key = c.api_key;
  so.io_threads = c.io_threads;
  so.max_body_bytes = c.max_body_bytes;
  so.max_buffered_bytes = c.max_buffered_bytes;
  so.max_connections = c.max_connections;
  net::server front_door(bridge, so);
  front_door.start();
  bridge.set_ready(true);
  std::fprintf(stderr, "troupe: %s, max_model_len %d, %d KV blocks of %d\n", choice.description.c_str(), model->max_model_len,
               b->kv_shape().num_blocks, b->kv_shape().block_size);
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
  std::fprintf(stderr, "troupe: stopped\n");
  return 0;
}

}  // namespace troupe::apps
