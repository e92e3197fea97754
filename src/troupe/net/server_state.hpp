// What every session of one server shares: the options, the engine bridge, the draining
// flag, the count of open connections and the gate through which engine threads reach the
// sessions. Immutable after start except the atomics and the gate.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>

#include "troupe/engine/snapshot_history.hpp"
#include "troupe/net/bridge.hpp"
#include "troupe/net/front_door_metrics.hpp"

namespace troupe::net {

struct server_options {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;               // 0 = any free port
  std::string api_key;                // "" = open
  int32_t io_threads = 1;
  int64_t max_body_bytes = 1 << 20;   // HTTP bodies and WebSocket messages
  int64_t max_buffered_bytes = 4 << 20;
  int32_t max_connections = 4096;
  int64_t idle_timeout_ms = 60000;    // an HTTP connection with no request in flight
  // One write (a frame, a chunk, a whole answer) the client has not taken in this long: it
  // stopped reading, and its connection is closed.
  int64_t write_timeout_ms = 30000;
  // GET /v1/diagnosis: the metrics are snapshotted this often, and this many kept.
  int64_t diagnosis_interval_ms = 1000;
  int32_t diagnosis_history = 300;
};

// The engine's threads reach a session only through its sink, which holds the session
// strongly while it posts an event, so the session's last reference may drop there and the
// session (its socket and timers) be destroyed on an engine thread. That is safe while the
// io_context lives and fatal after it: a sink does both under a shared lock, and
// server::stop closes the gate under the exclusive lock before the io_context goes; later
// events are dropped (their sessions are being destroyed with it).
class session_gate {
 public:
  // Runs f unless the gate is closed, with the io_context alive until f returns.
  template <typename fn>
  void if_open(fn&& f) {
    std::shared_lock lock(mutex_);
    if (!is_closed_) f();
  }
  void close() {
    std::unique_lock lock(mutex_);
    is_closed_ = true;
  }

 private:
  std::shared_mutex mutex_;
  bool is_closed_ = false;
};

struct server_state {
  server_options options;
  std::shared_ptr<session_gate> gate = std::make_shared<session_gate>();
  engine_bridge& bridge;
  std::atomic<int32_t> num_connections{0};
  std::atomic<int64_t> num_ws_sessions{0};
  front_door_metrics metrics;
  // The metrics once per diagnosis_interval_ms (server.cpp's sampler), for /v1/diagnosis.
  snapshot_history history;

  server_state(server_options o, engine_bridge& b)
      : options(std::move(o)),
        bridge(b),
        metrics(b.metrics()),
        history(static_cast<size_t>(std::max<int32_t>(2, options.diagnosis_history))) {}
};

// Whether an Authorization header ("Bearer KEY", the scheme in any case) or, when
// allow_query_key (the WebSocket upgrade: browsers cannot set its headers), an api_key
// query parameter carries the configured key. Always true when no key is configured.
bool is_authorized(const server_options& options, std::string_view authorization_header,
                   std::string_view target, bool allow_query_key);
// Whether target has an api_key query parameter (to say why it was not taken).
bool has_api_key_in_query(std::string_view target);

// Unix epoch milliseconds with a fractional part: the stamp on WebSocket deltas.
double unix_time_ms();

}  // namespace troupe::net
