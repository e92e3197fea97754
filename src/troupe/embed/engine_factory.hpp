// An engine from a troupe::config in one call: loads the GGUF named by config.model, picks
// and builds the backend(s) (device, devices, tensor_parallel, threads, KV cache size,
// swap space), and starts the actor graph with the scheduler knobs, in the caller's actor
// system. The same fields `troupe serve` reads from its flags and config file; a CAF host
// can also take them from its own actor_system_config (config/caf_options.hpp).
#pragma once
#include <caf/all.hpp>

#include <memory>
#include <string>

#include "troupe/actors/engine.hpp"
#include "troupe/config/config.hpp"
#include "troupe/engine/metrics.hpp"

namespace troupe {

struct started_engine {
  std::unique_ptr<engine> eng;
  std::string description;  // what runs it: "device: cpu (2 threads, avx2)", KV blocks, max_model_len
};

// Throws troupe::error naming what was wrong: an invalid config, a model file that cannot be
// read or is not supported, a device that is not there. `metrics` (null: the engine's own
// registry) is where the engine's troupe_* metrics go.
started_engine start_engine(caf::actor_system& sys, const config& cfg,
                            std::shared_ptr<metrics_registry> metrics = nullptr);

// The one call for a CAF application: an engine actor that owns the engine started from
// cfg. Send it (submit_atom, request, listener) and (cancel_atom, id); ask it stats_atom.
// The engine stops, ending requests still in flight with `unavailable` errors, when the
// actor exits (send it an exit message). Throws as start_engine.
engine_actor spawn_engine(caf::actor_system& sys, const config& cfg);

}  // namespace troupe
