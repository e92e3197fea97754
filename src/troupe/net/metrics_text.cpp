// render_metrics: the gauges that are read rather than updated, then the whole registry.
#include "troupe/net/metrics_text.hpp"


namespace troupe::net {

std::string render_metrics(const server_state& state) {
  auto& m = state.metrics;
  m.connections->set(state.num_connections.load());
  m.ws_sessions->set(static_cast<double>(state.num_ws_sessions.load()));
  m.requests_in_flight->set(static_cast<double>(state.bridge.num_in_flight()));
  m.ready->set(state.bridge.is_ready() ? 1.0 : 0.0);
  return m.registry->render_prometheus();
}

}  // namespace troupe::net
