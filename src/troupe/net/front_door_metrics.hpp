// The front door's own troupe_* metrics, registered in the engine's registry so that one
// /metrics page shows both: connections, WebSocket frames, HTTP responses by route and
// status, requests the front door cancelled for a client that left or fell behind, and
// connections it closed because their client stopped taking output.
#pragma once
#include <memory>
#include <string_view>

#include "troupe/engine/metrics.hpp"

namespace troupe::net {

struct front_door_metrics {
  explicit front_door_metrics(std::shared_ptr<metrics_registry> r);

  // Any thread. route is one of the server's routes or "other" (bounded label values).
  void count_response(std::string_view route, int status);

  std::shared_ptr<metrics_registry> registry;
  gauge_metric* connections;
  gauge_metric* ws_sessions;
  gauge_metric* requests_in_flight;  // set when /metrics is rendered
  gauge_metric* ready;               // set when /metrics is rendered
  counter_metric* ws_frames_received;
  counter_metric* ws_frames_sent;
  counter_metric* cancelled_client_gone;
  counter_metric* cancelled_slow_consumer;
  counter_metric* closed_buffer_full;    // output queued past --max-buffered-bytes
  counter_metric* closed_write_timeout;  // one write not taken within write_timeout_ms
};

}  // namespace troupe::net
