// Reading the Prometheus text exposition format (version 0.0.4, what /metrics serves) back
// into metric_samples: what `troupe doctor` does with a server's /metrics page.
#pragma once
#include <string_view>
#include <vector>

#include "troupe/engine/metrics.hpp"

namespace troupe {

// Every sample line, in order; # HELP, # TYPE, other comments and blank lines are skipped,
// and a sample's optional timestamp is dropped. Label values are unescaped (\\, \" and \n).
// Values may be any decimal or +Inf, -Inf, NaN. Throws troupe::error(invalid_argument) for a
// malformed line, naming its number and what was expected there.
std::vector<metric_sample> parse_prometheus_text(std::string_view text);

}  // namespace troupe
