// A diagnosis as JSON: the body of GET /v1/diagnosis and of `troupe doctor --json`.
// Figures a window could not give (-1 in replica_window) are null.
#pragma once
#include <string>

#include "troupe/engine/diagnosis.hpp"

namespace troupe::net {

std::string diagnosis_json(const diagnosis& d);

}  // namespace troupe::net
