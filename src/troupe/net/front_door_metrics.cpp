// front_door_metrics: registration once, then lock-free updates (a response takes the
// registry's mutex to find its (route, status) counter: a handful per request, not per token).
#include "troupe/net/front_door_metrics.hpp"

#include <string>

namespace troupe::net {

front_door_metrics::front_door_metrics(std::shared_ptr<metrics_registry> r)
    : registry(r ? std::move(r) : std::make_shared<metrics_registry>()) {
  auto& m = *registry;
  connections = m.gauge("troupe_http_connections", "Open client connections, WebSockets included.");
  ws_sessions = m.gauge("troupe_websocket_sessions", "Open WebSocket sessions.");
  requests_in_flight =
      m.gauge("troupe_front_door_requests_in_flight", "Requests submitted through the front door and not yet ended.");
  ready = m.gauge("troupe_ready", "1 while the server accepts new requests, 0 while starting or draining.");
  ws_frames_received = m.counter("troupe_websocket_frames_received_total", "WebSocket messages read from clients.");
  ws_frames_sent = m.counter("troupe_websocket_frames_sent_total", "WebSocket messages queued to clients.");
  const std::string cancelled_help = "Requests the front door cancelled for their client.";
  cancelled_client_gone = m.counter("troupe_front_door_cancelled_total", cancelled_help, {{"reason", "client_gone"}});
  cancelled_slow_consumer =
      m.counter("troupe_front_door_cancelled_total", cancelled_help, {{"reason", "slow_consumer"}});
  const std::string closed_help = "Connections the front door closed because their client stopped taking output.";
  closed_buffer_full = m.counter("troupe_front_door_closed_total", closed_help, {{"reason", "buffer_full"}});
  closed_write_timeout = m.counter("troupe_front_door_closed_total", closed_help, {{"reason", "write_timeout"}});
}

void front_door_metrics::count_response(std::string_view route, int status) {
  registry
      ->counter("troupe_http_responses_total", "HTTP responses by route and status (a stream counts at its header).",
                {{"route", std::string(route)}, {"status", std::to_string(status)}})
      ->inc();
}

}  // namespace troupe::net
