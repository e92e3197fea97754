#include "troupe/embed/replica_split.hpp"

#include <algorithm>

#include "troupe/embed/backend_select.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

std::vector<config> split_for_replicas(const config& c, int replicas, int num_cuda_devices, int hardware_threads) {
  if (replicas < 1 || replicas > 64) {
    throw error(error_code::invalid_argument, "--replicas must be in [1, 64], got " + std::to_string(replicas));
  }
  // The CPU when asked for, or when auto finds no device (or keeps a quantized KV cache there).
  const bool on_cpu = c.device == "cpu" ||
                      (c.device == "auto" && (num_cuda_devices == 0 || c.kv_cache_dtype != "f16"));
  std::vector<config> out(static_cast<size_t>(replicas), c);
  if (on_cpu) {
    const int total = c.threads > 0 ? c.threads : std::max(1, hardware_threads);
    if (replicas > total) {
      throw error(error_code::invalid_argument,
                  "--replicas " + std::to_string(replicas) + " on the CPU needs a compute thread each; " +
                      std::to_string(total) + " available (--threads)");
    }
    // An equal share each; the threads left over go to the first replicas.
    for (int i = 0; i < replicas; ++i) out[i].threads = total / replicas + (i < total % replicas ? 1 : 0);
    return out;
  }
  std::vector<int> devices;
  if (!c.devices.empty()) {
    devices = parse_device_list(c.devices);
  } else {
    for (int d = 0; d < num_cuda_devices; ++d) devices.push_back(d);
  }
  const int tp = std::max(1, c.tensor_parallel);
  if (static_cast<int>(devices.size()) < replicas * tp) {
    throw error(error_code::invalid_argument,
                "--replicas " + std::to_string(replicas) + " with --tensor-parallel " + std::to_string(tp) + " needs " +
                    std::to_string(replicas * tp) + " CUDA devices; " + std::to_string(devices.size()) +
                    (c.devices.empty() ? " visible" : " given in --devices"));
  }
  for (int i = 0; i < replicas; ++i) {
    std::string list;
    for (int k = 0; k < tp; ++k) list += (k ? "," : "") + std::to_string(devices[static_cast<size_t>(i * tp + k)]);
    out[i].device = "cuda";
    out[i].devices = list;
  }
  return out;
}

}  // namespace troupe
