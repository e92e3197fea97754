// GET /metrics: the engine's registry (scheduler, KV cache, request latencies) and the
// front door's own gauges, in Prometheus text format.
#pragma once
#include <string>

#include "troupe/net/server_state.hpp"

namespace troupe::net {

std::string render_metrics(const server_state& state);

}  // namespace troupe::net
