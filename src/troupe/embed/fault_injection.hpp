// Fault injection for end-to-end tests of the watchdog, and nothing else: with the
// environment variable TROUPE_TEST_FAULT_STUCK_STEP=N, the first backend start_engine builds
// hangs in its Nth step (it never returns until the process exits), as a hung kernel would.
// Replacement backends are never wrapped. Unset (always, outside tests), nothing changes.
#pragma once
#include <memory>

#include "troupe/model/backend.hpp"

namespace troupe {

// `b` itself, or a wrapper around it whose step number N blocks forever when the variable
// holds N >= 1. Throws troupe::error(invalid_argument) for any other value.
std::shared_ptr<backend> with_injected_faults(std::shared_ptr<backend> b);

}  // namespace troupe
