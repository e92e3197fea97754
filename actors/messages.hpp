// Every atom and message type the actors exchange. Plans and results travel as shared
// pointers to immutable values inside one process (zero-copy); they are whitelisted as
// local-only message types.
#pragma once
#include <caf/all.hpp>

#include <memory>
#include <vector>

#include "engine/kv_space.hpp"
#include "model/backend.hpp"

namespace troupe {

// One step for the worker: the KV operations to apply first, then the plan.
struct step_request {
  kv_operations ops;
  batch_plan plan;
};
using step_request_ptr = std::shared_ptr<const step_request>;
using step_result_ptr = std::shared_ptr<const step_result>;

}  // namespace troupe

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::step_request_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::step_result_ptr)

namespace troupe::atoms {

using step_atom = caf::atom_constant<caf::atom("step")>;
using info_atom = caf::atom_constant<caf::atom("info")>;

}  // namespace troupe::atoms
