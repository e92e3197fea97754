// What every session of one server shares: the options, the engine bridge, the draining
// flag and the count of open connections. Immutable after start except the atomics.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

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
};

struct server_state {
  server_options options;
  engine_bridge& bridge;
  std::atomic<int32_t> num_connections{0};
  std::atomic<int64_t> num_ws_sessions{0};
  front_door_metrics metrics;

  server_state(server_options o, engine_bridge& b) : options(std::move(o)), bridge(b), metrics(b.metrics()) {}
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
