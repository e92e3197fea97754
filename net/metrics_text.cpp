// render_metrics: the front door's gauges first, then whatever the engine's registry holds.
#include "net/metrics_text.hpp"

#include "engine/metrics.hpp"

namespace troupe::net {
namespace {

void gauge(std::string& out, const char* name, const char* help, double value) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" gauge\n");
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

}  // namespace

std::string render_metrics(const server_state& state) {
  std::string out;
  gauge(out, "troupe_http_connections", "Open HTTP connections, WebSockets included", state.num_connections.load());
  gauge(out, "troupe_websocket_sessions", "Open WebSocket sessions", static_cast<double>(state.num_ws_sessions.load()));
  gauge(out, "troupe_front_door_requests_in_flight", "Requests submitted through the front door and not yet ended",
        static_cast<double>(state.bridge.num_in_flight()));
  gauge(out, "troupe_ready", "1 while the server accepts new requests", state.bridge.is_ready() ? 1.0 : 0.0);
  if (auto registry = state.bridge.metrics()) out += registry->render_prometheus();
  return out;
}

}  // namespace troupe::net
